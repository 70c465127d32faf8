"""The batch model: states, the batch record, outcomes, the stall policy and its defaults.

Pure Python (no Google client imports), so the services' modules load fast and the offline
image check imports them in well under a second; :mod:`shared.batch_store` holds the Firestore
side.

A batch is **open** until it reaches a final state; it reaches one only once every published
item has an outcome: its worker's result (``ok`` or ``failed``), or, when the batch is closed
before that, a ``missing`` outcome recorded with the reason (attempts spent, too old, stuck,
closed by an operator). Final states:

* ``completed``: every item has its worker's outcome (ok or a permanent failure);
* ``partial``: closed with some items recorded missing (listed, each with its reason);
* ``failed``: closed by the maximum age or an operator (open items recorded missing);
* ``publish_failed``: publishing the items failed or stalled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

__all__ = [
    "ACTIVE_STATES",
    "AUDIT_COLLECTION",
    "Batch",
    "BatchNotFound",
    "BatchState",
    "Clock",
    "CompletionOutcome",
    "Counts",
    "DEFAULT_IDLE_WINDOW",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_STUCK_AFTER",
    "FINAL_STATES",
    "FinishAction",
    "InvalidBatchId",
    "InvalidItemId",
    "ITEM_PAGE_SIZE",
    "PAGE_SIZE",
    "StallPolicy",
    "STRAY_KINDS",
    "stall_policy_from_env",
    "TRANSITIONS_SUBCOLLECTION",
    "format_duration",
    "utcnow",
    "validate_batch_id",
    "validate_item_id",
]

TRANSITIONS_SUBCOLLECTION = "transitions"
#: Operators' deletions leave a record here (the batch's own documents are gone).
AUDIT_COLLECTION = "prediction_batch_audit"

#: A batch with no completion (or publishing progress, or re-send) for this long is stalled:
#: the stall check re-sends its open items, or closes it once their attempts are spent.
DEFAULT_IDLE_WINDOW = timedelta(minutes=10)
#: Publishes per item at most (the first included): the stall check re-sends an open item
#: until it has been sent this often, then records it missing. With the 15-minute schedule
#: and the 10-minute idle window a lost item is re-sent twice within about 50 minutes.
DEFAULT_MAX_ATTEMPTS = 3
#: Batches older than this are failed whatever their progress.
DEFAULT_MAX_AGE = timedelta(hours=6)
#: /cleanup-stuck: an active batch with no progress for this long is closed (partial).
DEFAULT_STUCK_AFTER = timedelta(hours=1)
#: Batches per page in scans; items per page when listing or re-sending open items.
PAGE_SIZE = 100
ITEM_PAGE_SIZE = 400

Clock = Callable[[], datetime]
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_ID_RULE = (
    "1-128 characters, letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class BatchState(StrEnum):
    PUBLISHING = "publishing"  # created; items being registered and published
    RUNNING = "running"  # every item published; completions arriving
    COMPLETED = "completed"  # final: every item has its worker's outcome
    PARTIAL = "partial"  # final: closed with items recorded missing (listed)
    FAILED = "failed"  # final: too old, or failed by an operator
    PUBLISH_FAILED = "publish_failed"  # final: publishing the items failed or stalled


ACTIVE_STATES: tuple[BatchState, ...] = (BatchState.PUBLISHING, BatchState.RUNNING)
FINAL_STATES: tuple[BatchState, ...] = tuple(s for s in BatchState if s not in ACTIVE_STATES)


class BatchNotFound(LookupError):
    pass


class InvalidBatchId(ValueError):
    pass


class InvalidItemId(ValueError):
    pass


def validate_batch_id(batch_id: str) -> str:
    if not isinstance(batch_id, str) or not _ID.match(batch_id):
        raise InvalidBatchId(f"invalid batch id {batch_id!r}: {_ID_RULE}")
    return batch_id


def validate_item_id(item_id: str) -> str:
    if not isinstance(item_id, str) or not _ID.match(item_id):
        raise InvalidItemId(f"invalid item id {item_id!r}: {_ID_RULE}")
    return item_id


def _as_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise TypeError(f"not a timestamp: {value!r}")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True)
class Counts:
    """Outcomes recorded for a batch's items (``failed`` includes ``missing``)."""

    done: int = 0
    completed: int = 0
    missing: int = 0

    @property
    def failed(self) -> int:
        return self.done - self.completed


@dataclass(frozen=True)
class Batch:
    """A batch document as read. While the batch is open its counts are a summary written at
    a bounded rate (at most about once a second); at a final state they are exact. The store's
    ``status`` replaces them with live counts for an open batch."""

    batch_id: str
    state: BatchState
    total_items: int
    published_count: int = 0
    completed_count: int = 0
    failed_count: int = 0
    missing_count: int = 0
    resent_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    published_at: datetime | None = None
    publish_heartbeat_at: datetime | None = None
    last_completion_at: datetime | None = None
    last_resend_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    error: str | None = None
    #: Where the batch's items are published (the stall check re-sends there).
    request_topic: str | None = None
    #: Free-form labels set at /start (``source``, and e.g. ``synthetic`` for the post-deploy
    #: check's batches): the model keeps them, nothing in the protocol depends on them.
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        return cls(
            batch_id=data["batch_id"],
            state=BatchState(data["state"]),
            total_items=int(data.get("total_items", 0)),
            published_count=int(data.get("published_count", 0)),
            completed_count=int(data.get("completed_count", 0)),
            failed_count=int(data.get("failed_count", 0)),
            missing_count=int(data.get("missing_count", 0)),
            resent_count=int(data.get("resent_count", 0)),
            created_at=_as_dt(data.get("created_at")),
            updated_at=_as_dt(data.get("updated_at")),
            published_at=_as_dt(data.get("published_at")),
            publish_heartbeat_at=_as_dt(data.get("publish_heartbeat_at")),
            last_completion_at=_as_dt(data.get("last_completion_at")),
            last_resend_at=_as_dt(data.get("last_resend_at")),
            finished_at=_as_dt(data.get("finished_at")),
            reason=data.get("reason"),
            error=data.get("error"),
            request_topic=data.get("request_topic"),
            metadata=dict(data.get("metadata") or {}),
        )

    def with_counts(self, counts: Counts, last_completion_at: datetime | None = None) -> Batch:
        from dataclasses import replace

        return replace(
            self,
            completed_count=counts.completed,
            failed_count=counts.failed,
            missing_count=counts.missing,
            last_completion_at=max(
                (t for t in (self.last_completion_at, last_completion_at) if t), default=None
            ),
        )

    @property
    def done(self) -> int:
        return self.completed_count + self.failed_count

    @property
    def fraction_done(self) -> float:
        return 1.0 if self.total_items <= 0 else min(self.done / self.total_items, 1.0)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def last_activity(self) -> datetime | None:
        """The latest sign of progress: a completion, publishing progress, a re-send, creation."""
        times = [
            t
            for t in (
                self.last_completion_at,
                self.published_at,
                self.publish_heartbeat_at,
                self.last_resend_at,
                self.created_at,
            )
            if t is not None
        ]
        return max(times) if times else None

    def age(self, now: datetime) -> timedelta:
        return now - self.created_at if self.created_at else timedelta(0)

    def idle(self, now: datetime) -> timedelta:
        last = self.last_activity
        return now - last if last else timedelta(0)

    def summary(self, now: datetime) -> dict[str, Any]:
        """The status view: counts, percent, age, idle time, state (JSON-ready)."""
        return {
            "batch_id": self.batch_id,
            "state": str(self.state),
            "total_items": self.total_items,
            "published": self.published_count,
            "completed": self.completed_count,
            "failed": self.failed_count,
            "missing": self.missing_count,
            "resent": self.resent_count,
            "done": self.done,
            "pending": max(self.total_items - self.done, 0),
            "percent": round(self.fraction_done * 100, 2),
            "age_seconds": round(self.age(now).total_seconds(), 3),
            "idle_seconds": round(self.idle(now).total_seconds(), 3),
            "created_at": _iso(self.created_at),
            "published_at": _iso(self.published_at),
            "last_completion_at": _iso(self.last_completion_at),
            "last_resend_at": _iso(self.last_resend_at),
            "finished_at": _iso(self.finished_at),
            "reason": self.reason,
            "error": self.error,
            "metadata": self.metadata,
        }


class CompletionOutcome(StrEnum):
    RECORDED = "recorded"  # the item's first outcome: counted
    DUPLICATE = "duplicate"  # a redelivery of the counted message, or a second result: ignored
    LATE = "late"  # the item had been closed as missing before this arrived: not counted
    FOREIGN = "foreign"  # the batch never published this item: not counted
    UNKNOWN_BATCH = "unknown_batch"  # no such batch (deleted, or never created)


#: Completions that are acknowledged but never counted; each is recorded as a stray
#: (``prediction_batches/{batch}/strays``), shown by ``batches inspect``.
STRAY_KINDS = (
    CompletionOutcome.DUPLICATE,
    CompletionOutcome.LATE,
    CompletionOutcome.FOREIGN,
    CompletionOutcome.UNKNOWN_BATCH,
)


@dataclass(frozen=True)
class StallPolicy:
    """When the stall check acts; the coordinator reads these from optional env vars."""

    idle_window: timedelta = DEFAULT_IDLE_WINDOW
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_age: timedelta = DEFAULT_MAX_AGE
    stuck_after: timedelta = DEFAULT_STUCK_AFTER


def stall_policy_from_env(env: Mapping[str, str]) -> tuple[StallPolicy, list[str]]:
    """The stall policy a coordinator with environment ``env`` applies, and the problems with
    its optional variables (``STALL_IDLE_SECONDS``, ``BATCH_MAX_AGE_SECONDS``,
    ``STUCK_AFTER_SECONDS``: seconds > 0; ``STALL_MAX_ATTEMPTS``: a whole number >= 1). Unset
    or empty ones, and bad ones, take the defaults. The coordinator refuses to start on any
    problem; the local platform's status reads the window its coordinator runs with."""
    problems: list[str] = []

    def seconds(name: str, default: timedelta) -> timedelta:
        raw = env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            problems.append(f"{name}={raw!r} is not a number of seconds")
            return default
        if value <= 0:
            problems.append(f"{name}={raw!r} must be > 0")
        return timedelta(seconds=value)

    idle = seconds("STALL_IDLE_SECONDS", DEFAULT_IDLE_WINDOW)
    max_age = seconds("BATCH_MAX_AGE_SECONDS", DEFAULT_MAX_AGE)
    stuck = seconds("STUCK_AFTER_SECONDS", DEFAULT_STUCK_AFTER)
    attempts = DEFAULT_MAX_ATTEMPTS
    raw = env.get("STALL_MAX_ATTEMPTS")
    if raw:
        try:
            attempts = int(raw)
            if attempts < 1:
                problems.append(f"STALL_MAX_ATTEMPTS={raw!r} must be >= 1")
        except ValueError:
            problems.append(f"STALL_MAX_ATTEMPTS={raw!r} is not a whole number")
    policy = StallPolicy(
        idle_window=idle, max_attempts=attempts, max_age=max_age, stuck_after=stuck
    )
    return policy, problems


@dataclass(frozen=True)
class FinishAction:
    """What a check did (or, with ``dry_run``, would do) to one batch.

    ``action``: ``complete`` (every item has an outcome), ``resend`` (open items published
    again; the batch stays open), ``partial`` (closed, open items recorded missing), ``fail``,
    ``publish_failed``."""

    batch_id: str
    action: str
    reason: str
    percent: float
    applied: bool = False
    missing_recorded: int = 0
    resent: int = 0
    state: str | None = None  # the state the batch ended in (when applied)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
