"""Batch state over Firestore, shared by the coordinator and the ``batches`` CLI.

Layout (collection names in :mod:`shared.indexes`)::

    prediction_batches/{batch_id}                   the batch: state, counts, times
    prediction_batches/{batch_id}/items/{item}      one per work item published
    prediction_batches/{batch_id}/completions/{item} one per completed or failed item
    prediction_batches/{batch_id}/transitions/{published|final}  state-change markers

Correct **without transactions** (the Firestore emulator stalls concurrent transactions on one
document, and a busy batch document is exactly that), using only atomic single commits:

* A completion is a batched write of ``create(completions/{item})`` plus ``Increment`` of the
  batch's counter. The create fails with ``AlreadyExists`` on redelivery and the whole commit
  with it, so a completion is counted exactly once and the counters always equal the
  subcollection (an array on the batch document once disagreed with the subcollection, and
  arrays hit Firestore's document limits).
* A state change is a batched write of ``create(transitions/<marker>)`` plus the new state on
  the batch document. Only one writer can create a marker, so of a finishing stall check and a
  finishing last completion exactly one wins, without a precondition on the (hot) batch
  document. Leaving ``publishing`` creates the ``published`` marker; finishing creates
  ``final`` (and ``published`` too when finishing straight from ``publishing``, so a late
  "publishing done" cannot resurrect a finished batch).
* Items are written after their messages are published, in one commit with the
  ``published_count`` increment, so ``published_count`` equals the items subcollection.

Times come from an injectable clock (``clock()`` returns an aware UTC datetime), so stall
detection is testable without waiting. Large scans are paged: batches by ``created_at``
(:data:`PAGE_SIZE`), items by document id, so memory stays bounded however many batches or
items there are (the coordinator was once OOM-killed checking many stalled batches at once).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter

from shared.batch_model import (
    ACTION_STATE,
    ACTIVE_STATES,
    AUDIT_COLLECTION,
    ITEM_PAGE_SIZE,
    PAGE_SIZE,
    TRANSITIONS_SUBCOLLECTION,
    Batch,
    BatchNotFound,
    BatchState,
    Clock,
    CompletionOutcome,
    FinishAction,
    StallPolicy,
    format_duration,
    utcnow,
    validate_batch_id,
)
from shared.indexes import (
    BATCHES_COLLECTION,
    COMPLETIONS_SUBCOLLECTION,
    ITEMS_SUBCOLLECTION,
)

__all__ = ["BatchStore"]

#: Firestore's limit of writes in one commit is 500; keep one slot for the batch document.
_MAX_WRITES = 499
_DEFAULT_POLICY = StallPolicy()


class BatchStore:
    """Batch state over one Firestore database. Thread-safe (the client is)."""

    def __init__(self, db: firestore.Client, *, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock
        self.batches = db.collection(BATCHES_COLLECTION)

    # -- references ---------------------------------------------------------------------------
    def _ref(self, batch_id: str):
        return self.batches.document(validate_batch_id(batch_id))

    def _items(self, batch_id: str):
        return self._ref(batch_id).collection(ITEMS_SUBCOLLECTION)

    def _completions(self, batch_id: str):
        return self._ref(batch_id).collection(COMPLETIONS_SUBCOLLECTION)

    def _transitions(self, batch_id: str):
        return self._ref(batch_id).collection(TRANSITIONS_SUBCOLLECTION)

    # -- reads --------------------------------------------------------------------------------
    def ping(self, *, timeout: float = 5.0) -> None:
        """One cheap read (a document that does not exist), to open the gRPC channel at
        start-up: the first RPC costs 1-2 s, which would otherwise land on the first request.
        Raises the client's error."""
        self.batches.document("--warmup--").get(timeout=timeout, retry=None)

    def get(self, batch_id: str) -> Batch | None:
        snap = self._ref(batch_id).get()
        return Batch.from_dict(snap.to_dict()) if snap.exists else None

    def require(self, batch_id: str) -> Batch:
        batch = self.get(batch_id)
        if batch is None:
            raise BatchNotFound(f"no batch {batch_id!r}")
        return batch

    def iter_active(self, *, page_size: int = PAGE_SIZE) -> Iterator[list[Batch]]:
        """Active batches, oldest first, one page at a time (index: batches-by-state-created)."""
        query = (
            self.batches.where(filter=FieldFilter("state", "in", [str(s) for s in ACTIVE_STATES]))
            .order_by("created_at")
            .limit(page_size)
        )
        cursor = None
        while True:
            page_query = query.start_after(cursor) if cursor is not None else query
            snaps = list(page_query.stream())
            if not snaps:
                return
            yield [Batch.from_dict(s.to_dict()) for s in snaps]
            if len(snaps) < page_size:
                return
            cursor = snaps[-1]

    def iter_item_ids(
        self, batch_id: str, *, page_size: int = ITEM_PAGE_SIZE
    ) -> Iterator[list[str]]:
        """Published item ids in pages, by document id (no composite index needed)."""
        query = self._items(batch_id).order_by("__name__").limit(page_size)
        cursor = None
        while True:
            page_query = query.start_after(cursor) if cursor is not None else query
            snaps = list(page_query.select([]).stream())
            if not snaps:
                return
            yield [s.id for s in snaps]
            if len(snaps) < page_size:
                return
            cursor = snaps[-1]

    def iter_missing(
        self, batch_id: str, *, page_size: int = ITEM_PAGE_SIZE
    ) -> Iterator[list[str]]:
        """Published items with no completion yet, in pages."""
        completions = self._completions(batch_id)
        for ids in self.iter_item_ids(batch_id, page_size=page_size):
            refs = [completions.document(i) for i in ids]
            done = {s.id for s in self.db.get_all(refs, field_paths=["status"]) if s.exists}
            missing = [i for i in ids if i not in done]
            if missing:
                yield missing

    def failed_items(self, batch_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Up to ``limit`` failed completions (item, error, reason); single-field filter."""
        query = (
            self._completions(batch_id)
            .where(filter=FieldFilter("status", "==", "failed"))
            .limit(limit)
        )
        return [{"item_id": s.id, **(s.to_dict() or {})} for s in query.stream()]

    # -- writes -------------------------------------------------------------------------------
    def create(
        self, batch_id: str, total_items: int, *, metadata: dict[str, Any] | None = None
    ) -> tuple[Batch, bool]:
        """Create the batch in ``publishing`` state; ``(batch, False)`` if it already exists."""
        now = self.clock()
        data = {
            "batch_id": validate_batch_id(batch_id),
            "state": str(BatchState.PUBLISHING),
            "total_items": int(total_items),
            "published_count": 0,
            "completed_count": 0,
            "failed_count": 0,
            "created_at": now,
            "updated_at": now,
            "publish_heartbeat_at": now,
            "metadata": metadata or {},
        }
        try:
            self._ref(batch_id).create(data)
        except gexc.AlreadyExists:
            return self.require(batch_id), False
        return Batch.from_dict(data), True

    def add_published(self, batch_id: str, item_ids: Sequence[str]) -> None:
        """Record items whose messages were published (after ``publish`` returned)."""
        items = self._items(batch_id)
        ref = self._ref(batch_id)
        for start in range(0, len(item_ids), _MAX_WRITES):
            chunk = item_ids[start : start + _MAX_WRITES]
            now = self.clock()
            wb = self.db.batch()
            for item_id in chunk:
                wb.set(items.document(item_id), {"published_at": now})
            wb.update(
                ref,
                {
                    "published_count": firestore.Increment(len(chunk)),
                    "publish_heartbeat_at": now,
                    "updated_at": now,
                },
            )
            wb.commit()

    def mark_published(self, batch_id: str) -> bool:
        """``publishing`` -> ``running``. False if the batch was already finished (it lost)."""
        now = self.clock()
        wb = self.db.batch()
        wb.create(self._transitions(batch_id).document("published"), {"at": now})
        wb.update(
            self._ref(batch_id),
            {"state": str(BatchState.RUNNING), "published_at": now, "updated_at": now},
        )
        try:
            wb.commit()
        except gexc.AlreadyExists:
            return False
        self.finalize_if_done(batch_id)
        return True

    def mark_publish_failed(self, batch_id: str, error: str) -> bool:
        """Finish a batch whose publishing failed; False if it was already past publishing."""
        return self._finish(
            batch_id,
            BatchState.PUBLISH_FAILED,
            f"publishing failed: {error}",
            error=error,
            only_from=(BatchState.PUBLISHING,),
        )

    def record_completion(
        self,
        batch_id: str,
        item_id: str,
        *,
        ok: bool,
        prediction: Any = None,
        error: str | None = None,
        message_id: str | None = None,
    ) -> CompletionOutcome:
        """Count one item's completion exactly once (redeliveries are DUPLICATE)."""
        now = self.clock()
        ref = self._ref(batch_id)
        comp_ref = self._completions(batch_id).document(item_id)
        doc = {
            "status": "ok" if ok else "failed",
            "prediction": prediction,
            "error": error,
            "completed_at": now,
            "message_id": message_id,
        }
        wb = self.db.batch()
        wb.create(comp_ref, doc)
        wb.update(
            ref,
            {
                "completed_count" if ok else "failed_count": firestore.Increment(1),
                "last_completion_at": now,
                "updated_at": now,
            },
        )
        try:
            wb.commit()
        except gexc.NotFound:
            return CompletionOutcome.UNKNOWN_BATCH
        except gexc.AlreadyExists:
            if ok and self._upgrade_missing(ref, comp_ref, doc, now):
                return CompletionOutcome.UPGRADED
            return CompletionOutcome.DUPLICATE
        self.finalize_if_done(batch_id)
        return CompletionOutcome.RECORDED

    def _upgrade_missing(self, ref, comp_ref, doc: dict[str, Any], now: datetime) -> bool:
        """A real result for an item the stall check had recorded as missing: count it as ok."""
        snap = comp_ref.get()
        if not snap.exists or (snap.to_dict() or {}).get("reason") != "missing":
            return False
        wb = self.db.batch()
        wb.update(
            comp_ref,
            {**doc, "reason": "late", "recorded_missing_at": snap.get("completed_at")},
            option=self.db.write_option(last_update_time=snap.update_time),
        )
        wb.update(
            ref,
            {
                "completed_count": firestore.Increment(1),
                "failed_count": firestore.Increment(-1),
                "last_completion_at": now,
                "updated_at": now,
            },
        )
        try:
            wb.commit()
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False
        return True

    def finalize_if_done(self, batch_id: str) -> bool:
        """Complete a running batch whose every item is done; True if this call completed it."""
        batch = self.get(batch_id)
        if batch is None or batch.state != BatchState.RUNNING:
            return False
        if batch.done < batch.total_items:
            return False
        return self._finish(
            batch_id, BatchState.COMPLETED, "all items done", only_from=(BatchState.RUNNING,)
        )

    def record_missing_as_failed(self, batch_id: str, reason: str) -> int:
        """Record every published item without a completion as failed (``reason: missing``)."""
        recorded = 0
        ref = self._ref(batch_id)
        completions = self._completions(batch_id)
        for missing in self.iter_missing(batch_id):
            for start in range(0, len(missing), _MAX_WRITES):
                chunk = missing[start : start + _MAX_WRITES]
                now = self.clock()
                doc = {
                    "status": "failed",
                    "reason": "missing",
                    "error": reason,
                    "prediction": None,
                    "completed_at": now,
                }
                wb = self.db.batch()
                for item_id in chunk:
                    wb.create(completions.document(item_id), doc)
                wb.update(ref, {"failed_count": firestore.Increment(len(chunk)), "updated_at": now})
                try:
                    wb.commit()
                    recorded += len(chunk)
                except gexc.AlreadyExists:
                    # A completion raced in for one of them: fall back to one commit per item.
                    for item_id in chunk:
                        one = self.db.batch()
                        one.create(completions.document(item_id), doc)
                        one.update(ref, {"failed_count": firestore.Increment(1), "updated_at": now})
                        try:
                            one.commit()
                            recorded += 1
                        except gexc.AlreadyExists:
                            pass
        return recorded

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
        """Move an active batch to a final state, once. False if it was not in ``only_from``
        or someone else finished it first."""
        allowed = set(only_from)
        for _ in range(attempts):
            batch = self.get(batch_id)
            if batch is None or batch.state not in allowed:
                return False
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

    def finish(
        self,
        batch_id: str,
        action: str,
        reason: str,
        *,
        record_missing: bool | None = None,
    ) -> FinishAction:
        """Complete (``complete``) or fail (``fail``/``publish_failed``) an active batch.

        Completing first records every missing item as failed so the counts add up.
        Raises BatchNotFound; ``applied`` is False if the batch was not active.
        """
        state = ACTION_STATE[action]
        batch = self.require(batch_id)
        if not batch.active:
            return FinishAction(
                batch_id, action, f"not active: already {batch.state}", batch.fraction_done * 100
            )
        if record_missing is None:
            record_missing = state == BatchState.COMPLETED
        recorded = self.record_missing_as_failed(batch_id, reason) if record_missing else 0
        applied = self._finish(batch_id, state, reason)
        after = self.get(batch_id) or batch
        return FinishAction(
            batch_id, action, reason, round(after.fraction_done * 100, 2), applied, recorded
        )

    # -- checks ------------------------------------------------------------------------------
    def decide(self, batch: Batch, now: datetime, policy: StallPolicy) -> tuple[str, str] | None:
        """The stall rules for one active batch: ``(action, reason)`` or None (leave it)."""
        age, idle = batch.age(now), batch.idle(now)
        pct = batch.fraction_done * 100
        if age >= policy.max_age:
            return "fail", (
                f"exceeded max age {format_duration(policy.max_age)} "
                f"(age {format_duration(age)}, {pct:.1f}% done)"
            )
        if batch.state == BatchState.PUBLISHING:
            if idle >= policy.idle_window:
                return "publish_failed", (
                    f"publishing stalled: {batch.published_count}/{batch.total_items} published, "
                    f"no progress for {format_duration(idle)}"
                )
            return None
        if batch.done >= batch.total_items:
            return "complete", "all items done"
        if batch.fraction_done >= policy.complete_threshold and idle >= policy.idle_window:
            return "complete", (
                f"stalled at {pct:.1f}% with no completion for {format_duration(idle)}; "
                f"{batch.total_items - batch.done} missing item(s) recorded as failed"
            )
        return None

    def check_stalled(
        self,
        policy: StallPolicy = _DEFAULT_POLICY,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> list[FinishAction]:
        """Apply the stall rules to every active batch, a page at a time."""
        now = now or self.clock()
        actions: list[FinishAction] = []
        for page in self.iter_active(page_size=page_size):
            for batch in page:
                decision = self.decide(batch, now, policy)
                if decision is None:
                    continue
                action, reason = decision
                if dry_run:
                    actions.append(
                        FinishAction(
                            batch.batch_id, action, reason, round(batch.fraction_done * 100, 2)
                        )
                    )
                else:
                    actions.append(self.finish(batch.batch_id, action, reason))
        return actions

    def list_stuck(
        self, *, idle_for: timedelta, now: datetime | None = None, page_size: int = PAGE_SIZE
    ) -> list[Batch]:
        """Active batches with no progress for at least ``idle_for``, oldest first."""
        now = now or self.clock()
        return [
            b
            for page in self.iter_active(page_size=page_size)
            for b in page
            if b.idle(now) >= idle_for
        ]

    def cleanup_stuck(
        self,
        policy: StallPolicy = _DEFAULT_POLICY,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> list[FinishAction]:
        """Finish active batches with no progress for ``policy.stuck_after``, reason recorded.

        A stuck batch past the completion threshold is completed (missing items recorded as
        failed); one still publishing is marked ``publish_failed``; any other is failed.
        """
        now = now or self.clock()
        actions: list[FinishAction] = []
        for page in self.iter_active(page_size=page_size):
            for batch in page:
                idle = batch.idle(now)
                if idle < policy.stuck_after:
                    continue
                pct = batch.fraction_done * 100
                if batch.state == BatchState.PUBLISHING:
                    action = "publish_failed"
                elif batch.fraction_done >= policy.complete_threshold:
                    action = "complete"
                else:
                    action = "fail"
                reason = f"stuck: no progress for {format_duration(idle)} at {pct:.1f}%"
                if dry_run:
                    actions.append(FinishAction(batch.batch_id, action, reason, round(pct, 2)))
                else:
                    actions.append(self.finish(batch.batch_id, action, reason))
        return actions

    def delete(self, batch_id: str, reason: str) -> dict[str, Any]:
        """Remove a batch and its subcollections, keeping an audit record with the reason."""
        batch = self.require(batch_id)
        now = self.clock()
        self.db.collection(AUDIT_COLLECTION).add(
            {
                "batch_id": batch_id,
                "action": "delete",
                "reason": reason,
                "at": now,
                "batch": batch.summary(now),
            }
        )
        deleted = 0
        for sub in (self._items, self._completions, self._transitions):
            col = sub(batch_id)
            while True:
                snaps = list(col.select([]).limit(_MAX_WRITES).stream())
                if not snaps:
                    break
                wb = self.db.batch()
                for s in snaps:
                    wb.delete(s.reference)
                wb.commit()
                deleted += len(snaps)
        self._ref(batch_id).delete()
        return {"batch_id": batch_id, "deleted_documents": deleted + 1, "reason": reason}
