"""Apply a :class:`~scripts.local._topology.Topology`'s Pub/Sub part to Google's emulator.

Through the official ``google-cloud-pubsub`` admin clients (``PublisherClient`` for topics,
``SubscriberClient`` for subscriptions), pointed at the emulator. Idempotent: what already
matches is left alone (``same``); a changed subscription is updated in place with a field mask
(the emulator supports ``UpdateSubscription``), or deleted and recreated when its topic changed
(Pub/Sub cannot move a subscription); topics and subscriptions of the project that the graph no
longer has are deleted (subscriptions first). The local platform owns the emulator's project.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra import limits
from scripts.local._topology import SubscriptionSpec, Topology

__all__ = ["Op", "ApplyResult", "PubSubAdmin", "apply_pubsub", "ApplyAborted"]

#: Per-call timeout for admin calls: a local emulator answers in milliseconds.
ADMIN_TIMEOUT_S = 10.0

OnOutput = Callable[[str], None]


class ApplyAborted(RuntimeError):
    """:meth:`PubSubAdmin.abort` was called while applying (lease lost, SIGINT)."""


@dataclass(frozen=True)
class Op:
    action: str  # create | update | replace | delete | same
    kind: str  # topic | subscription
    name: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.action:<7} {self.kind} {self.name}" + (
            f" ({self.detail})" if self.detail else ""
        )


@dataclass
class ApplyResult:
    ops: list[Op] = field(default_factory=list)
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        """``{"create": n, "update": n, "delete": n, "same": n}`` (a replace counts as update)."""
        out = {"create": 0, "update": 0, "delete": 0, "same": 0}
        for op in self.ops:
            out["update" if op.action == "replace" else op.action] += 1
        return out

    @property
    def changed(self) -> bool:
        return any(op.action != "same" for op in self.ops)


def _duration(seconds: int | None):
    from google.protobuf import duration_pb2

    return duration_pb2.Duration(seconds=int(seconds or 0))


class PubSubAdmin:
    """Admin clients for one emulator (``host`` = ``127.0.0.1:PORT``) and project."""

    def __init__(self, host: str, project: str) -> None:
        import grpc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        self.host = host
        self.project = project
        # Explicit insecure channels: no PUBSUB_EMULATOR_HOST needed in this process's env,
        # so admin clients for several emulators coexist (tests, benchmark).
        self._pub_channel = grpc.insecure_channel(host)
        self._sub_channel = grpc.insecure_channel(host)
        self.publisher = pubsub_v1.PublisherClient(
            transport=PublisherGrpcTransport(
                channel=self._pub_channel, credentials=AnonymousCredentials()
            )
        )
        self.subscriber = pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(
                channel=self._sub_channel, credentials=AnonymousCredentials()
            )
        )
        self._abort = threading.Event()

    # --- paths
    def topic_path(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    # --- reads
    def topics(self) -> dict[str, Any]:
        return {
            t.name.rsplit("/", 1)[-1]: t
            for t in self.publisher.list_topics(
                request={"project": f"projects/{self.project}"}, timeout=ADMIN_TIMEOUT_S
            )
        }

    def subscriptions(self) -> dict[str, Any]:
        return {
            s.name.rsplit("/", 1)[-1]: s
            for s in self.subscriber.list_subscriptions(
                request={"project": f"projects/{self.project}"}, timeout=ADMIN_TIMEOUT_S
            )
        }

    # --- control
    def abort(self) -> None:
        """Make a running :func:`apply_pubsub` stop before its next change."""
        self._abort.set()

    def check_abort(self) -> None:
        if self._abort.is_set():
            raise ApplyAborted("apply aborted before completion")

    def close(self) -> None:
        for ch in (self._pub_channel, self._sub_channel):
            try:
                ch.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def __enter__(self) -> PubSubAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- messages (dead letters, benchmark)
    def peek(self, subscription: str, *, max_messages: int = 1000) -> list[Any]:
        """Messages a pull subscription holds, left in it (pulled, then nacked)."""
        path = self.subscription_path(subscription)
        seen: dict[str, Any] = {}
        ack_ids: list[str] = []
        for _ in range(20):
            with warnings.catch_warnings():
                # Deprecated for production use; the emulator honours it, and without it an
                # empty subscription's pull blocks for ~14 s.
                warnings.simplefilter("ignore", DeprecationWarning)
                resp = self.subscriber.pull(
                    request={
                        "subscription": path,
                        "max_messages": max_messages,
                        "return_immediately": True,
                    },
                    timeout=ADMIN_TIMEOUT_S,
                )
            if not resp.received_messages:
                break
            fresh = 0
            for rm in resp.received_messages:
                ack_ids.append(rm.ack_id)
                if rm.message.message_id not in seen:
                    fresh += 1
                    seen[rm.message.message_id] = rm.message
            if not fresh or len(seen) >= max_messages:
                break
        if ack_ids:
            self.subscriber.modify_ack_deadline(
                request={"subscription": path, "ack_ids": ack_ids, "ack_deadline_seconds": 0},
                timeout=ADMIN_TIMEOUT_S,
            )
        return list(seen.values())


# --- desired vs actual ---------------------------------------------------------------------


def _desired_fields(admin: PubSubAdmin, s: SubscriptionSpec) -> dict[str, Any]:
    """The subscription fields we manage, as the emulator reports them (comparable)."""
    return {
        "push_config": {"push_endpoint": s.push_endpoint or ""},
        "ack_deadline_seconds": s.ack_deadline_seconds,
        "retry_policy": (
            None
            if s.min_backoff_seconds is None
            else (int(s.min_backoff_seconds), int(s.max_backoff_seconds or 0))
        ),
        "dead_letter_policy": (
            None
            if not s.dead_letter_topic
            else (
                admin.topic_path(s.dead_letter_topic),
                int(s.max_delivery_attempts or limits.PUBSUB_DEFAULT_DELIVERY_ATTEMPTS),
            )
        ),
        "retain_acked_messages": s.retain_acked_messages,
        "message_retention_duration": s.message_retention_seconds,
    }


def _actual_fields(existing: Any, desired: dict[str, Any]) -> dict[str, Any]:
    rp = existing.retry_policy if "retry_policy" in existing else None
    dl = existing.dead_letter_policy if "dead_letter_policy" in existing else None
    retention = (
        int(existing.message_retention_duration.total_seconds())
        if desired["message_retention_duration"] is not None
        else None
    )
    return {
        "push_config": {"push_endpoint": existing.push_config.push_endpoint or ""},
        "ack_deadline_seconds": existing.ack_deadline_seconds,
        "retry_policy": (
            None
            if rp is None
            else (int(rp.minimum_backoff.total_seconds()), int(rp.maximum_backoff.total_seconds()))
        ),
        "dead_letter_policy": (
            None
            if dl is None or not dl.dead_letter_topic
            else (dl.dead_letter_topic, int(dl.max_delivery_attempts))
        ),
        "retain_acked_messages": bool(existing.retain_acked_messages),
        "message_retention_duration": retention,
    }


def _request_fields(admin: PubSubAdmin, s: SubscriptionSpec) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": admin.subscription_path(s.name),
        "topic": admin.topic_path(s.topic),
        "push_config": {"push_endpoint": s.push_endpoint} if s.push_endpoint else {},
        "ack_deadline_seconds": s.ack_deadline_seconds,
        "retain_acked_messages": s.retain_acked_messages,
        # The program sets ttl "" (never expire); an expiring local subscription would vanish.
        "expiration_policy": {"ttl": _duration(0)},
    }
    if s.min_backoff_seconds is not None:
        fields["retry_policy"] = {
            "minimum_backoff": _duration(s.min_backoff_seconds),
            "maximum_backoff": _duration(s.max_backoff_seconds),
        }
    if s.dead_letter_topic:
        fields["dead_letter_policy"] = {
            "dead_letter_topic": admin.topic_path(s.dead_letter_topic),
            "max_delivery_attempts": int(
                s.max_delivery_attempts or limits.PUBSUB_DEFAULT_DELIVERY_ATTEMPTS
            ),
        }
    if s.message_retention_seconds is not None:
        fields["message_retention_duration"] = _duration(s.message_retention_seconds)
    return fields


def apply_pubsub(
    admin: PubSubAdmin,
    topology: Topology,
    *,
    dry_run: bool = False,
    on_output: OnOutput | None = None,
) -> ApplyResult:
    """Make the emulator's project hold exactly ``topology``'s topics and subscriptions.

    Push endpoints must already be local (:meth:`Topology.localise`). With ``dry_run``
    nothing changes and the result lists what would. Raises :class:`ApplyAborted` if
    :meth:`PubSubAdmin.abort` is called meanwhile, ``google.api_core`` errors otherwise.
    """
    from google.protobuf import field_mask_pb2

    result = ApplyResult(dry_run=dry_run)

    def do(op: Op, fn: Callable[[], Any] | None = None) -> None:
        if op.action != "same":
            admin.check_abort()
            if not dry_run and fn is not None:
                fn()
        result.ops.append(op)
        if on_output and op.action != "same":
            on_output(("would " if dry_run else "") + str(op))

    topics = admin.topics()
    subs = admin.subscriptions()
    wanted_topics = {t.name for t in topology.topics}
    wanted_subs = {s.name for s in topology.subscriptions}

    for t in topology.topics:
        if t.name in topics:
            do(Op("same", "topic", t.name))
        else:
            path = admin.topic_path(t.name)
            do(
                Op("create", "topic", t.name),
                lambda path=path: admin.publisher.create_topic(
                    request={"name": path}, timeout=ADMIN_TIMEOUT_S
                ),
            )

    for s in topology.subscriptions:
        fields = _request_fields(admin, s)
        existing = subs.get(s.name)
        if existing is None:
            do(
                Op("create", "subscription", s.name, f"topic {s.topic}"),
                lambda f=fields: admin.subscriber.create_subscription(
                    request=f, timeout=ADMIN_TIMEOUT_S
                ),
            )
            continue
        if existing.topic != fields["topic"]:

            def replace_sub(f=fields, name=fields["name"]) -> None:
                admin.subscriber.delete_subscription(
                    request={"subscription": name}, timeout=ADMIN_TIMEOUT_S
                )
                admin.subscriber.create_subscription(request=f, timeout=ADMIN_TIMEOUT_S)

            do(
                Op("replace", "subscription", s.name, f"topic -> {s.topic}"),
                replace_sub,
            )
            continue
        desired = _desired_fields(admin, s)
        actual = _actual_fields(existing, desired)
        changed = sorted(k for k in desired if desired[k] != actual[k])
        if not changed:
            do(Op("same", "subscription", s.name))
            continue
        body = {k: v for k, v in fields.items() if k in changed or k == "name"}
        for k in changed:  # a policy that should go away: send it empty, named in the mask
            body.setdefault(k, {})
        do(
            Op("update", "subscription", s.name, ", ".join(changed)),
            lambda b=body, c=changed: admin.subscriber.update_subscription(
                request={
                    "subscription": b,
                    "update_mask": field_mask_pb2.FieldMask(paths=c),
                },
                timeout=ADMIN_TIMEOUT_S,
            ),
        )

    # What the graph no longer has, subscriptions before their topics.
    stale: list[tuple[str, list[str], Callable[[str], str], Callable[[str], Any]]] = [
        (
            "subscription",
            sorted(set(subs) - wanted_subs),
            admin.subscription_path,
            lambda path: admin.subscriber.delete_subscription(
                request={"subscription": path}, timeout=ADMIN_TIMEOUT_S
            ),
        ),
        (
            "topic",
            sorted(set(topics) - wanted_topics),
            admin.topic_path,
            lambda path: admin.publisher.delete_topic(
                request={"topic": path}, timeout=ADMIN_TIMEOUT_S
            ),
        ),
    ]
    for kind, names, path_of, delete in stale:
        for name in names:
            path = path_of(name)
            do(
                Op("delete", kind, name, "no longer in the graph"),
                lambda path=path, delete=delete: delete(path),
            )
    return result
