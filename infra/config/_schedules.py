"""The Cloud Scheduler job model, with the platform's defaults for a stall check."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from infra import limits
from infra.config._formats import check_cron, check_time_zone
from infra.config._frozen import Frozen, below, within

__all__ = ["ScheduleConfig"]

DEFAULT_ATTEMPT_DEADLINE_S = 320  # above the stall check's own 300 s budget
DEFAULT_RETRY_COUNT = 1  # a stall check runs again on the next tick anyway
DEFAULT_SCHEDULER_MIN_BACKOFF_S = limits.SCHEDULER_DEFAULT_MIN_BACKOFF_S
DEFAULT_SCHEDULER_MAX_BACKOFF_S = 60  # a stall check retried within its 15-minute tick
# A cap on Cloud Scheduler's backoff (Google states defaults, not bounds): no longer than an
# hour, Cloud Scheduler's own default maximum.
SCHEDULER_BACKOFF_MAX_S = limits.SCHEDULER_DEFAULT_MAX_BACKOFF_S
DEFAULT_TIME_ZONE = limits.SCHEDULER_DEFAULT_TIME_ZONE


class ScheduleConfig(Frozen):
    """A Cloud Scheduler job calling a service path with an OIDC token."""

    service: str
    path: str
    schedule: Annotated[str, AfterValidator(check_cron)]
    time_zone: Annotated[str, AfterValidator(check_time_zone)] = DEFAULT_TIME_ZONE
    http_method: Literal["POST", "GET"] = "POST"
    attempt_deadline_seconds: int = within(
        DEFAULT_ATTEMPT_DEADLINE_S, limits.SCHEDULER_HTTP_ATTEMPT_DEADLINE_S
    )
    retry_count: int = within(DEFAULT_RETRY_COUNT, limits.SCHEDULER_RETRY_COUNT)
    min_backoff_seconds: int = Field(
        DEFAULT_SCHEDULER_MIN_BACKOFF_S, ge=0, le=SCHEDULER_BACKOFF_MAX_S
    )
    max_backoff_seconds: int = Field(
        DEFAULT_SCHEDULER_MAX_BACKOFF_S, ge=0, le=SCHEDULER_BACKOFF_MAX_S
    )

    _backoff = model_validator(mode="after")(below("min_backoff_seconds", "max_backoff_seconds"))
