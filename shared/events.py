"""The coordinator's batch events: the contract between its logs and the platform's alerts.

The coordinator logs each event as a structured line whose ``event`` field is one of
:class:`BatchEvent` (Cloud Logging keeps it as ``jsonPayload.event``). The Pulumi program's
log-based metric (``infra/monitoring``) counts exactly these values, and its alert fires on
them: rename one here and both sides move together (a test pins the values, since a renamed
event would otherwise silence the alert without failing anything).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["BatchEvent", "EVENT_FIELD", "STUCK_BATCH_EVENTS", "finish_event", "log_finish"]

#: The structured-log key holding the event name (``jsonPayload.event`` in Cloud Logging).
EVENT_FIELD = "event"


class BatchEvent(StrEnum):
    #: The stall check failed an active batch: past its maximum age (its open items recorded
    #: missing).
    STALLED = "batch stalled"
    #: A batch was closed short: its open items' re-sends were spent (or it was stuck, or an
    #: operator closed it) and each was recorded missing with why (the "batch at 87% for hours"
    #: incident, now recovered where it can be, and closed and counted where it cannot).
    CLOSED_PARTIAL = "batch closed partial"
    #: Publishing a batch's items failed (in /start's background publish, or found stalled
    #: while publishing by the stall check).
    PUBLISH_FAILED = "batch publish failed"


#: Every event that means a batch did not finish normally: what the stuck-batch alert counts.
STUCK_BATCH_EVENTS: tuple[BatchEvent, ...] = tuple(BatchEvent)


def finish_event(action: str, *, missing_recorded: int = 0) -> BatchEvent | None:
    """The event for a stall-check action (``FinishAction.action``), or None for a normal end.

    ``complete`` with nothing missing is a batch that simply finished, and ``resend`` (open
    items published again, the batch still open) is recovery, not an end: no event.
    """
    if action == "fail":
        return BatchEvent.STALLED
    if action == "publish_failed":
        return BatchEvent.PUBLISH_FAILED
    if action == "partial" or (action == "complete" and missing_recorded > 0):
        return BatchEvent.CLOSED_PARTIAL
    return None


def log_finish(log: Any, action: Any, *, dry_run: bool = False) -> BatchEvent | None:
    """Log the event of an applied stall-check ``action`` (a ``FinishAction``) as a warning.

    Dry runs and actions that were not applied (the batch was no longer active) log nothing:
    the metric counts batches that were really closed abnormally.
    """
    event = finish_event(action.action, missing_recorded=action.missing_recorded)
    if event is None or dry_run or not action.applied:
        return None
    log.warning(
        str(event),
        **{EVENT_FIELD: str(event)},
        batch_id=action.batch_id,
        action=action.action,
        reason=action.reason,
        percent=action.percent,
        missing_recorded=action.missing_recorded,
    )
    return event
