"""The ``deploy`` block: the deploy identity, the post-deploy check, the progressive rollout,
announcements and Cloud Build, each default with its reason (scripts/rollout reads these).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from infra import limits
from infra.config._frozen import Frozen, checked_service_account_email

__all__ = [
    "CloudBuildConfig",
    "DeployCheckConfig",
    "DeployConfig",
    "DeployNotifyConfig",
    "DeployRolloutConfig",
]

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


class DeployCheckConfig(Frozen):
    """The post-deploy synthetic batch and what it must show."""

    items: int = Field(DEFAULT_CHECK_ITEMS, ge=1, le=1000)
    timeout_seconds: int = Field(DEFAULT_CHECK_TIMEOUT_S, ge=10, le=3600)
    min_predicted_share: float = Field(DEFAULT_CHECK_MIN_PREDICTED_SHARE, gt=0, le=1)
    max_dead_letters: int = Field(DEFAULT_CHECK_MAX_DEAD_LETTERS, ge=0)


class DeployRolloutConfig(Frozen):
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


class DeployNotifyConfig(Frozen):
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


class CloudBuildConfig(Frozen):
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
        return checked_service_account_email(v, "the bootstrap's `builder_email` output")

    @field_validator("source_bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not limits.BUCKET_NAME_RE.fullmatch(v):
            raise ValueError(
                f"'{v}' is not a bucket name (3-63 lowercase letters, digits, '-', '_'): the "
                "bootstrap's `build_source_bucket` output"
            )
        return v


class DeployConfig(Frozen):
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
        return checked_service_account_email(
            v, "the deploy identity the bootstrap created, its `deployer_email` output"
        )
