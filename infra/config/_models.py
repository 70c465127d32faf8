"""The typed, immutable stack config: one pydantic model per cloud concept, each field with its
platform default (named below, with its reason) and Google's limit (``infra.limits``).

Per-field rules live here; rules across fields and across the stack (references, derived
names) are in ``_checks.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from infra import limits
from infra.config._formats import (
    check_cron,
    check_time_zone,
    cpu_text,
    parse_cpu,
    parse_memory_mib,
)
from infra.durations import api_duration
from infra.naming import Kind, physical_name, short_service

__all__ = [
    "PLATFORM_KEY",
    "PlatformConfig",
    "ServiceConfig",
    "SubscriptionConfig",
    "TopicConfig",
    "SecretConfig",
    "ScheduleConfig",
    "FirestoreConfig",
    "DeployConfig",
    "DeployCheckConfig",
    "DeployRolloutConfig",
    "DeployNotifyConfig",
    "MonitoringConfig",
    "NotifyConfig",
    "AlertThresholds",
    "StackConfig",
]

PLATFORM_KEY = "platform"  # the project-namespace config key holding the topology

# --- Named defaults (the platform's choices) --------------------------------------------------

DEFAULT_TIMEOUT_S = limits.RUN_DEFAULT_TIMEOUT_S
DEFAULT_CONCURRENCY = limits.RUN_DEFAULT_CONCURRENCY
DEFAULT_MAX_INSTANCES = 10  # a cap, so a retry storm cannot scale to the project quota
# For push to Cloud Run the docs recommend the maximum ack deadline, so a slow request is not
# redelivered while it is still being handled. https://cloud.google.com/pubsub/docs/push
DEFAULT_ACK_DEADLINE_S = limits.PUBSUB_ACK_DEADLINE_S[1]
DEFAULT_MIN_BACKOFF_S = limits.PUBSUB_DEFAULT_MIN_BACKOFF_S
DEFAULT_MAX_BACKOFF_S = limits.PUBSUB_DEFAULT_MAX_BACKOFF_S
# A message that failed five pushes is parked for a human rather than retried for a week.
DEFAULT_MAX_DELIVERY_ATTEMPTS = limits.PUBSUB_DEFAULT_DELIVERY_ATTEMPTS
# Dead letters are kept a week (Pub/Sub's default; it allows up to 31 days), so a weekend's
# failures can still be inspected and replayed on Monday.
DEAD_LETTER_RETENTION = api_duration(limits.PUBSUB_DEFAULT_SUBSCRIPTION_RETENTION_S)
DEFAULT_ATTEMPT_DEADLINE_S = 320  # above the stall check's own 300 s budget
DEFAULT_RETRY_COUNT = 1  # a stall check runs again on the next tick anyway
DEFAULT_SCHEDULER_MIN_BACKOFF_S = limits.SCHEDULER_DEFAULT_MIN_BACKOFF_S
DEFAULT_SCHEDULER_MAX_BACKOFF_S = 60  # a stall check retried within its 15-minute tick
# A cap on Cloud Scheduler's backoff (Google states defaults, not bounds): no longer than an
# hour, Cloud Scheduler's own default maximum.
SCHEDULER_BACKOFF_MAX_S = limits.SCHEDULER_DEFAULT_MAX_BACKOFF_S
DEFAULT_TIME_ZONE = limits.SCHEDULER_DEFAULT_TIME_ZONE
DEFAULT_REPOSITORY = "platform-images"

# The platform's own formats (not Google's): a target path, an image by digest.
PATH_RE = re.compile(r"/[-A-Za-z0-9_./]*")
DIGEST_REF_RE = re.compile(r"[a-z0-9.-]+(?::\d+)?/[-a-z0-9_./]+@sha256:[0-9a-f]{64}")

Ingress = Literal["all", "internal", "internal-and-cloud-load-balancing"]

K = TypeVar("K")
V = TypeVar("V")


def _within(default: int, bounds: tuple[int, int]) -> Any:
    """A field defaulting to ``default`` and held to Google's documented ``(low, high)``."""
    return Field(default, ge=bounds[0], le=bounds[1])


def _service_account_email(v: str, what: str) -> str:
    """``v`` if it is a service account email; else the error naming where it comes from."""
    if not limits.SERVICE_ACCOUNT_EMAIL_RE.fullmatch(v):
        raise ValueError(
            f"'{v}' is not a service account email "
            f"(ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com): {what}"
        )
    return v


def _freeze(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(value))


#: A read-only mapping once parsed (config objects are immutable all the way down).
FrozenMap = Annotated[Mapping[K, V], AfterValidator(_freeze)]


class _Frozen(BaseModel):
    # strict: "600" is not 600, 1.5 is not 1; extra="forbid": a typo is an error, not a no-op.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _below(low: str, high: str):
    """A model check that ``low`` <= ``high`` (two fields of one object)."""

    def check(self: Any) -> Any:
        lo, hi = getattr(self, low), getattr(self, high)
        if lo > hi:
            raise ValueError(f"{low} {lo} is above {high} {hi}")
        return self

    return check


class ServiceConfig(_Frozen):
    """One Cloud Run service."""

    cpu: str = "1"
    memory: str = "512Mi"
    timeout_seconds: int = _within(DEFAULT_TIMEOUT_S, limits.RUN_TIMEOUT_S)
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


class SubscriptionConfig(_Frozen):
    """A push subscription delivering a topic's messages to a service path."""

    service: str
    path: str = "/"
    name: str | None = None  # logical name; default "<topic>-<service without prefix>"
    ack_deadline_seconds: int = _within(DEFAULT_ACK_DEADLINE_S, limits.PUBSUB_ACK_DEADLINE_S)
    min_backoff_seconds: int = _within(DEFAULT_MIN_BACKOFF_S, limits.PUBSUB_BACKOFF_S)
    max_backoff_seconds: int = _within(DEFAULT_MAX_BACKOFF_S, limits.PUBSUB_BACKOFF_S)
    max_delivery_attempts: int = _within(
        DEFAULT_MAX_DELIVERY_ATTEMPTS, limits.PUBSUB_DELIVERY_ATTEMPTS
    )

    _backoff = model_validator(mode="after")(_below("min_backoff_seconds", "max_backoff_seconds"))

    def logical_name(self, topic: str) -> str:
        return self.name or f"{topic}-{short_service(self.service)}"


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
    schedule: Annotated[str, AfterValidator(check_cron)]
    time_zone: Annotated[str, AfterValidator(check_time_zone)] = DEFAULT_TIME_ZONE
    http_method: Literal["POST", "GET"] = "POST"
    attempt_deadline_seconds: int = _within(
        DEFAULT_ATTEMPT_DEADLINE_S, limits.SCHEDULER_HTTP_ATTEMPT_DEADLINE_S
    )
    retry_count: int = _within(DEFAULT_RETRY_COUNT, limits.SCHEDULER_RETRY_COUNT)
    min_backoff_seconds: int = Field(
        DEFAULT_SCHEDULER_MIN_BACKOFF_S, ge=0, le=SCHEDULER_BACKOFF_MAX_S
    )
    max_backoff_seconds: int = Field(
        DEFAULT_SCHEDULER_MAX_BACKOFF_S, ge=0, le=SCHEDULER_BACKOFF_MAX_S
    )

    _backoff = model_validator(mode="after")(_below("min_backoff_seconds", "max_backoff_seconds"))


class FirestoreConfig(_Frozen):
    database: str = limits.FIRESTORE_DEFAULT_DATABASE
    location: str | None = None  # defaults to gcp:region
    deletion_protection: bool = True


# --- The deploy's own checks (scripts/rollout reads these; defaults and reasons live here) ---

# 20 synthetic items exercise the fan-out and finish in seconds; 95% predicted leaves room for
# one unlucky item, never for a broken worker (a batch whose items all *failed* completes).
DEFAULT_CHECK_ITEMS = 20
DEFAULT_CHECK_TIMEOUT_S = 180
DEFAULT_CHECK_MIN_PREDICTED_SHARE = 0.95
DEFAULT_CHECK_MAX_DEAD_LETTERS = 0
# Three steps, each held five minutes: Cloud Monitoring samples run.googleapis.com/
# request_count every 60 s and shows it up to 180 s later
# (https://cloud.google.com/monitoring/api/metrics_gcp#gcp-run), so a shorter hold judges a
# step on data that has not arrived yet.
DEFAULT_ROLLOUT_STEPS = (10, 50, 100)
DEFAULT_ROLLOUT_HOLD_S = 300
DEFAULT_ROLLOUT_MAX_ERROR_RATE = 0.02
# Below this many requests in a step a share says nothing (2 errors of 3 requests are not 67%
# of anything): the step is not judged, and the synthetic check's word stands.
DEFAULT_ROLLOUT_MIN_REQUESTS = 50


class DeployCheckConfig(_Frozen):
    """The post-deploy synthetic batch and what it must show."""

    items: int = Field(DEFAULT_CHECK_ITEMS, ge=1, le=1000)
    timeout_seconds: int = Field(DEFAULT_CHECK_TIMEOUT_S, ge=10, le=3600)
    min_predicted_share: float = Field(DEFAULT_CHECK_MIN_PREDICTED_SHARE, gt=0, le=1)
    max_dead_letters: int = Field(DEFAULT_CHECK_MAX_DEAD_LETTERS, ge=0)


class DeployRolloutConfig(_Frozen):
    """Progressive traffic in the cloud: the steps (percent), each held while the new
    revision's 5xx share stays at or under ``max_error_rate``."""

    steps: tuple[int, ...] = DEFAULT_ROLLOUT_STEPS
    hold_seconds: int = Field(DEFAULT_ROLLOUT_HOLD_S, ge=0, le=3600)
    max_error_rate: float = Field(DEFAULT_ROLLOUT_MAX_ERROR_RATE, ge=0, lt=1)
    min_requests: int = Field(DEFAULT_ROLLOUT_MIN_REQUESTS, ge=0)

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        steps = list(v)
        if not steps or steps[-1] != 100 or steps != sorted(set(steps)) or steps[0] <= 0:
            raise ValueError(
                f"{steps} is not a rollout: percents rising strictly within 1..100 and ending "
                "at 100, e.g. [10, 50, 100]"
            )
        return v


class DeployNotifyConfig(_Frozen):
    """Where a deploy announces itself. The webhook URL is a credential: it lives in Secret
    Manager (this names the secret, in the stack's project), or in PLATFORM_NOTIFY_WEBHOOK."""

    webhook_url_secret: str | None = None

    @field_validator("webhook_url_secret")
    @classmethod
    def _secret_id(cls, v: str | None) -> str | None:
        if v is not None and not limits.SECRET_ID_RE.fullmatch(v):
            raise ValueError(
                f"'{v}' is not a Secret Manager secret id (letters, digits, '-', '_', at most "
                "255): name the secret holding the webhook URL"
            )
        return v


class CloudBuildConfig(_Frozen):
    """What ``deploy --builder cloudbuild`` uses, created by the bootstrap (never implicit).

    Builds run as their own identity (``builder_email`` output), which may only write build
    logs, read the build sources and push to this stack's image repository (granted here): a
    Dockerfile's ``RUN`` never holds the deploy identity's rights.
    """

    # The bootstrap's `builder_email` output, e.g. cloud-builder@<project>.iam.gserviceaccount.com.
    service_account: str
    # The bootstrap's `build_source_bucket` output: where the deploy uploads each build context.
    source_bucket: str

    @field_validator("service_account")
    @classmethod
    def _email(cls, v: str) -> str:
        return _service_account_email(v, "the bootstrap's `builder_email` output")

    @field_validator("source_bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not limits.BUCKET_NAME_RE.fullmatch(v):
            raise ValueError(
                f"'{v}' is not a bucket name (3-63 lowercase letters, digits, '-', '_'): the "
                "bootstrap's `build_source_bucket` output"
            )
        return v


class DeployConfig(_Frozen):
    """The identity that deploys this stack: created by the bootstrap, never by this program.

    The first `pulumi up` of the stack already runs as it, so the stack cannot create it, and
    its project-level roles are the bootstrap's too (``infra/bootstrap/components.py``). This
    program grants it only what is scoped to resources the program owns: push to the image
    repository, act as each service account it creates.
    """

    # The bootstrap's `deployer_email` output, e.g. ci-deployer@<project>.iam.gserviceaccount.com.
    service_account: str
    check: DeployCheckConfig = Field(default_factory=DeployCheckConfig)
    rollout: DeployRolloutConfig = Field(default_factory=DeployRolloutConfig)
    notify: DeployNotifyConfig = Field(default_factory=DeployNotifyConfig)
    # `deploy --builder cloudbuild`: the bootstrap's build identity and source bucket. Absent:
    # that builder refuses, naming this key (the default local builder needs neither).
    cloudbuild: CloudBuildConfig | None = None

    @field_validator("service_account")
    @classmethod
    def _email(cls, v: str) -> str:
        return _service_account_email(
            v, "the deploy identity the bootstrap created, its `deployer_email` output"
        )


# --- Monitoring (alerts, channels, dashboard: infra/monitoring) -------------------------------

# Any retained dead letter is an incident, but Pub/Sub samples the depth once a minute and a
# replay acknowledges in bursts: five minutes above zero is a real, unhandled dead letter.
# Dead letters are retained (never acked by a consumer), so the alert stays open until someone
# replays or drains them (docs/runbooks.md). https://cloud.google.com/pubsub/docs/monitoring
DEFAULT_DEAD_LETTER_FOR_S = 300
# A push subscription's backlog is stuck when its oldest message is older than every delivery
# attempt could take (attempts x ack deadline + the backoffs between them, derived per
# subscription in infra/monitoring) plus this margin for a large batch still draining.
DEFAULT_BACKLOG_MARGIN_S = 600
DEFAULT_BACKLOG_FOR_S = 600
# Non-ack push responses (5xx, 429, timeouts): some are normal (cold starts, scale-out), a
# tenth of them for ten minutes means deliveries are failing and heading for dead letters.
# https://cloud.google.com/pubsub/docs/push#receive_push
DEFAULT_PUSH_ERROR_RATIO = 0.1
DEFAULT_PUSH_ERROR_FOR_S = 600
# The worker answers permanent failures with 2xx (shared/pubsub.py), so 5xx are the
# platform's own errors: 5% for five minutes is well above a healthy service's noise.
DEFAULT_SERVER_ERROR_RATIO = 0.05
DEFAULT_SERVER_ERROR_FOR_S = 300
# At max_instances Cloud Run queues then rejects (429): fifteen minutes there means the cap,
# not a burst, is limiting the batch. https://cloud.google.com/run/docs/about-instance-autoscaling
DEFAULT_AT_MAX_INSTANCES_FOR_S = 900
# A failed scheduler attempt or a batch event is a discrete log entry: notify at most once per
# period per policy (log-match alerts require a rate limit), the next tick retries anyway.
# https://cloud.google.com/monitoring/alerts/log-based-alerts
DEFAULT_LOG_ALERT_NOTIFY_EVERY_S = 3600
# Incidents close themselves this long after the condition stops (Google's default is 7 days).
DEFAULT_AUTO_CLOSE_S = 24 * 3600

EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


class AlertThresholds(_Frozen):
    """How sensitive each alert is; every default above says why."""

    dead_letter_for_seconds: int = Field(DEFAULT_DEAD_LETTER_FOR_S, ge=0, le=86400)
    backlog_margin_seconds: int = Field(DEFAULT_BACKLOG_MARGIN_S, ge=0, le=86400)
    backlog_for_seconds: int = Field(DEFAULT_BACKLOG_FOR_S, ge=0, le=86400)
    push_error_ratio: float = Field(DEFAULT_PUSH_ERROR_RATIO, gt=0, le=1)
    push_error_for_seconds: int = Field(DEFAULT_PUSH_ERROR_FOR_S, ge=0, le=86400)
    server_error_ratio: float = Field(DEFAULT_SERVER_ERROR_RATIO, gt=0, le=1)
    server_error_for_seconds: int = Field(DEFAULT_SERVER_ERROR_FOR_S, ge=0, le=86400)
    at_max_instances_for_seconds: int = Field(DEFAULT_AT_MAX_INSTANCES_FOR_S, ge=0, le=86400)
    log_alert_notify_every_seconds: int = Field(DEFAULT_LOG_ALERT_NOTIFY_EVERY_S, ge=300, le=86400)
    auto_close_seconds: int = Field(DEFAULT_AUTO_CLOSE_S, ge=1800, le=7 * 86400)


class SlackChannelConfig(_Frozen):
    channel: str  # "#prediction-alerts"
    token_secret: str  # a key of platform.secrets: the Slack app's OAuth token


class WebhookChannelConfig(_Frozen):
    url_secret: str  # a key of platform.secrets: the webhook URL (it carries its token)


class NotifyConfig(_Frozen):
    """Who is told. Secrets of channels live in Secret Manager (platform.secrets)."""

    emails: tuple[str, ...] = ()
    slack: SlackChannelConfig | None = None
    webhook: WebhookChannelConfig | None = None

    @field_validator("emails")
    @classmethod
    def _emails(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [e for e in v if not EMAIL_RE.fullmatch(e)]
        if bad:
            raise ValueError(f"not email addresses: {', '.join(bad)}")
        if len(set(v)) != len(v):
            raise ValueError("an address is listed twice")
        return v

    @property
    def any(self) -> bool:
        return bool(self.emails or self.slack or self.webhook)


class MonitoringConfig(_Frozen):
    """Alerts, notification channels and the dashboard, derived from the topology."""

    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    thresholds: AlertThresholds = Field(default_factory=AlertThresholds)


class PlatformConfig(_Frozen):
    artifact_repository: str = DEFAULT_REPOSITORY
    firestore: FirestoreConfig = Field(default_factory=FirestoreConfig)
    deploy: DeployConfig  # required: who deploys the stack is never implicit
    services: FrozenMap[str, ServiceConfig] = Field(min_length=1)
    topics: FrozenMap[str, TopicConfig] = Field(default_factory=dict)
    secrets: FrozenMap[str, SecretConfig] = Field(default_factory=dict)
    schedules: FrozenMap[str, ScheduleConfig] = Field(default_factory=dict)
    # None: nothing watches the stack (preflight rule PF13 reports every uncovered resource).
    monitoring: MonitoringConfig | None = None


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
