"""Dead-letter subscriptions: read what they hold, and replay it to the source topic.

Pub/Sub moves a message to the dead-letter topic after ``max_delivery_attempts`` failed
deliveries, adding ``CloudPubSubDeadLetterSourceSubscription`` (and ``...Project``,
``...DeliveryCount``, ...) attributes. Once the cause is fixed, :func:`replay` republishes each
message (same data, its original attributes) to the topic of the subscription it came from and
acknowledges it on the dead-letter subscription only after the publish succeeded, so nothing is
lost if the replay stops half way. (17 messages once sat in a retry loop with no way out but
manual surgery.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.pubsub import subscription_path, topic_path

__all__ = ["DEAD_LETTER_ATTRIBUTE_PREFIX", "DeadLetter", "ReplayResult", "peek", "replay"]

DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetterSource"
#: Messages per pull request (the API's maximum is 1000).
_PULL_BATCH = 500
_PULL_TIMEOUT_S = 2.0  # an empty pull on the emulator waits this long


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    publish_time: str | None
    attributes: dict[str, str]
    data: bytes = field(repr=False)
    ack_id: str = field(repr=False, default="")

    @property
    def source_subscription(self) -> str | None:
        """The subscription it was dead-lettered from, as a full path when the project is
        known (Pub/Sub sets the id and the project in separate attributes)."""
        sub = self.attributes.get(f"{DEAD_LETTER_ATTRIBUTE_PREFIX}Subscription")
        project = self.attributes.get(f"{DEAD_LETTER_ATTRIBUTE_PREFIX}SubscriptionProject")
        if sub and project and not sub.startswith("projects/"):
            return subscription_path(project, sub)
        return sub

    @property
    def delivery_count(self) -> int | None:
        raw = self.attributes.get(f"{DEAD_LETTER_ATTRIBUTE_PREFIX}DeliveryCount")
        return int(raw) if raw and raw.isdigit() else None

    @property
    def original_attributes(self) -> dict[str, str]:
        return {
            k: v
            for k, v in self.attributes.items()
            if not k.startswith(DEAD_LETTER_ATTRIBUTE_PREFIX)
        }

    def summary(self) -> dict[str, Any]:
        try:
            payload: Any = json.loads(self.data)
        except (ValueError, UnicodeDecodeError):
            payload = self.data[:200].decode("utf-8", "replace")
        return {
            "message_id": self.message_id,
            "publish_time": self.publish_time,
            "source_subscription": self.source_subscription,
            "delivery_count": self.delivery_count,
            "attributes": self.original_attributes,
            "data": payload,
        }


@dataclass
class ReplayResult:
    replayed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pull(subscriber, sub: str, limit: int) -> list[DeadLetter]:
    from google.api_core.exceptions import DeadlineExceeded

    got: list[DeadLetter] = []
    while len(got) < limit:
        try:
            resp = subscriber.pull(
                request={"subscription": sub, "max_messages": min(_PULL_BATCH, limit - len(got))},
                timeout=_PULL_TIMEOUT_S,
            )
        except DeadlineExceeded:
            break
        if not resp.received_messages:
            break
        for r in resp.received_messages:
            m = r.message
            got.append(
                DeadLetter(
                    message_id=m.message_id,
                    publish_time=m.publish_time.isoformat() if m.publish_time else None,
                    attributes=dict(m.attributes),
                    data=bytes(m.data),
                    ack_id=r.ack_id,
                )
            )
    return got


def _release(subscriber, sub: str, letters: list[DeadLetter]) -> None:
    """Give messages back at once (ack deadline 0) so they stay in the subscription."""
    ack_ids = [d.ack_id for d in letters if d.ack_id]
    for start in range(0, len(ack_ids), 1000):
        subscriber.modify_ack_deadline(
            request={
                "subscription": sub,
                "ack_ids": ack_ids[start : start + 1000],
                "ack_deadline_seconds": 0,
            }
        )


def peek(project: str, subscription: str, *, limit: int = 100, subscriber=None) -> list[DeadLetter]:
    """Up to ``limit`` messages the dead-letter subscription holds, left in place."""
    from google.cloud import pubsub_v1

    client = subscriber or pubsub_v1.SubscriberClient()
    sub = subscription_path(project, subscription)
    letters = _pull(client, sub, limit)
    _release(client, sub, letters)
    return letters


def replay(
    project: str,
    subscription: str,
    *,
    limit: int = 100,
    topic: str | None = None,
    dry_run: bool = False,
    subscriber=None,
    publisher=None,
    on_message: Callable[[DeadLetter, str], None] | None = None,
) -> ReplayResult:
    """Republish up to ``limit`` dead letters to their source topic, then ack each.

    The source topic is ``topic`` if given, else the topic of the subscription named in the
    message's ``CloudPubSubDeadLetterSourceSubscription`` attribute. A message whose publish
    fails is released back to the dead-letter subscription and listed in ``failed``.
    """
    from google.cloud import pubsub_v1

    sub_client = subscriber or pubsub_v1.SubscriberClient()
    pub_client = publisher or pubsub_v1.PublisherClient()
    sub = subscription_path(project, subscription)
    letters = _pull(sub_client, sub, limit)
    result = ReplayResult()
    topics: dict[str, str] = {}
    to_release: list[DeadLetter] = []
    for letter in letters:
        try:
            target = (
                topic_path(project, topic) if topic else _source_topic(sub_client, letter, topics)
            )
        except LookupError as exc:
            result.failed.append({**letter.summary(), "error": str(exc)})
            to_release.append(letter)
            continue
        if dry_run:
            result.replayed.append({**letter.summary(), "topic": target, "dry_run": True})
            to_release.append(letter)
            continue
        try:
            new_id = pub_client.publish(target, letter.data, **letter.original_attributes).result(
                timeout=60
            )
        except Exception as exc:  # noqa: BLE001 - report and keep the message
            result.failed.append(
                {**letter.summary(), "topic": target, "error": f"{type(exc).__name__}: {exc}"}
            )
            to_release.append(letter)
            continue
        sub_client.acknowledge(request={"subscription": sub, "ack_ids": [letter.ack_id]})
        result.replayed.append({**letter.summary(), "topic": target, "new_message_id": new_id})
        if on_message:
            on_message(letter, target)
    _release(sub_client, sub, to_release)
    return result


def _source_topic(subscriber, letter: DeadLetter, cache: dict[str, str]) -> str:
    source = letter.source_subscription
    if not source:
        raise LookupError(
            f"message {letter.message_id} has no {DEAD_LETTER_ATTRIBUTE_PREFIX}Subscription "
            "attribute: pass --topic"
        )
    if source not in cache:
        try:
            cache[source] = subscriber.get_subscription(request={"subscription": source}).topic
        except Exception as exc:  # noqa: BLE001
            raise LookupError(f"cannot read source subscription {source}: {exc}") from None
    return cache[source]
