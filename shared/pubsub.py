"""Pub/Sub push envelopes in, JSON messages out.

A push subscription POSTs an envelope::

    {"message": {"data": "<base64>", "attributes": {...}, "messageId": "...",
                 "publishTime": "..."},
     "subscription": "projects/P/subscriptions/S", "deliveryAttempt": 3}

(``deliveryAttempt`` only when the subscription has a dead-letter policy; Google's emulator
never sends it.) The answer decides the message's fate: 102, 200, 201, 202 or 204 acknowledge
it; anything else makes Pub/Sub redeliver it with backoff and, after the subscription's
``max_delivery_attempts``, dead-letter it. So a handler answers 2xx for every *permanent*
failure (a malformed message will never get better) and a retryable status only for transient
ones: a 500 for a permanent error once made Pub/Sub retry a message forever and stuck a batch.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.limits import (
    MAX_JSON_DEPTH,
    MAX_PUSH_BODY_BYTES,
    PUBSUB_MAX_MESSAGE_BYTES,
    TooDeep,
    TooLarge,
    loads_bounded,
)

__all__ = [
    "ACK_STATUS_CODES",
    "SINGLE_MAX_LATENCY_S",
    "MalformedEnvelope",
    "PushMessage",
    "UnreadableData",
    "read_body",
    "parse_push",
    "publish_messages",
    "topic_path",
    "subscription_path",
    "AsyncJsonPublisher",
    "JsonPublisher",
]

#: The HTTP status codes a push subscription takes as an acknowledgement.
#: https://cloud.google.com/pubsub/docs/push#receive_push
ACK_STATUS_CODES = frozenset({102, 200, 201, 202, 204})


class MalformedEnvelope(ValueError):
    """The request is not a Pub/Sub push envelope, or its data is not what was expected.

    Permanent: redelivering the same bytes cannot fix it, so acknowledge (2xx) and report.
    """


class UnreadableData(MalformedEnvelope):
    """A valid envelope whose data cannot be used (too large, too deep, not a JSON object):
    permanent, but the message's attributes may still say which item it was for."""


#: The envelope's own nesting: {"message": {"attributes": {...}}}.
_ENVELOPE_DEPTH = 3


async def read_body(request: Any, *, limit: int = MAX_PUSH_BODY_BYTES) -> bytes | None:
    """A push request's body, or None once it exceeds ``limit`` bytes (read no further: no
    Pub/Sub push is that large, so it is acknowledged without parsing; see
    :func:`shared.request_body.read_limited`)."""
    from shared.request_body import BodyTooLarge, read_limited

    try:
        return await read_limited(request, limit)
    except BodyTooLarge:
        return None


@dataclass(frozen=True)
class PushMessage:
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    message_id: str = ""
    publish_time: str | None = None
    subscription: str | None = None
    delivery_attempt: int | None = None

    def json(
        self, *, max_bytes: int = PUBSUB_MAX_MESSAGE_BYTES, max_depth: int = MAX_JSON_DEPTH
    ) -> dict[str, Any]:
        """The data as a JSON object of at most ``max_bytes`` and ``max_depth`` levels; raises
        :class:`UnreadableData` otherwise (a permanent error)."""
        try:
            value = loads_bounded(
                self.data.decode("utf-8"),
                max_bytes=max_bytes,
                max_depth=max_depth,
                what=f"message {self.message_id} data",
            )
        except (TooLarge, TooDeep) as exc:
            raise UnreadableData(str(exc)) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UnreadableData(f"message {self.message_id}: data is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise UnreadableData(
                f"message {self.message_id}: data is JSON {type(value).__name__}, not an object"
            )
        return value


def parse_push(body: bytes | str | Mapping[str, Any] | None) -> PushMessage:
    """Decode and validate a push envelope (bounded: :data:`MAX_PUSH_BODY_BYTES`, a few levels
    of nesting; ``None`` is a body :func:`read_body` found too large). Raises
    :class:`MalformedEnvelope`."""
    if body is None:
        raise MalformedEnvelope(f"request body exceeds {MAX_PUSH_BODY_BYTES:,} bytes")
    if isinstance(body, bytes | str):
        try:
            body = loads_bounded(
                body, max_bytes=MAX_PUSH_BODY_BYTES, max_depth=_ENVELOPE_DEPTH, what="request body"
            )
        except (TooLarge, TooDeep) as exc:
            raise MalformedEnvelope(str(exc)) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEnvelope(f"request body is not JSON: {exc}") from None
    if not isinstance(body, Mapping):
        raise MalformedEnvelope("request body is not a JSON object")
    message = body.get("message")
    if not isinstance(message, Mapping):
        raise MalformedEnvelope("envelope has no 'message' object")
    raw = message.get("data", "")
    if not isinstance(raw, str):
        raise MalformedEnvelope("message.data is not a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedEnvelope(f"message.data is not valid base64: {exc}") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise MalformedEnvelope("message.attributes is not a string-to-string object")
    message_id = message.get("messageId") or message.get("message_id") or ""
    attempt = body.get("deliveryAttempt")
    return PushMessage(
        data=data,
        attributes=dict(attributes),
        message_id=str(message_id),
        publish_time=message.get("publishTime") or message.get("publish_time"),
        subscription=body.get("subscription"),
        delivery_attempt=attempt if isinstance(attempt, int) else None,
    )


def topic_path(project: str, topic: str) -> str:
    """``projects/P/topics/T`` from a short topic id, or the path itself if already one."""
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project}/subscriptions/{subscription}"


#: How long one publish may keep retrying before the caller sees the error (the library's
#: default is 600 s, far longer than a request should hang on an unreachable Pub/Sub).
PUBLISH_RETRY_DEADLINE_S = 60.0
PUBLISH_RPC_TIMEOUT_S = 30.0
#: Batching window of the publisher client (the library default): good for bulk publishing.
BATCH_MAX_LATENCY_S = 0.01
#: For one message published and waited for: no point holding it back.
SINGLE_MAX_LATENCY_S = 0.0005


def publish_messages(
    client: Any,
    project: str,
    topic: str,
    messages: Sequence[tuple[Mapping[str, Any], Mapping[str, str]]],
    *,
    timeout: float = PUBLISH_RETRY_DEADLINE_S + 5,
) -> list[str]:
    """Publish ``(payload, attributes)`` JSON messages with a ``pubsub_v1.PublisherClient`` and
    wait for all; raises the first publish error."""
    path = topic_path(project, topic)
    futures = [
        client.publish(path, json.dumps(p, separators=(",", ":"), sort_keys=True).encode(), **a)
        for p, a in messages
    ]
    return [f.result(timeout=timeout) for f in futures]


class AsyncJsonPublisher:
    """Publishes one JSON message per call with the GAPIC async client, awaited in the event
    loop: no batching window, no batch thread, no thread-pool hop (the publisher client's
    batching, however short its window, hands every message to a commit thread; this is the
    worker's hot path, one completion per request). Honours ``PUBSUB_EMULATOR_HOST``.
    Create it inside the running loop (an ASGI lifespan)."""

    def __init__(self, project: str, topic: str, *, client: Any = None) -> None:
        self.topic = topic_path(project, topic)
        self._client = client or _async_gapic_client()

    async def publish(
        self,
        payload: Mapping[str, Any],
        *,
        timeout: float = PUBLISH_RETRY_DEADLINE_S + 5,
        **attributes: str,
    ) -> str:
        """Publish and wait; returns the message id or raises the publish error (after the
        retries of transient errors within :data:`PUBLISH_RETRY_DEADLINE_S`)."""
        from google.api_core import retry_async

        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        response = await self._client.publish(
            request={"topic": self.topic, "messages": [{"data": data, "attributes": attributes}]},
            retry=retry_async.AsyncRetry(
                initial=0.1,
                maximum=5.0,
                multiplier=2.0,
                timeout=PUBLISH_RETRY_DEADLINE_S,
                predicate=_transient_publish_error,
            ),
            timeout=PUBLISH_RPC_TIMEOUT_S,
        )
        return response.message_ids[0]

    async def close(self) -> None:
        transport = getattr(self._client, "transport", None)
        if transport is not None:
            await transport.close()


def _transient_publish_error(exc: BaseException) -> bool:
    from google.api_core import exceptions as gexc

    return isinstance(
        exc,
        gexc.ServiceUnavailable
        | gexc.DeadlineExceeded
        | gexc.InternalServerError
        | gexc.Aborted
        | gexc.ResourceExhausted
        | gexc.Unknown
        | gexc.Cancelled,
    )


def _async_gapic_client() -> Any:
    import os

    from google.pubsub_v1.services.publisher import PublisherAsyncClient

    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return PublisherAsyncClient()
    import grpc
    from google.auth.credentials import AnonymousCredentials
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport

    return PublisherAsyncClient(
        transport=PublisherGrpcAsyncIOTransport(
            channel=grpc.aio.insecure_channel(host), credentials=AnonymousCredentials()
        )
    )


class JsonPublisher:
    """Publishes JSON objects to one topic with the official client (honours
    ``PUBSUB_EMULATOR_HOST``). Thread-safe; the client batches messages."""

    def __init__(
        self,
        project: str,
        topic: str,
        *,
        client: Any = None,
        max_latency_s: float = BATCH_MAX_LATENCY_S,
    ) -> None:
        """``max_latency_s``: how long the client holds a message to batch it with others
        (the library's 10 ms suits the coordinator's bulk publishing; a caller that publishes
        one message and waits for it, like the worker, passes :data:`SINGLE_MAX_LATENCY_S`)."""
        from google.api_core import retry as retries
        from google.cloud import pubsub_v1

        self._project = project
        self.topic = topic_path(project, topic)
        self._client = client or pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=max_latency_s),
            publisher_options=pubsub_v1.types.PublisherOptions(
                retry=retries.Retry(
                    initial=0.1, maximum=5.0, multiplier=2.0, timeout=PUBLISH_RETRY_DEADLINE_S
                ),
                timeout=PUBLISH_RPC_TIMEOUT_S,
            ),
        )

    def publish_async(self, payload: Mapping[str, Any], **attributes: str):
        """Start publishing; returns the client's future (``.result(timeout)`` -> message id)."""
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return self._client.publish(self.topic, data, **attributes)

    def publish(
        self,
        payload: Mapping[str, Any],
        *,
        timeout: float = PUBLISH_RETRY_DEADLINE_S + 5,
        **attributes: str,
    ) -> str:
        """Publish and wait; returns the message id or raises the publish error."""
        return self.publish_async(payload, **attributes).result(timeout=timeout)

    def send(
        self,
        topic: str,
        messages: Sequence[tuple[Mapping[str, Any], Mapping[str, str]]],
        *,
        timeout: float = PUBLISH_RETRY_DEADLINE_S + 5,
    ) -> list[str]:
        """Publish ``(payload, attributes)`` messages to ``topic`` (a path or a short id of this
        client's project) and wait for all; raises the first publish error."""
        return publish_messages(self._client, self._project, topic, messages, timeout=timeout)

    def close(self) -> None:
        try:
            self._client.stop()
        except Exception:  # pragma: no cover - already stopped
            pass
