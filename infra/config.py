"""The platform's stack config, parsed once into typed, immutable objects.

The topology lives in ``Pulumi.<stack>.yaml`` under the project key ``platform`` (plus
``gcp:project`` and ``gcp:region``). :func:`parse_stack_config` validates all of it and
raises one :class:`ConfigError` carrying every problem with its key path, e.g.::

    platform.topics.prediction-request.subscriptions[0].service: unknown service 'wrker'
    (known: prediction-coordinator, prediction-worker)

Two passes, both always run so that every problem is reported at once:

1. shape and limits, per field (pydantic, strict JSON mode: unknown keys, wrong types,
   Cloud Run / Pub/Sub / Scheduler limits, cron and time zone);
2. references and derived names, over the raw mapping (services, topics, secrets, paths,
   the services' env contract in ``shared/contract.py``, GCP name rules on the physical
   names that :func:`infra.naming.physical_name` derives).

Defaults are named constants below, each with its reason.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from infra.naming import Kind, physical_name

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "PlatformConfig",
    "ScheduleConfig",
    "SecretConfig",
    "ServiceConfig",
    "StackConfig",
    "SubscriptionConfig",
    "TopicConfig",
    "parse_stack_config",
    "PLATFORM_KEY",
]

PLATFORM_KEY = "platform"  # the project-namespace config key holding the topology

# --- Named defaults and limits -----------------------------------------------------------

# Cloud Run request timeout: 1-3600 s.
# https://cloud.google.com/run/docs/configuring/request-timeout
TIMEOUT_MIN_S, TIMEOUT_MAX_S = 1, 3600
DEFAULT_TIMEOUT_S = 300  # Cloud Run's own default
DEFAULT_CONCURRENCY = 80  # Cloud Run's own default; 1000 is the maximum
MAX_CONCURRENCY = 1000
DEFAULT_MAX_INSTANCES = 10  # a cap, so a retry storm cannot scale to the project quota
MAX_INSTANCES_LIMIT = 1000

# Pub/Sub: ack deadline 10-600 s; for push to Cloud Run the docs recommend the maximum, so a
# slow request is not redelivered while it is still being handled.
# https://cloud.google.com/pubsub/docs/push#ack_deadline
ACK_DEADLINE_MIN_S, ACK_DEADLINE_MAX_S = 10, 600
DEFAULT_ACK_DEADLINE_S = ACK_DEADLINE_MAX_S
# Retry policy backoff: 0-600 s. https://cloud.google.com/pubsub/docs/handling-failures
BACKOFF_MIN_S, BACKOFF_MAX_S = 0, 600
DEFAULT_MIN_BACKOFF_S = 10  # Pub/Sub's default minimum backoff
DEFAULT_MAX_BACKOFF_S = 600  # Pub/Sub's default maximum backoff
# Dead-letter max delivery attempts: 5-100; 5 is the API's default and minimum: a message that
# failed five pushes is parked for a human rather than retried for a week.
# https://cloud.google.com/pubsub/docs/dead-letter-topics
DELIVERY_ATTEMPTS_MIN, DELIVERY_ATTEMPTS_MAX = 5, 100
DEFAULT_MAX_DELIVERY_ATTEMPTS = DELIVERY_ATTEMPTS_MIN
# Dead letters are kept for the longest retention Pub/Sub allows (7 days on a subscription),
# so a weekend's failures can still be inspected and replayed on Monday.
DEAD_LETTER_RETENTION = "604800s"

# Cloud Scheduler HTTP targets: attempt deadline 15 s - 30 min, retries 0-5.
# https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs
ATTEMPT_DEADLINE_MIN_S, ATTEMPT_DEADLINE_MAX_S = 15, 1800
DEFAULT_ATTEMPT_DEADLINE_S = 320
RETRY_COUNT_MAX = 5
DEFAULT_RETRY_COUNT = 1  # a stall check runs again on the next tick anyway
DEFAULT_TIME_ZONE = "Etc/UTC"

# Cloud Run CPU and memory combinations: per whole CPU, the memory range it accepts; below
# 1 vCPU, memory caps and request-based billing. Values above 1 must be integers.
# https://cloud.google.com/run/docs/configuring/services/cpu
MIB_PER_GIB = 1024
CPU_MEMORY_RANGES_MIB = {
    1: (128, 4 * MIB_PER_GIB),
    2: (128, 8 * MIB_PER_GIB),
    4: (2 * MIB_PER_GIB, 16 * MIB_PER_GIB),
    6: (4 * MIB_PER_GIB, 24 * MIB_PER_GIB),
    8: (4 * MIB_PER_GIB, 32 * MIB_PER_GIB),
}
FRACTIONAL_CPU_MIN = 0.08

# GCP name rules.
# Cloud Run service: lowercase letters, digits, hyphens; starts with a letter; <= 49 chars.
# https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services
SERVICE_NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?$")
# Topic / subscription: 3-255 chars, starts with a letter, not "goog".
# https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names
PUBSUB_NAME_RE = re.compile(r"^[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$")
# Service account id: 6-30 chars, lowercase letters, digits, hyphens, starts with a letter.
ACCOUNT_ID_RE = re.compile(r"^[a-z](?:[-a-z0-9]{4,28}[a-z0-9])$")
# A user-managed service account's email: ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com.
# https://cloud.google.com/iam/docs/service-account-overview#user-managed
SERVICE_ACCOUNT_EMAIL_RE = re.compile(
    r"^[a-z](?:[-a-z0-9]{4,28}[a-z0-9])@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
)
SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
JOB_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
REPOSITORY_ID_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PATH_RE = re.compile(r"^/[-A-Za-z0-9_./]*$")
DIGEST_REF_RE = re.compile(r"^[a-z0-9.-]+(?::\d+)?/[-a-z0-9_./]+@sha256:[0-9a-f]{64}$")
PROJECT_ID_RE = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")

Ingress = Literal["all", "internal", "internal-and-cloud-load-balancing"]

K = TypeVar("K")
V = TypeVar("V")


def _freeze(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(value))


#: A read-only mapping once parsed (config objects are immutable all the way down).
FrozenMap = Annotated[Mapping[K, V], AfterValidator(_freeze)]


class _Frozen(BaseModel):
    # strict: "600" is not 600, 1.5 is not 1; extra="forbid": a typo is an error, not a no-op.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _parse_memory_mib(memory: str) -> int:
    m = re.fullmatch(r"(\d+)(Mi|Gi|M|G)", memory)
    if not m:
        raise ValueError(f"memory '{memory}' is not a size like 512Mi or 2Gi")
    n, unit = int(m.group(1)), m.group(2)
    if unit == "Gi":
        return n * MIB_PER_GIB
    if unit == "G":
        return n * 1000**3 // 1024**2
    if unit == "M":
        return n * 1000**2 // 1024**2
    return n


def _cpu_text(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return str(int(v)) if float(v).is_integer() and v >= 1 else str(v)
    return v


_CPU_RE = re.compile(r"(?P<milli>\d+)m|(?P<vcpu>\d+(?:\.\d+)?)")


def _parse_cpu(cpu: str) -> float:
    # A strict shape, not float(): float() also takes "inf", "nan" and "1e3", which Cloud Run
    # rejects and which broke the range checks below.
    m = _CPU_RE.fullmatch(cpu) if isinstance(cpu, str) else None
    if m is None:
        raise ValueError(f"cpu '{cpu}' is not a number of vCPUs like '1', '2' or '500m'")
    return int(m["milli"]) / 1000 if m["milli"] else float(m["vcpu"])


class ServiceConfig(_Frozen):
    """One Cloud Run service."""

    cpu: str = "1"
    memory: str = "512Mi"
    timeout_seconds: int = Field(DEFAULT_TIMEOUT_S, ge=TIMEOUT_MIN_S, le=TIMEOUT_MAX_S)
    concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY)
    min_instances: int = Field(0, ge=0, le=MAX_INSTANCES_LIMIT)
    max_instances: int = Field(DEFAULT_MAX_INSTANCES, ge=1, le=MAX_INSTANCES_LIMIT)
    # cpu_idle false = CPU always allocated (instance-based billing). Needed by a service that
    # keeps working after it has answered (background_work), or that work is throttled to ~0.
    cpu_idle: bool = True
    background_work: bool = False
    startup_cpu_boost: bool = False
    ingress: Ingress = "all"
    public: bool = False  # allUsers may invoke; only for a deliberately public endpoint
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
        # `cpu: 2` in YAML is as natural as `cpu: "2"`; Cloud Run takes the string.
        return _cpu_text(v)

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [p for p in v if not PATH_RE.match(p)]
        if bad:
            raise ValueError(f"paths must start with '/' (got {', '.join(map(repr, bad))})")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not DIGEST_REF_RE.match(v):
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
        if self.stall_check_path is not None and self.stall_check_path not in self.paths:
            errors.append(
                f"stall_check_path '{self.stall_check_path}' is not one of paths "
                f"({', '.join(self.paths)})"
            )
        if errors:
            raise ValueError("; ".join(errors))
        return self


def cpu_memory_problems(cpu_text: str, memory: str, concurrency: int, cpu_idle: bool) -> list[str]:
    """What Cloud Run would reject in this cpu/memory/concurrency/billing combination."""
    try:
        cpu = _parse_cpu(cpu_text)
        mem = _parse_memory_mib(memory)
    except ValueError as exc:
        return [str(exc)]
    errors = []
    if cpu < 1:
        if cpu < FRACTIONAL_CPU_MIN:
            errors.append(f"cpu {cpu_text} is below Cloud Run's minimum of 0.08 vCPU")
        if mem > MIB_PER_GIB or (cpu < 0.5 and mem > 512):
            errors.append(
                f"memory {memory} needs at least {'1' if mem > MIB_PER_GIB else '0.5'}"
                f" vCPU (cpu is {cpu_text})"
            )
        if concurrency != 1:
            errors.append(f"cpu below 1 requires concurrency 1 (got {concurrency})")
        if not cpu_idle:
            errors.append("cpu below 1 requires cpu_idle: true (request-based billing)")
    elif cpu != int(cpu) or int(cpu) not in CPU_MEMORY_RANGES_MIB:
        allowed = ", ".join(str(c) for c in CPU_MEMORY_RANGES_MIB)
        errors.append(f"cpu {cpu_text}: values of 1 or more must be one of {allowed}")
    else:
        low, high = CPU_MEMORY_RANGES_MIB[int(cpu)]
        if not low <= mem <= high:
            errors.append(
                f"memory {memory} is outside {low}Mi-{high // MIB_PER_GIB}Gi, "
                f"the range Cloud Run accepts for {int(cpu)} vCPU"
            )
    return errors


class SubscriptionConfig(_Frozen):
    """A push subscription delivering a topic's messages to a service path."""

    service: str
    path: str = "/"
    name: str | None = None  # logical name; default "<topic>-<service without prefix>"
    ack_deadline_seconds: int = Field(
        DEFAULT_ACK_DEADLINE_S, ge=ACK_DEADLINE_MIN_S, le=ACK_DEADLINE_MAX_S
    )
    min_backoff_seconds: int = Field(DEFAULT_MIN_BACKOFF_S, ge=BACKOFF_MIN_S, le=BACKOFF_MAX_S)
    max_backoff_seconds: int = Field(DEFAULT_MAX_BACKOFF_S, ge=BACKOFF_MIN_S, le=BACKOFF_MAX_S)
    max_delivery_attempts: int = Field(
        DEFAULT_MAX_DELIVERY_ATTEMPTS, ge=DELIVERY_ATTEMPTS_MIN, le=DELIVERY_ATTEMPTS_MAX
    )

    @model_validator(mode="after")
    def _backoff(self) -> SubscriptionConfig:
        if self.min_backoff_seconds > self.max_backoff_seconds:
            raise ValueError(
                f"min_backoff_seconds {self.min_backoff_seconds} is above "
                f"max_backoff_seconds {self.max_backoff_seconds}"
            )
        return self

    def logical_name(self, topic: str) -> str:
        return self.name or f"{topic}-{self.service.removeprefix('prediction-')}"


class TopicConfig(_Frozen):
    # A topic with no subscription drops every message published to it.
    subscriptions: tuple[SubscriptionConfig, ...] = Field(min_length=1)


class SecretConfig(_Frozen):
    # The Pulumi config key holding the value (`pulumi config set --secret KEY ...`);
    # defaults to the secret's own key.
    config_key: str | None = None


class ScheduleConfig(_Frozen):
    """A Cloud Scheduler job calling a service path with an OIDC token."""

    service: str
    path: str
    schedule: str
    time_zone: str = DEFAULT_TIME_ZONE
    http_method: Literal["POST", "GET"] = "POST"
    attempt_deadline_seconds: int = Field(
        DEFAULT_ATTEMPT_DEADLINE_S, ge=ATTEMPT_DEADLINE_MIN_S, le=ATTEMPT_DEADLINE_MAX_S
    )
    retry_count: int = Field(DEFAULT_RETRY_COUNT, ge=0, le=RETRY_COUNT_MAX)
    min_backoff_seconds: int = Field(5, ge=0, le=3600)
    max_backoff_seconds: int = Field(60, ge=0, le=3600)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        if not croniter.is_valid(v) or len(v.split()) != 5:
            raise ValueError(f"'{v}' is not a 5-field cron expression (e.g. '*/15 * * * *')")
        return v

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            msg = f"'{v}' is not an IANA time zone (e.g. 'America/Los_Angeles')"
            raise ValueError(msg) from None
        return v

    @model_validator(mode="after")
    def _backoff(self) -> ScheduleConfig:
        if self.min_backoff_seconds > self.max_backoff_seconds:
            raise ValueError(
                f"min_backoff_seconds {self.min_backoff_seconds} is above "
                f"max_backoff_seconds {self.max_backoff_seconds}"
            )
        return self


class FirestoreConfig(_Frozen):
    database: str = "(default)"
    location: str | None = None  # defaults to gcp:region
    deletion_protection: bool = True


class DeployConfig(_Frozen):
    """The identity that deploys this stack: created by the bootstrap, never by this program.

    The first `pulumi up` of the stack already runs as it, so the stack cannot create it, and
    its project-level roles are the bootstrap's too (``infra/bootstrap/components.py``). This
    program grants it only what is scoped to resources the program owns: push to the image
    repository, act as each service account it creates.
    """

    # The bootstrap's `deployer_email` output, e.g. ci-deployer@<project>.iam.gserviceaccount.com.
    service_account: str

    @field_validator("service_account")
    @classmethod
    def _email(cls, v: str) -> str:
        if not SERVICE_ACCOUNT_EMAIL_RE.match(v):
            raise ValueError(
                f"'{v}' is not a service account email "
                "(ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com): the deploy identity the "
                "bootstrap created, its `deployer_email` output"
            )
        return v


class PlatformConfig(_Frozen):
    artifact_repository: str = "platform-images"
    firestore: FirestoreConfig = Field(default_factory=FirestoreConfig)
    deploy: DeployConfig  # required: who deploys the stack is never implicit
    services: FrozenMap[str, ServiceConfig] = Field(min_length=1)
    topics: FrozenMap[str, TopicConfig] = Field(default_factory=dict)
    secrets: FrozenMap[str, SecretConfig] = Field(default_factory=dict)
    schedules: FrozenMap[str, ScheduleConfig] = Field(default_factory=dict)


@dataclass(frozen=True)
class StackConfig:
    """Everything the program reads from a stack's config, validated."""

    stack: str
    project: str
    region: str
    platform: PlatformConfig

    def name(self, kind: Kind, logical: str) -> str:
        return physical_name(kind, logical, self.stack)

    @property
    def firestore_location(self) -> str:
        return self.platform.firestore.location or self.region

    def secret_config_key(self, secret: str) -> str:
        return self.platform.secrets[secret].config_key or secret


# --- Errors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    """Every problem found in a stack's config, each with its key path."""

    def __init__(self, issues: list[ConfigIssue], stack: str = ""):
        self.issues = tuple(issues)
        self.stack = stack
        where = f"stack '{stack}'" if stack else "stack"
        lines = "\n".join(f"  {i}" for i in self.issues)
        super().__init__(f"invalid config for {where} ({len(self.issues)} error(s)):\n{lines}")


def _key_path(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            path += f".{part}"
    return path


def _model_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The allowed keys at ``loc`` (for "unknown key" messages)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            # a mapping key (service name, topic key...): the value type is the next model
            continue
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


#: What to do about a missing required key, by its location.
_MISSING_HINTS = {
    ("deploy",): "set deploy.service_account to the deploy identity's email (the bootstrap's "
    "`deployer_email` output, e.g. ci-deployer@<project>.iam.gserviceaccount.com)",
    ("deploy", "service_account"): "the deploy identity's email (the bootstrap's "
    "`deployer_email` output, e.g. ci-deployer@<project>.iam.gserviceaccount.com)",
}
#: Keys that once existed and moved: where they went.
_MOVED_KEYS = {
    ("deploy", "account_id"): "the bootstrap creates the deploy identity; set "
    "deploy.service_account to its email",
    ("deploy", "project_roles"): "the deploy identity's project roles are granted by the "
    "bootstrap (infra/bootstrap/components.py DEPLOYER_PROJECT_ROLES), not by the stack it "
    "deploys",
}


def _pydantic_issues(exc: ValidationError, prefix: str) -> list[ConfigIssue]:
    issues = []
    errors = exc.errors(include_url=False)
    item_errors = {tuple(e["loc"])[:i] for e in errors for i in range(len(e["loc"]))}
    for err in errors:
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "too_short" and loc in item_errors:
            continue  # pydantic counts only the valid items; the invalid ones are reported
        if kind == "extra_forbidden":
            allowed = _model_fields(PlatformConfig, loc)
            msg = f"unknown key '{loc[-1]}'"
            if allowed:
                msg += f" (allowed: {', '.join(allowed)})"
            if loc in _MOVED_KEYS:
                msg += f": {_MOVED_KEYS[loc]}"
            issues.append(ConfigIssue(_key_path(prefix, loc[:-1]), msg))
            continue
        if kind == "value_error":
            msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        elif kind == "missing":
            msg = "required key is missing"
            if loc in _MISSING_HINTS:
                msg += f": {_MISSING_HINTS[loc]}"
        elif kind == "too_short" and loc and loc[-1] == "subscriptions":
            msg = "a topic needs at least one subscription (messages to it would be lost)"
        else:
            msg = err["msg"]
            if isinstance(err.get("input"), str | int | float | bool):
                msg += f" (got {json.dumps(err['input'])})"
        issues.append(ConfigIssue(_key_path(prefix, loc), msg))
    return issues


# --- References and names (pass 2, over the raw mapping) ---------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _known(names: Any) -> str:
    return ", ".join(sorted(names)) or "none declared"


def _reference_issues(raw: Mapping[str, Any], stack: str, prefix: str) -> Iterator[ConfigIssue]:
    from shared.contract import CONTRACTS

    services = _mapping(raw.get("services"))
    topics = _mapping(raw.get("topics"))
    secrets = _mapping(raw.get("secrets"))
    schedules = _mapping(raw.get("schedules"))

    def paths_of(service: str) -> list[str]:
        paths = _mapping(services.get(service)).get("paths", ["/"])
        return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []

    def check_target(path: str, obj: Mapping[str, Any], default_path: str | None) -> Iterator:
        service = obj.get("service")
        if isinstance(service, str) and service not in services:
            yield ConfigIssue(
                f"{path}.service", f"unknown service '{service}' (known: {_known(services)})"
            )
        elif isinstance(service, str):
            target = obj.get("path", default_path)
            if isinstance(target, str) and target not in paths_of(service):
                yield ConfigIssue(
                    f"{path}.path",
                    f"'{target}' is not a path of service '{service}' "
                    f"(its paths: {', '.join(paths_of(service))}; add it to "
                    f"platform.services.{service}.paths if the service serves it)",
                )

    for name, svc in services.items():
        name = str(name)
        path = f"{prefix}.services.{name}"
        if not SERVICE_NAME_RE.match(physical_name(Kind.SERVICE, name, stack)):
            yield ConfigIssue(
                f"{path} (key)",
                f"'{name}' is not a Cloud Run service name: lowercase letters, digits and "
                "hyphens, starting with a letter, at most 49 characters",
            )
        for kind in (Kind.RUNTIME_ACCOUNT, Kind.PUSH_ACCOUNT, Kind.SCHEDULER_ACCOUNT):
            account = physical_name(kind, name, stack)
            if not ACCOUNT_ID_RE.match(account):
                yield ConfigIssue(
                    f"{path} (key)",
                    f"derived service account id '{account}' is not valid (6-30 lowercase "
                    "letters, digits, hyphens): shorten the service name",
                )
                break
        svc = _mapping(svc)
        cpu, memory = _cpu_text(svc.get("cpu", "1")), svc.get("memory", "512Mi")
        concurrency = svc.get("concurrency", DEFAULT_CONCURRENCY)
        cpu_idle = svc.get("cpu_idle", True)
        if isinstance(cpu, str) and isinstance(memory, str) and type(concurrency) is int:
            for problem in cpu_memory_problems(cpu, memory, concurrency, cpu_idle is not False):
                yield ConfigIssue(f"{path}.cpu", problem)
        env = _mapping(svc.get("env"))
        secret_env = _mapping(svc.get("secret_env"))
        publishes = _mapping(svc.get("publishes"))
        for field, values in (("env", env), ("secret_env", secret_env), ("publishes", publishes)):
            for var in values:
                if not ENV_NAME_RE.match(str(var)):
                    yield ConfigIssue(f"{path}.{field}.{var}", "not a valid env var name")
        for var, secret in secret_env.items():
            if isinstance(secret, str) and secret not in secrets:
                yield ConfigIssue(
                    f"{path}.secret_env.{var}",
                    f"unknown secret '{secret}' (declared: {_known(secrets)}; declare it "
                    f"under platform.secrets)",
                )
        for var, topic in publishes.items():
            if isinstance(topic, str) and topic not in topics:
                yield ConfigIssue(
                    f"{path}.publishes.{var}", f"unknown topic '{topic}' (known: {_known(topics)})"
                )
        seen: dict[str, str] = {}
        for field, values in (("env", env), ("secret_env", secret_env), ("publishes", publishes)):
            for var in values:
                if var in seen:
                    yield ConfigIssue(
                        f"{path}.{field}.{var}", f"also set in {path}.{seen[var]}: set it once"
                    )
                seen.setdefault(var, field)
        contract = CONTRACTS.get(name)
        if contract is not None:
            uses = svc.get("uses_firestore", False)
            if isinstance(uses, bool) and uses != contract.uses_firestore:
                yield ConfigIssue(
                    f"{path}.uses_firestore",
                    f"is {str(uses).lower()}, but the service's code "
                    f"{'uses' if contract.uses_firestore else 'does not use'} Firestore "
                    f"(shared/contract.py): set it to {str(contract.uses_firestore).lower()}"
                    + ("" if contract.uses_firestore else " (no unused datastore.user grant)"),
                )
            plain = set(env) | set(publishes)
            missing = [v for v in contract.required if v not in plain and v not in secret_env]
            if missing:
                yield ConfigIssue(
                    f"{path}.env",
                    f"missing {', '.join(missing)}, required by the service's code "
                    "(shared/contract.py): set it in env, or publishes for a topic",
                )
            for var in contract.secrets:
                if var in env:
                    yield ConfigIssue(
                        f"{path}.env.{var}",
                        "must be a secret reference (secret_env), never a literal value",
                    )
                elif var not in secret_env:
                    yield ConfigIssue(
                        f"{path}.secret_env",
                        f"missing {var}, a secret required by the service's code "
                        "(shared/contract.py)",
                    )

    for topic, spec in topics.items():
        topic = str(topic)
        path = f"{prefix}.topics.{topic}"
        for kind in (Kind.TOPIC, Kind.DEAD_LETTER_TOPIC, Kind.DEAD_LETTER_SUBSCRIPTION):
            if not PUBSUB_NAME_RE.match(physical_name(kind, topic, stack)) or topic.startswith(
                "goog"
            ):
                yield ConfigIssue(
                    f"{path} (key)",
                    f"'{physical_name(kind, topic, stack)}' is not a valid Pub/Sub name "
                    "(3-255 chars, starts with a letter, not 'goog')",
                )
                break
        subs = _mapping(spec).get("subscriptions")
        names: dict[str, int] = {}
        for i, sub in enumerate(subs if isinstance(subs, list) else []):
            sub = _mapping(sub)
            yield from check_target(f"{path}.subscriptions[{i}]", sub, "/")
            service = sub.get("service")
            logical = sub.get("name") or f"{topic}-{str(service).removeprefix('prediction-')}"
            if logical in names:
                yield ConfigIssue(
                    f"{path}.subscriptions[{i}]",
                    f"subscription name '{logical}' also used by subscriptions[{names[logical]}]",
                )
            names.setdefault(str(logical), i)
            if not PUBSUB_NAME_RE.match(physical_name(Kind.SUBSCRIPTION, str(logical), stack)):
                yield ConfigIssue(f"{path}.subscriptions[{i}].name", "not a valid Pub/Sub name")

    for secret in secrets:
        if not SECRET_ID_RE.match(str(secret)):
            yield ConfigIssue(f"{prefix}.secrets.{secret} (key)", "not a valid secret id")

    for job, spec in schedules.items():
        job = str(job)
        path = f"{prefix}.schedules.{job}"
        if not JOB_NAME_RE.match(physical_name(Kind.SCHEDULER_JOB, job, stack)):
            yield ConfigIssue(f"{path} (key)", "not a valid Cloud Scheduler job name")
        yield from check_target(path, _mapping(spec), None)

    repo = raw.get("artifact_repository", "platform-images")
    if isinstance(repo, str) and not REPOSITORY_ID_RE.match(repo):
        yield ConfigIssue(
            f"{prefix}.artifact_repository",
            f"'{repo}' is not a repository id (lowercase letters, digits, hyphens)",
        )


# --- Entry point -------------------------------------------------------------------------


def parse_stack_config(
    stack: str,
    *,
    project: str | None,
    region: str | None,
    platform: str | Mapping[str, Any] | None,
    project_name: str = "prediction-platform",
) -> StackConfig:
    """Validate a stack's config; raise :class:`ConfigError` with every problem found.

    ``platform`` is the ``<project>:platform`` value: the JSON text Pulumi hands the program,
    or an already-parsed mapping.
    """
    issues: list[ConfigIssue] = []
    if not project:
        issues.append(ConfigIssue("gcp:project", "required (pulumi config set gcp:project ID)"))
    elif not isinstance(project, str) or not PROJECT_ID_RE.match(project):
        issues.append(ConfigIssue("gcp:project", f"'{project}' is not a project id"))
    if not region:
        issues.append(ConfigIssue("gcp:region", "required (pulumi config set gcp:region REGION)"))
    elif not isinstance(region, str) or not re.fullmatch(r"[a-z]+-[a-z]+\d", region):
        issues.append(ConfigIssue("gcp:region", f"'{region}' is not a region like us-west2"))
    prefix = PLATFORM_KEY
    raw: Any
    if platform is None:
        issues.append(
            ConfigIssue(
                prefix, f"required: the platform topology under {project_name}:{PLATFORM_KEY}"
            )
        )
        raise ConfigError(issues, stack)
    if isinstance(platform, str):
        try:
            raw = json.loads(platform)
        except json.JSONDecodeError as exc:
            issues.append(ConfigIssue(prefix, f"not valid JSON: {exc}"))
            raise ConfigError(issues, stack) from None
    else:
        raw = platform
    if not isinstance(raw, Mapping):
        issues.append(ConfigIssue(prefix, f"must be a mapping (got {type(raw).__name__})"))
        raise ConfigError(issues, stack)
    parsed: PlatformConfig | None = None
    try:
        # JSON mode so strictness means "JSON types": arrays become tuples, ints stay ints.
        parsed = PlatformConfig.model_validate_json(json.dumps(raw, default=str))
    except ValidationError as exc:
        issues.extend(_pydantic_issues(exc, prefix))
    issues.extend(_reference_issues(raw, stack, prefix))
    if issues or parsed is None:
        raise ConfigError(_dedupe(issues), stack)
    return StackConfig(stack=stack, project=project, region=region, platform=parsed)


def _dedupe(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[ConfigIssue] = set()
    out = []
    for issue in issues:
        if issue not in seen:
            seen.add(issue)
            out.append(issue)
    return out
