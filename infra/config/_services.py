"""The Cloud Run service model: its named defaults, formats and per-field rules.

Rules across the stack (env sizes, references, the code's contract) are in ``_run_checks.py``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from infra import limits
from infra.config._formats import cpu_text, parse_cpu, parse_memory_mib
from infra.config._frozen import Frozen, FrozenMap, within

__all__ = ["DIGEST_REF_RE", "ServiceConfig"]

DEFAULT_TIMEOUT_S = limits.RUN_DEFAULT_TIMEOUT_S
DEFAULT_CONCURRENCY = limits.RUN_DEFAULT_CONCURRENCY
DEFAULT_MAX_INSTANCES = 10  # a cap, so a retry storm cannot scale to the project quota

# The platform's own formats (not Google's): a target path, an image by digest.
PATH_RE = re.compile(r"/[-A-Za-z0-9_./]*")
DIGEST_REF_RE = re.compile(r"[a-z0-9.-]+(?::\d+)?/[-a-z0-9_./]+@sha256:[0-9a-f]{64}")

Ingress = Literal["all", "internal", "internal-and-cloud-load-balancing"]


class ServiceConfig(Frozen):
    """One Cloud Run service."""

    cpu: str = "1"
    memory: str = "512Mi"
    timeout_seconds: int = within(DEFAULT_TIMEOUT_S, limits.RUN_TIMEOUT_S)
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, le=limits.RUN_MAX_CONCURRENCY)
    min_instances: int = Field(0, ge=0, le=limits.RUN_MAX_INSTANCES)
    max_instances: int = Field(DEFAULT_MAX_INSTANCES, ge=1, le=limits.RUN_MAX_INSTANCES)
    # cpu_idle false = CPU always allocated (instance-based billing). Needed by a service that
    # keeps working after it has answered (background_work), or that work is throttled to ~0.
    cpu_idle: bool = True
    background_work: bool = False
    startup_cpu_boost: bool = False
    # Unset: the narrowest that reaches every declared caller (see ``effective_ingress``).
    ingress: Ingress | None = None
    public: bool = False  # allUsers may invoke; only for a deliberately public endpoint
    # Groups and users who call this service themselves (`group:x@y`, `user:x@y`): each gets
    # roles/run.invoker on this service only, one member resource each. The coordinator's are
    # the people (or an upstream job's group) who start batches with /start. Never a service
    # account (runtime callers have their own identities) nor allUsers (that is `public`).
    operators: tuple[str, ...] = ()
    uses_firestore: bool = False
    deletion_protection: bool = True
    # The paths others may target (push subscriptions, scheduler jobs).
    paths: tuple[str, ...] = ("/",)
    # The batch coordinator's stall-check path: a stack must schedule it (preflight rule 11).
    stall_check_path: str | None = None
    env: FrozenMap[str, str] = Field(default_factory=dict)
    secret_env: FrozenMap[str, str] = Field(default_factory=dict)  # ENV -> secret key
    publishes: FrozenMap[str, str] = Field(default_factory=dict)  # ENV -> topic key
    image: str | None = None  # digest override: replaces the build (rollback, remote builds)

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu_number(cls, v: Any) -> Any:
        return cpu_text(v)

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: str) -> str:
        parse_cpu(v)
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        parse_memory_mib(v)
        return v

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [p for p in v if not PATH_RE.fullmatch(p)]
        if bad:
            raise ValueError(f"paths must start with '/' (got {', '.join(map(repr, bad))})")
        return v

    @field_validator("operators")
    @classmethod
    def _operators(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in v if not limits.USER_OR_GROUP_MEMBER_RE.fullmatch(m)]
        if bad:
            raise ValueError(
                f"operators must be 'group:EMAIL' or 'user:EMAIL' (got {', '.join(map(repr, bad))})"
            )
        dupes = sorted({m for m in v if v.count(m) > 1})
        if dupes:
            raise ValueError(f"operators listed twice: {', '.join(dupes)}")
        return v

    @property
    def effective_ingress(self) -> str:
        """``ingress`` if set, else the narrowest setting that reaches every declared caller.

        Pub/Sub pushes and Cloud Scheduler calls from the same project count as internal
        traffic, so a service only they call needs no internet ingress; operators (and a public
        endpoint) call from outside Google's network and need ``all``.
        https://cloud.google.com/run/docs/securing/ingress#settings
        """
        if self.ingress is not None:
            return self.ingress
        return "all" if (self.public or self.operators) else "internal"

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not DIGEST_REF_RE.fullmatch(v):
            raise ValueError(
                f"image override '{v}' must be a digest reference "
                "'REGISTRY/PATH@sha256:<64 hex>' (a tag can move under a deployed revision)"
            )
        return v

    @model_validator(mode="after")
    def _limits(self) -> ServiceConfig:
        errors = []
        if self.max_instances < self.min_instances:
            errors.append(
                f"max_instances {self.max_instances} is below min_instances {self.min_instances}"
            )
        if self.ingress == "internal" and (self.public or self.operators):
            who = "a public endpoint" if self.public else "operators"
            errors.append(
                f"ingress 'internal' but {who} call it from outside Google's network: "
                "remove ingress (the default then reaches them) or set it to 'all'"
            )
        if self.stall_check_path is not None and self.stall_check_path not in self.paths:
            errors.append(
                f"stall_check_path '{self.stall_check_path}' is not one of paths "
                f"({', '.join(self.paths)})"
            )
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def cpu_vcpus(self) -> float:
        return parse_cpu(self.cpu)

    @property
    def memory_mib(self) -> int:
        return parse_memory_mib(self.memory)
