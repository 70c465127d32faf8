"""The ``monitoring`` block: alert thresholds (each default with its reason) and who is told."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from infra.config._frozen import Frozen

__all__ = ["AlertThresholds", "MonitoringConfig", "NotifyConfig"]

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


class AlertThresholds(Frozen):
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


class SlackChannelConfig(Frozen):
    channel: str  # "#prediction-alerts"
    token_secret: str  # a key of platform.secrets: the Slack app's OAuth token


class WebhookChannelConfig(Frozen):
    url_secret: str  # a key of platform.secrets: the webhook URL (it carries its token)


class NotifyConfig(Frozen):
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


class MonitoringConfig(Frozen):
    """Alerts, notification channels and the dashboard, derived from the topology."""

    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
