"""Progress and finishing: the bounded-rate count that finishes a batch or writes its summary,
the ``missing`` outcomes recorded for open items, and the one final-state transition.

Every way of finishing first records each open item ``missing`` (create-if-absent, as a
completion is), then writes the final state once, guarded by the ``transitions/final`` marker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc

from shared.batch_model import ACTIVE_STATES, Batch, BatchState, Counts, FinishAction
from shared.batch_store._documents import StoreBase
from shared.limits import FIRESTORE_MAX_WRITES_PER_COMMIT, FIRESTORE_SUSTAINED_WRITES_PER_DOC_S

#: The batch document's summary is rewritten at most this often (server time): Firestore's
#: sustained rate for one document.
SUMMARY_INTERVAL_S = 1.0 / FIRESTORE_SUSTAINED_WRITES_PER_DOC_S
#: A missing outcome is two writes (the completion and the item's outcome).
_MISSING_PER_COMMIT = FIRESTORE_MAX_WRITES_PER_COMMIT // 2


@dataclass(frozen=True)
class Refresh:
    """What one bounded-rate progress check saw and did."""

    batch: Batch | None
    counts: Counts | None = None
    finished: bool = False  # this check moved the batch to a final state
    summary_written: bool = False

    @property
    def settled(self) -> bool:
        """Nothing left to write for what was counted (final, gone, or the summary agrees)."""
        if self.batch is None or not self.batch.active or self.finished:
            return True
        c = self.counts
        return c is not None and (
            self.summary_written
            or (self.batch.completed_count, self.batch.failed_count) == (c.completed, c.failed)
        )


class Finishing(StoreBase):
    """``refresh``, ``close``, ``finish`` and the final-state commit they share."""

    def refresh(self, batch_id: str) -> Refresh:
        """One progress check: count the outcomes; finish the batch when every item has one;
        otherwise write the summary counts if the last write of the batch document is at least
        :data:`SUMMARY_INTERVAL_S` old (server time, so no two clocks are compared)."""
        snap = self._ref(batch_id).get()
        if not snap.exists:
            return Refresh(None)
        batch = Batch.from_dict(snap.to_dict())
        if not batch.active:
            return Refresh(batch)
        counts = self.counts(batch_id)
        # Missing outcomes mean a close is under way: its closer writes the final state (and
        # its reason); the stall check finishes it if that closer went away.
        if (
            batch.state == BatchState.RUNNING
            and counts.done >= batch.total_items
            and counts.missing == 0
        ):
            finished = self._finish(
                batch_id, BatchState.COMPLETED, "all items done", only_from=(BatchState.RUNNING,)
            )
            return Refresh(batch.with_counts(counts), counts, finished=finished)
        same = (batch.completed_count, batch.failed_count) == (counts.completed, counts.failed)
        age = (snap.read_time - snap.update_time).total_seconds()
        if same or age < SUMMARY_INTERVAL_S:
            return Refresh(batch, counts)
        now = self.clock()
        try:
            self._ref(batch_id).update(
                {
                    "completed_count": counts.completed,
                    "failed_count": counts.failed,
                    "missing_count": counts.missing,
                    "summary_at": now,
                },
                option=self.db.write_option(last_update_time=snap.update_time),
            )
        except (gexc.FailedPrecondition, gexc.NotFound):
            return Refresh(batch, counts)  # someone else wrote it meanwhile: not due
        return Refresh(batch.with_counts(counts), counts, summary_written=True)

    def _record_missing(
        self, batch_id: str, reason_for: Callable[[dict[str, Any]], str], *, status: str
    ) -> int:
        """Record a ``missing`` outcome for every open item (``reason_for(item)`` says why)."""
        recorded = 0
        completions, items = self._completions(batch_id), self._items(batch_id)
        fields = ("attempts", "sent_at")
        # Collect first: the writes change the query's result (outcome no longer null).
        pages = list(self.iter_open_items(batch_id, fields=fields))
        for page in pages:
            for start in range(0, len(page), _MISSING_PER_COMMIT):
                chunk = page[start : start + _MISSING_PER_COMMIT]
                now = self.clock()

                def doc(data: dict[str, Any], now=now) -> dict[str, Any]:
                    return {
                        "status": "failed",
                        "ok": 0,
                        "missing": 1,
                        "reason": "missing",
                        "error": reason_for(data),
                        "attempts": int(data.get("attempts") or 0),
                        "prediction": None,
                        "completed_at": now,
                    }

                wb = self.db.batch()
                for item_id, data in chunk:
                    wb.create(completions.document(item_id), doc(data))
                    wb.update(items.document(item_id), {"outcome": status})
                try:
                    wb.commit()
                    recorded += len(chunk)
                except gexc.AlreadyExists:
                    # A completion raced in for one of them: one commit per item instead.
                    for item_id, data in chunk:
                        one = self.db.batch()
                        one.create(completions.document(item_id), doc(data))
                        one.update(items.document(item_id), {"outcome": status})
                        try:
                            one.commit()
                            recorded += 1
                        except gexc.AlreadyExists:
                            pass
        return recorded

    def close(
        self,
        batch_id: str,
        state: BatchState,
        reason: str,
        *,
        item_reason: Callable[[dict[str, Any]], str],
        error: str | None = None,
        only_from: Iterable[BatchState] = ACTIVE_STATES,
    ) -> bool:
        """Record every open item ``missing`` (``item_reason(item)`` says why), then move the
        batch to ``state`` (``completed`` if nothing was missing). False if it was not active.
        """
        allowed = set(only_from)
        batch = self.get(batch_id)
        if batch is None or batch.state not in allowed:
            return False
        self._record_missing(batch_id, item_reason, status="missing")
        if state == BatchState.PARTIAL and self.counts(batch_id).missing == 0:
            state, reason = BatchState.COMPLETED, "all items done"
        return self._finish(batch_id, state, reason, error=error, only_from=allowed)

    def _finish(
        self,
        batch_id: str,
        state: BatchState,
        reason: str,
        *,
        error: str | None = None,
        only_from: Iterable[BatchState] = ACTIVE_STATES,
        attempts: int = 5,
    ) -> bool:
        """Move an active batch whose every item has an outcome to a final state, once, with
        its exact counts. False if it was not in ``only_from`` or someone else finished it."""
        allowed = set(only_from)
        for _ in range(attempts):
            batch = self.get(batch_id)
            if batch is None or batch.state not in allowed:
                return False
            counts = self.counts(batch_id)  # final: no open item is left to count
            if state == BatchState.COMPLETED and counts.missing:
                # Items were recorded missing (a closer that went away half way): not complete.
                state = BatchState.PARTIAL
                reason = f"closed with {counts.missing} item(s) recorded missing"
            now = self.clock()
            transitions = self._transitions(batch_id)
            wb = self.db.batch()
            marker = {"at": now, "state": str(state), "reason": reason}
            if batch.state == BatchState.PUBLISHING:
                # Also claims "published": a late mark_published then loses.
                wb.create(transitions.document("published"), marker)
            wb.create(transitions.document("final"), marker)
            changes: dict[str, Any] = {
                "state": str(state),
                "finished_at": now,
                "updated_at": now,
                "reason": reason,
                "completed_count": counts.completed,
                "failed_count": counts.failed,
                "missing_count": counts.missing,
            }
            if error is not None:
                changes["error"] = error
            wb.update(self._ref(batch_id), changes)
            try:
                wb.commit()
                return True
            except gexc.AlreadyExists:
                # Either the batch just left "publishing" (retry from "running") or it is
                # final already (the next read says so).
                time.sleep(0.01)
            except gexc.NotFound:
                return False
        return False

    def finish(self, batch_id: str, action: str, reason: str) -> FinishAction:
        """An operator's close: ``complete`` (open items recorded missing: ``partial``, or
        ``completed`` when none was open) or ``fail``. Raises BatchNotFound; ``applied`` is
        False if the batch was not active."""
        batch = self.require(batch_id)
        if not batch.active:
            return FinishAction(
                batch_id, action, f"not active: already {batch.state}", batch.fraction_done * 100
            )
        before = self.counts(batch_id).missing
        state = BatchState.PARTIAL if action == "complete" else BatchState.FAILED
        applied = self.close(batch_id, state, reason, item_reason=lambda _: reason)
        return self._closed(
            batch, action, reason, applied, lambda after: after.missing_count - before
        )

    def _closed(
        self,
        batch: Batch,
        action: str,
        reason: str,
        applied: bool,
        missing_recorded: Callable[[Batch], int],
    ) -> FinishAction:
        """What a close did, read back from the batch as it now stands."""
        after = self.get(batch.batch_id) or batch
        return FinishAction(
            batch.batch_id,
            action,
            reason,
            round(after.fraction_done * 100, 2),
            applied,
            missing_recorded=missing_recorded(after),
            state=str(after.state),
        )
