"""What the deploy pipeline hands the program through the environment, validated.

These never live in ``Pulumi.<stack>.yaml``: writing them as stack config would rewrite the
committed file on every deploy. Each has one reader, here.

* ``PLATFORM_GIT_COMMIT``: the deployed commit, a label on each Cloud Run *service* (not on
  the revision template, so a commit that changes no image rolls no revision).
* ``PLATFORM_LOCK_TOKEN``: the deploy lock's fencing token, a service label when set.
* ``PLATFORM_IMAGE_OVERRIDES``: JSON ``{"<service>": "REGISTRY/PATH@sha256:<digest>"}``; an
  override replaces that service's image build (rollback, images built by Cloud Build).
* ``PLATFORM_REPO_ROOT``: the build context root (default: this repository), for the offline
  plan of another checkout.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

from infra import limits
from infra.build_context import ContextSnapshot
from infra.config import DIGEST_REF_RE, ConfigError, ConfigIssue
from infra.paths import REPO_ROOT

__all__ = ["DeployEnv", "ENV_GIT_COMMIT", "ENV_LOCK_TOKEN", "ENV_IMAGE_OVERRIDES", "label_value"]

ENV_GIT_COMMIT = "PLATFORM_GIT_COMMIT"
ENV_LOCK_TOKEN = "PLATFORM_LOCK_TOKEN"
ENV_IMAGE_OVERRIDES = "PLATFORM_IMAGE_OVERRIDES"
ENV_REPO_ROOT = "PLATFORM_REPO_ROOT"

GIT_COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}$")
LABEL_VALUE_MAX = limits.LABEL_VALUE_MAX


def label_value(raw: str) -> str:
    """``raw`` made a valid GCP label value (lowercased, other characters -> '-', cut to 63)."""
    return re.sub(r"[^a-z0-9_-]", "-", raw.lower())[:LABEL_VALUE_MAX]


@dataclass(frozen=True)
class DeployEnv:
    git_commit: str | None = None
    lock_token: str | None = None
    image_overrides: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    repo_root: Path = REPO_ROOT

    @cached_property
    def build_context(self) -> ContextSnapshot:
        """The repo root as the image builds see it, read once for every image of this run."""
        return ContextSnapshot(Path(self.repo_root).resolve())

    @classmethod
    def from_environ(
        cls, services: Iterable[str], environ: Mapping[str, str] | None = None
    ) -> DeployEnv:
        """Read and validate; raise :class:`ConfigError` naming each bad variable."""
        environ = os.environ if environ is None else environ
        services = list(services)
        issues: list[ConfigIssue] = []
        commit = environ.get(ENV_GIT_COMMIT) or None
        if commit is not None and not GIT_COMMIT_RE.match(commit):
            issues.append(
                ConfigIssue(f"env {ENV_GIT_COMMIT}", f"'{commit}' is not a git commit hash")
            )
        overrides: dict[str, str] = {}
        raw = environ.get(ENV_IMAGE_OVERRIDES) or ""
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError as exc:
                parsed = None
                issues.append(ConfigIssue(f"env {ENV_IMAGE_OVERRIDES}", f"not JSON: {exc}"))
            if parsed is not None and not isinstance(parsed, dict):
                issues.append(ConfigIssue(f"env {ENV_IMAGE_OVERRIDES}", "must be a JSON object"))
            for service, ref in (parsed or {}).items() if isinstance(parsed, dict) else ():
                path = f"env {ENV_IMAGE_OVERRIDES}.{service}"
                if service not in services:
                    issues.append(
                        ConfigIssue(
                            path,
                            f"unknown service '{service}' (known: {', '.join(sorted(services))})",
                        )
                    )
                elif not isinstance(ref, str) or not DIGEST_REF_RE.match(ref):
                    issues.append(
                        ConfigIssue(path, f"'{ref}' is not a digest ref REGISTRY/PATH@sha256:…")
                    )
                else:
                    overrides[service] = ref
        root = Path(environ.get(ENV_REPO_ROOT) or REPO_ROOT)
        if issues:
            raise ConfigError(issues)
        return cls(
            git_commit=commit,
            lock_token=environ.get(ENV_LOCK_TOKEN) or None,
            image_overrides=MappingProxyType(overrides),
            repo_root=root,
        )
