"""The Pub/Sub models: a topic and its push subscriptions, with the platform's defaults."""

from __future__ import annotations

from pydantic import Field, model_validator

from infra import limits
from infra.config._frozen import Frozen, below, within
from infra.durations import api_duration
from infra.naming import short_service

__all__ = ["DEAD_LETTER_RETENTION", "DEFAULT_ACK_DEADLINE_S", "SubscriptionConfig", "TopicConfig"]

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


class SubscriptionConfig(Frozen):
    """A push subscription delivering a topic's messages to a service path."""

    service: str
    path: str = "/"
    name: str | None = None  # logical name; default "<topic>-<service without prefix>"
    ack_deadline_seconds: int = within(DEFAULT_ACK_DEADLINE_S, limits.PUBSUB_ACK_DEADLINE_S)
    min_backoff_seconds: int = within(DEFAULT_MIN_BACKOFF_S, limits.PUBSUB_BACKOFF_S)
    max_backoff_seconds: int = within(DEFAULT_MAX_BACKOFF_S, limits.PUBSUB_BACKOFF_S)
    max_delivery_attempts: int = within(
        DEFAULT_MAX_DELIVERY_ATTEMPTS, limits.PUBSUB_DELIVERY_ATTEMPTS
    )

    _backoff = model_validator(mode="after")(below("min_backoff_seconds", "max_backoff_seconds"))

    def logical_name(self, topic: str) -> str:
        return self.name or f"{topic}-{short_service(self.service)}"


class TopicConfig(Frozen):
    # A topic with no subscription drops every message published to it.
    subscriptions: tuple[SubscriptionConfig, ...] = Field(min_length=1)
