"""The batch model: states, the batch record, the stall policy and its defaults.

Pure Python (no Google client imports), so the services' modules load fast and the offline
image check imports them in well under a second; :mod:`shared.batch_store` holds the Firestore
side.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

__all__ = [
    "ACTION_STATE",
    "ACTIVE_STATES",
    "AUDIT_COLLECTION",
    "Batch",
    "BatchNotFound",
    "BatchState",
    "Clock",
    "CompletionOutcome",
    "DEFAULT_COMPLETE_THRESHOLD",
    "DEFAULT_IDLE_WINDOW",
    "DEFAULT_MAX_AGE",
    "DEFAULT_STUCK_AFTER",
    "FinishAction",
    "InvalidBatchId",
    "ITEM_PAGE_SIZE",
    "PAGE_SIZE",
    "StallPolicy",
    "TRANSITIONS_SUBCOLLECTION",
    "format_duration",
    "utcnow",
    "validate_batch_id",
]

TRANSITIONS_SUBCOLLECTION = "transitions"
#: Operators' deletions leave a record here (the batch's own documents are gone).
AUDIT_COLLECTION = "prediction_batch_audit"

#: A batch this far done may be completed by the stall check (the rest recorded as failed).
DEFAULT_COMPLETE_THRESHOLD = 0.95
#: ... once it has had no completion (or publishing progress) for this long.
DEFAULT_IDLE_WINDOW = timedelta(minutes=10)
#: Batches older than this are failed whatever their progress.
DEFAULT_MAX_AGE = timedelta(hours=6)
#: /cleanup-stuck: an active batch with no progress for this long is finished as failed.
DEFAULT_STUCK_AFTER = timedelta(hours=1)
#: Batches per page in scans; items per page when listing missing items.
PAGE_SIZE = 100
ITEM_PAGE_SIZE = 400

Clock = Callable[[], datetime]
_BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class BatchState(StrEnum):
    PUBLISHING = "publishing"  # created; items being published in the background
    RUNNING = "running"  # every item published; completions arriving
    COMPLETED = "completed"  # finished: every item completed or recorded as failed
    FAILED = "failed"  # finished: too old, stuck, or failed by an operator
    PUBLISH_FAILED = "publish_failed"  # finished: publishing the items failed or stalled


ACTIVE_STATES: tuple[BatchState, ...] = (BatchState.PUBLISHING, BatchState.RUNNING)


class BatchNotFound(LookupError):
    pass


class InvalidBatchId(ValueError):
    pass


def validate_batch_id(batch_id: str) -> str:
    if not isinstance(batch_id, str) or not _BATCH_ID.match(batch_id):
        raise InvalidBatchId(
            f"invalid batch id {batch_id!r}: 1-128 characters, letters, digits, '_', '.', ':' "
            "or '-', starting with a letter or digit"
        )
    return batch_id


def _as_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise TypeError(f"not a timestamp: {value!r}")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True)
class Batch:
    """A batch document as read."""

    batch_id: str
    state: BatchState
    total_items: int
    published_count: int = 0
    completed_count: int = 0
    failed_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    published_at: datetime | None = None
    publish_heartbeat_at: datetime | None = None
    last_completion_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        return cls(
            batch_id=data["batch_id"],
            state=BatchState(data["state"]),
            total_items=int(data.get("total_items", 0)),
            published_count=int(data.get("published_count", 0)),
            completed_count=int(data.get("completed_count", 0)),
            failed_count=int(data.get("failed_count", 0)),
            created_at=_as_dt(data.get("created_at")),
            updated_at=_as_dt(data.get("updated_at")),
            published_at=_as_dt(data.get("published_at")),
            publish_heartbeat_at=_as_dt(data.get("publish_heartbeat_at")),
            last_completion_at=_as_dt(data.get("last_completion_at")),
            finished_at=_as_dt(data.get("finished_at")),
            reason=data.get("reason"),
            error=data.get("error"),
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
        """The latest sign of progress: a completion, publishing progress, or creation."""
        times = [
            t
            for t in (
                self.last_completion_at,
                self.published_at,
                self.publish_heartbeat_at,
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
            "done": self.done,
            "pending": max(self.total_items - self.done, 0),
            "percent": round(self.fraction_done * 100, 2),
            "age_seconds": round(self.age(now).total_seconds(), 3),
            "idle_seconds": round(self.idle(now).total_seconds(), 3),
            "created_at": _iso(self.created_at),
            "published_at": _iso(self.published_at),
            "last_completion_at": _iso(self.last_completion_at),
            "finished_at": _iso(self.finished_at),
            "reason": self.reason,
            "error": self.error,
        }


class CompletionOutcome(StrEnum):
    RECORDED = "recorded"  # first completion of this item: counted
    DUPLICATE = "duplicate"  # redelivery (or a late one after the item was recorded): ignored
    UPGRADED = "upgraded"  # the item had been recorded missing by the stall check; now ok
    UNKNOWN_BATCH = "unknown_batch"  # no such batch (deleted by an operator, or never created)


@dataclass(frozen=True)
class StallPolicy:
    """When the stall check acts; the coordinator reads these from optional env vars."""

    idle_window: timedelta = DEFAULT_IDLE_WINDOW
    max_age: timedelta = DEFAULT_MAX_AGE
    complete_threshold: float = DEFAULT_COMPLETE_THRESHOLD
    stuck_after: timedelta = DEFAULT_STUCK_AFTER


@dataclass(frozen=True)
class FinishAction:
    """What a check did (or, with ``dry_run``, would do) to one batch."""

    batch_id: str
    action: str  # "complete" | "fail" | "publish_failed"
    reason: str
    percent: float
    applied: bool = False
    missing_recorded: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ACTION_STATE = {
    "complete": BatchState.COMPLETED,
    "fail": BatchState.FAILED,
    "publish_failed": BatchState.PUBLISH_FAILED,
}


ACTION_STATE = {
    "complete": BatchState.COMPLETED,
    "fail": BatchState.FAILED,
    "publish_failed": BatchState.PUBLISH_FAILED,
}


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
