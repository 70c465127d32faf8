"""Batch state over Firestore, shared by the coordinator and the ``batches`` CLI.

Layout (collection names in :mod:`shared.indexes`)::

    prediction_batches/{batch_id}                     the batch: state, times, summary counts
    prediction_batches/{batch_id}/items/{item}        one per work item: payload, attempts,
                                                      outcome (null while open)
    prediction_batches/{batch_id}/completions/{item}  one per item outcome (ok, failed, missing)
    prediction_batches/{batch_id}/strays/{id}         completions acknowledged, never counted:
                                                      foreign, late, duplicate, unknown batch
    prediction_batches/{batch_id}/transitions/{published|final}  state-change markers

**Exact membership, without a read.** A completion is one commit of ``create(completions/
{item})`` and ``update(items/{item}, outcome)``. The update needs the item to exist, so a
completion for an item the batch never registered fails the commit (``NotFound``: a *foreign*
completion, or an *unknown batch* when the batch document is missing too); the create fails on
an item that already has an outcome (``AlreadyExists``: a redelivery, a second result, or a
*late* one for an item the batch was closed without). Items are registered before their
messages are published, so a fast worker can never beat its item's registration. None of those
is counted; each is acknowledged and recorded as a stray for ``batches inspect``.

**Open until every item has an outcome.** Every way of finishing a batch first records a
``missing`` outcome (with its reason) for each item still open, with the same create-if-absent
commit, and only then writes the final state. So a completion can only count while its item is
open, the batch cannot finish with an item unaccounted for, and a late completion finds the
``missing`` outcome and is refused.

**No hot document: counting by aggregation (the choice).** Nothing is written per completion
but the item's own two documents. Counts are aggregation queries over the completion documents
(``count()``, ``sum(ok)``, ``sum(missing)`` in one query), run at a bounded rate by the
coordinator's progress tracker (at most about once a second per batch and instance, or at once
when its own tally says the batch may be done) and by the stall check. The batch document is
written only on state transitions and by a summary of the counts, at most once per
:data:`SUMMARY_INTERVAL_S` of server time (a precondition on its update time keeps concurrent
instances from doubling that). Why not sharded counters (Google's distributed-counter
solution): a shard still takes about one write per second, so the shard count would have to
follow the peak completion rate (workers x concurrency, unbounded), every read of the total
reads every shard, and an increment in the completion commit is one more write per item. The
completion documents already exist, one per item and written once, because exactly-once needs
them; counting them costs reads (one per 1,000 index entries) at a rate we choose, not writes
at a rate the workers choose. The cost: a count is O(items) on the server, so its latency grows
with the batch (bounded by the check rate, not multiplied by completions), and the finish is
seen up to one check interval after the last completion when several instances share a batch.

**Recovery before giving up.** The stall check (scheduled; needs no completion to arrive)
re-sends the open items of a batch idle for the policy's window, recording each attempt on its
item, up to ``max_attempts`` publishes per item; once every open item's attempts are spent it
closes the batch ``partial``, recording each one ``missing`` with why.

Correct **without transactions** (the Firestore emulator stalls concurrent transactions on one
document), using only atomic single commits and create-if-absent markers for transitions.
Times come from an injectable clock (``clock()`` returns an aware UTC datetime). Scans are
paged, so memory stays bounded however many batches or items there are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter

from shared.batch_model import (
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
    Counts,
    FinishAction,
    StallPolicy,
    format_duration,
    utcnow,
    validate_batch_id,
    validate_item_id,
)
from shared.indexes import (
    BATCHES_COLLECTION,
    COMPLETIONS_SUBCOLLECTION,
    ITEMS_SUBCOLLECTION,
    STRAYS_SUBCOLLECTION,
)
from shared.limits import (
    FIRESTORE_MAX_DOCUMENT_BYTES,
    FIRESTORE_MAX_NESTING_DEPTH,
    FIRESTORE_MAX_REQUEST_BYTES,
    FIRESTORE_MAX_WRITES_PER_COMMIT,
    FIRESTORE_SUSTAINED_WRITES_PER_DOC_S,
    document_size,
    firestore_size,
    json_depth,
)

__all__ = [
    "BatchStore",
    "ItemTooLarge",
    "Sender",
    "SUMMARY_INTERVAL_S",
    "Refresh",
    "work_message",
]

#: The batch document's summary is rewritten at most this often (server time): Firestore's
#: sustained rate for one document.
SUMMARY_INTERVAL_S = 1.0 / FIRESTORE_SUSTAINED_WRITES_PER_DOC_S
#: Registration chunks: 500 writes per commit, and well inside the 10 MiB request limit.
_REGISTER_BYTES = FIRESTORE_MAX_REQUEST_BYTES * 8 // 10
#: A missing outcome is two writes (the completion and the item's outcome).
_MISSING_PER_COMMIT = FIRESTORE_MAX_WRITES_PER_COMMIT // 2
#: Room left in a completion document for everything but the prediction.
_COMPLETION_OVERHEAD = 4096
#: A stray keeps its prediction only when it is this small (it is evidence, not a result).
_STRAY_PREDICTION_BYTES = 64 * 1024
_DEFAULT_POLICY = StallPolicy()

#: ``send(topic, [(payload, attributes), ...])`` publishes every message or raises.
Sender = Callable[[str, list[tuple[dict[str, Any], dict[str, str]]]], None]


class ItemTooLarge(ValueError):
    """A work item that could never be stored (document size or nesting): refuse it at /start."""


def work_message(
    batch_id: str, item_id: str, payload: Mapping[str, Any], attempt: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """A work item's message and attributes, for the first publish and every re-send."""
    body = {"batch_id": batch_id, "item_id": item_id, "payload": dict(payload), "attempt": attempt}
    return body, {"batch_id": batch_id, "item_id": item_id, "attempt": str(attempt)}


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


def _sanitize_id(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "_.:-" else "_" for ch in text)
    return keep[:200] or "none"


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

    def _strays(self, batch_id: str):
        return self._ref(batch_id).collection(STRAYS_SUBCOLLECTION)

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

    def counts(self, batch_id: str) -> Counts:
        """Outcomes recorded so far: one aggregation query over the completion documents."""
        query = (
            self._completions(batch_id)
            .count(alias="done")
            .sum("ok", alias="ok")
            .sum("missing", alias="missing")
        )
        values = {r.alias: r.value for row in query.get() for r in row}
        return Counts(
            done=int(values.get("done") or 0),
            completed=int(values.get("ok") or 0),
            missing=int(values.get("missing") or 0),
        )

    def last_completion_at(self, batch_id: str) -> datetime | None:
        """When the latest outcome was recorded (one indexed read)."""
        query = (
            self._completions(batch_id)
            .order_by("completed_at", direction=firestore.Query.DESCENDING)
            .limit(1)
        )
        for snap in query.select(["completed_at"]).stream():
            value = snap.get("completed_at")
            return value if isinstance(value, datetime) else None
        return None

    def status(self, batch_id: str) -> Batch | None:
        """The batch with exact counts: live (aggregated) while open, final once finished."""
        batch = self.get(batch_id)
        if batch is None or not batch.active:
            return batch
        return batch.with_counts(self.counts(batch_id), self.last_completion_at(batch_id))

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

    def iter_open_items(
        self,
        batch_id: str,
        *,
        fields: Sequence[str] = (),
        page_size: int = ITEM_PAGE_SIZE,
    ) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """Registered items with no outcome yet, in pages of ``(item_id, fields)``."""
        query = (
            self._items(batch_id)
            .where(filter=FieldFilter("outcome", "==", None))
            .order_by("__name__")
            .limit(page_size)
        )
        cursor = None
        while True:
            page_query = query.start_after(cursor) if cursor is not None else query
            snaps = list(page_query.select(list(fields)).stream())
            if not snaps:
                return
            yield [(s.id, s.to_dict() or {}) for s in snaps]
            if len(snaps) < page_size:
                return
            cursor = snaps[-1]

    def iter_missing(self, batch_id: str, *, page_size: int = ITEM_PAGE_SIZE):
        """Ids of the items with no outcome yet, in pages."""
        for page in self.iter_open_items(batch_id, page_size=page_size):
            yield [item_id for item_id, _ in page]

    def _outcomes_where(self, batch_id: str, limit: int, **equal: Any) -> list[dict]:
        query = self._completions(batch_id)
        for field, value in equal.items():
            query = query.where(filter=FieldFilter(field, "==", value))
        rows = []
        for s in query.limit(limit).stream():
            d = s.to_dict() or {}
            rows.append(
                {
                    "item_id": s.id,
                    "error": d.get("error"),
                    "reason": d.get("reason"),
                    "attempts": d.get("attempts"),
                }
            )
        return rows

    def failed_items(self, batch_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Up to ``limit`` items the worker reported failed (item, error)."""
        return self._outcomes_where(batch_id, limit, status="failed", missing=0)

    def missing_items(self, batch_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Up to ``limit`` items the batch was closed without (item, why, attempts)."""
        return self._outcomes_where(batch_id, limit, missing=1)

    def stray_counts(self, batch_id: str) -> dict[str, int]:
        """How many strays of each kind were recorded (aggregation queries)."""
        from shared.batch_model import STRAY_KINDS

        out = {}
        for kind in STRAY_KINDS:
            query = self._strays(batch_id).where(filter=FieldFilter("kind", "==", str(kind)))
            (row,) = query.count(alias="n").get()
            out[str(kind)] = int(row[0].value)
        return out

    def strays(self, batch_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """Up to ``limit`` stray completions (kind, item, status, when)."""
        rows = []
        for s in self._strays(batch_id).limit(limit).stream():
            d = s.to_dict() or {}
            rows.append(
                {
                    "kind": d.get("kind"),
                    "item_id": d.get("item_id"),
                    "status": d.get("status"),
                    "error": d.get("error"),
                    "message_id": d.get("message_id"),
                    "received_at": d["received_at"].isoformat() if d.get("received_at") else None,
                }
            )
        return rows

    # -- creating and publishing ----------------------------------------------------------------
    def create(
        self,
        batch_id: str,
        total_items: int,
        *,
        metadata: dict[str, Any] | None = None,
        request_topic: str | None = None,
    ) -> tuple[Batch, bool]:
        """Create the batch in ``publishing`` state; ``(batch, False)`` if it already exists.
        ``request_topic``: where its items are published (the stall check re-sends there)."""
        now = self.clock()
        data = {
            "batch_id": validate_batch_id(batch_id),
            "state": str(BatchState.PUBLISHING),
            "total_items": int(total_items),
            "published_count": 0,
            "completed_count": 0,
            "failed_count": 0,
            "missing_count": 0,
            "resent_count": 0,
            "created_at": now,
            "updated_at": now,
            "publish_heartbeat_at": now,
            "request_topic": request_topic,
            "metadata": metadata or {},
        }
        try:
            self._ref(batch_id).create(data)
        except gexc.AlreadyExists:
            return self.require(batch_id), False
        return Batch.from_dict(data), True

    @staticmethod
    def check_item(item_id: str, payload: Mapping[str, Any]) -> None:
        """Raise :class:`ItemTooLarge` for an item Firestore could never store."""
        validate_item_id(item_id)
        depth = json_depth(dict(payload))
        if depth + 1 > FIRESTORE_MAX_NESTING_DEPTH:
            raise ItemTooLarge(
                f"item {item_id!r}: payload nested {depth} levels deep; Firestore allows "
                f"{FIRESTORE_MAX_NESTING_DEPTH}"
            )
        size = firestore_size(dict(payload)) + _COMPLETION_OVERHEAD
        if size > FIRESTORE_MAX_DOCUMENT_BYTES:
            raise ItemTooLarge(
                f"item {item_id!r}: payload of about {size:,} bytes; a Firestore document "
                f"holds at most {FIRESTORE_MAX_DOCUMENT_BYTES:,}"
            )

    def register_items(
        self,
        batch_id: str,
        items: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        flags: Mapping[str, Any] | None = None,
    ) -> None:
        """Record items before their messages are published (payload kept for re-sends).

        ``flags``: labels stored on every item (kept open for e.g. synthetic items)."""
        col = self._items(batch_id)
        now = self.clock()
        chunk: list[tuple[str, Mapping[str, Any]]] = []
        size = 0

        def flush() -> None:
            if not chunk:
                return
            wb = self.db.batch()
            for item_id, payload in chunk:
                wb.set(
                    col.document(item_id),
                    {
                        "payload": dict(payload),
                        "attempts": 1,
                        "sent_at": [now],
                        "outcome": None,
                        "flags": dict(flags or {}),
                    },
                )
            wb.commit()
            chunk.clear()

        for item_id, payload in items:
            item_size = firestore_size(dict(payload)) + 256
            if len(chunk) >= FIRESTORE_MAX_WRITES_PER_COMMIT or size + item_size > _REGISTER_BYTES:
                flush()
                size = 0
            chunk.append((item_id, payload))
            size += item_size
        flush()

    def note_published(self, batch_id: str, published: int) -> None:
        """Publishing progress on the batch document (callers bound the rate: once a second)."""
        now = self.clock()
        self._ref(batch_id).update(
            {"published_count": published, "publish_heartbeat_at": now, "updated_at": now}
        )

    def mark_published(self, batch_id: str, published: int | None = None) -> bool:
        """``publishing`` -> ``running``. False if the batch was already finished (it lost)."""
        now = self.clock()
        changes: dict[str, Any] = {
            "state": str(BatchState.RUNNING),
            "published_at": now,
            "updated_at": now,
        }
        if published is not None:
            changes["published_count"] = published
        wb = self.db.batch()
        wb.create(self._transitions(batch_id).document("published"), {"at": now})
        wb.update(self._ref(batch_id), changes)
        try:
            wb.commit()
        except gexc.AlreadyExists:
            return False
        self.refresh(batch_id)
        return True

    def mark_publish_failed(self, batch_id: str, error: str) -> bool:
        """Finish a batch whose publishing failed; False if it was already past publishing."""
        return self.close(
            batch_id,
            BatchState.PUBLISH_FAILED,
            f"publishing failed: {error}",
            item_reason=lambda _: f"not delivered: publishing failed: {error}",
            error=error,
            only_from=(BatchState.PUBLISHING,),
        )

    # -- completions ---------------------------------------------------------------------------
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
        """Count one item's outcome exactly once, if the batch published the item and it is
        still open; anything else is recorded as a stray (see the module docstring).

        A result Firestore could never store (over 1 MiB, nested over 20 levels) is recorded as
        a *failed* outcome with the reason: a permanent error, so never worth a redelivery."""
        now = self.clock()
        comp_ref = self._completions(batch_id).document(validate_item_id(item_id))
        doc = {
            "status": "ok" if ok else "failed",
            "ok": 1 if ok else 0,
            "missing": 0,
            "prediction": prediction,
            "error": error,
            "completed_at": now,
            "message_id": message_id,
        }
        refused = self._refuse_result(batch_id, item_id, prediction)
        if refused:
            doc.update(status="failed", ok=0, prediction=None, error=refused, reason="refused")
        try:
            self._commit_outcome(batch_id, item_id, doc)
        except gexc.InvalidArgument as exc:
            # Firestore refused the document for a reason the size check did not foresee:
            # permanent, so record the failure rather than ask for a redelivery.
            doc.update(
                status="failed",
                ok=0,
                prediction=None,
                error=f"result refused by Firestore: {exc.message}",
                reason="refused",
            )
            return self.record_outcome_doc(batch_id, item_id, doc, message_id)
        except gexc.NotFound:
            return self._stray_not_member(batch_id, item_id, doc)
        except gexc.AlreadyExists:
            return self._stray_has_outcome(batch_id, item_id, comp_ref, doc)
        return CompletionOutcome.RECORDED

    def record_outcome_doc(
        self, batch_id: str, item_id: str, doc: dict[str, Any], message_id: str | None
    ) -> CompletionOutcome:
        try:
            self._commit_outcome(batch_id, item_id, doc)
        except gexc.NotFound:
            return self._stray_not_member(batch_id, item_id, doc)
        except gexc.AlreadyExists:
            comp_ref = self._completions(batch_id).document(item_id)
            return self._stray_has_outcome(batch_id, item_id, comp_ref, doc)
        return CompletionOutcome.RECORDED

    def _commit_outcome(self, batch_id: str, item_id: str, doc: dict[str, Any]) -> None:
        wb = self.db.batch()
        wb.create(self._completions(batch_id).document(item_id), doc)
        wb.update(self._items(batch_id).document(item_id), {"outcome": doc["status"]})
        wb.commit()

    def _refuse_result(self, batch_id: str, item_id: str, prediction: Any) -> str | None:
        if prediction is None:
            return None
        depth = json_depth(prediction)
        if depth + 1 > FIRESTORE_MAX_NESTING_DEPTH:
            return (
                f"result nested {depth} levels deep; Firestore allows "
                f"{FIRESTORE_MAX_NESTING_DEPTH}: refused"
            )
        path = (BATCHES_COLLECTION, batch_id, COMPLETIONS_SUBCOLLECTION, item_id)
        size = document_size(path, {"prediction": prediction}) + _COMPLETION_OVERHEAD
        if size > FIRESTORE_MAX_DOCUMENT_BYTES:
            return (
                f"result of about {size:,} bytes exceeds Firestore's document limit of "
                f"{FIRESTORE_MAX_DOCUMENT_BYTES:,} bytes: refused"
            )
        return None

    def _stray_not_member(self, batch_id: str, item_id: str, doc: dict) -> CompletionOutcome:
        exists = self._ref(batch_id).get(field_paths=["state"]).exists
        kind = CompletionOutcome.FOREIGN if exists else CompletionOutcome.UNKNOWN_BATCH
        self._record_stray(batch_id, kind, item_id, doc)
        return kind

    def _stray_has_outcome(self, batch_id: str, item_id: str, comp_ref, doc) -> CompletionOutcome:
        snap = comp_ref.get(field_paths=["missing", "message_id"])
        have = snap.to_dict() or {}
        if have.get("missing"):
            self._record_stray(batch_id, CompletionOutcome.LATE, item_id, doc)
            return CompletionOutcome.LATE
        if doc.get("message_id") and have.get("message_id") == doc.get("message_id"):
            return CompletionOutcome.DUPLICATE  # Pub/Sub's redelivery of the counted message
        self._record_stray(batch_id, CompletionOutcome.DUPLICATE, item_id, doc)
        return CompletionOutcome.DUPLICATE

    def _record_stray(
        self, batch_id: str, kind: CompletionOutcome, item_id: str, doc: Mapping[str, Any]
    ) -> None:
        prediction = doc.get("prediction")
        if prediction is not None and firestore_size(prediction) > _STRAY_PREDICTION_BYTES:
            prediction = None
        message_id = doc.get("message_id") or f"t{time.time_ns()}"
        stray_id = _sanitize_id(f"{kind}~{item_id}~{message_id}")
        try:
            self._strays(batch_id).document(stray_id).create(
                {
                    "kind": str(kind),
                    "item_id": item_id,
                    "status": doc.get("status"),
                    "error": (doc.get("error") or None) and str(doc.get("error"))[:2000],
                    "prediction": prediction,
                    "message_id": doc.get("message_id"),
                    "received_at": self.clock(),
                }
            )
        except gexc.AlreadyExists:
            pass  # this very message was recorded already

    # -- progress and finishing ----------------------------------------------------------------
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

    # -- the stall check -----------------------------------------------------------------------
    def resend_open(
        self, batch: Batch, policy: StallPolicy, send: Sender, *, dry_run: bool = False
    ) -> tuple[int, int]:
        """Publish again every open item with attempts left (the attempt recorded on the item
        first, so the bound holds even if this stops half way). Returns ``(resent, spent)``:
        items sent again, and open items whose attempts are spent."""
        topic = self._topic(batch)
        items = self._items(batch.batch_id)
        resent = spent = 0
        pages = list(self.iter_open_items(batch.batch_id, fields=("payload", "attempts")))
        for page in pages:
            due = [(i, d) for i, d in page if int(d.get("attempts") or 0) < policy.max_attempts]
            spent += len(page) - len(due)
            if dry_run or not due:
                resent += len(due)
                continue
            for start in range(0, len(due), FIRESTORE_MAX_WRITES_PER_COMMIT):
                chunk = due[start : start + FIRESTORE_MAX_WRITES_PER_COMMIT]
                now = self.clock()
                wb = self.db.batch()
                for item_id, _ in chunk:
                    wb.update(
                        items.document(item_id),
                        {
                            "attempts": firestore.Increment(1),
                            "sent_at": firestore.ArrayUnion([now]),
                        },
                    )
                wb.commit()
                send(
                    topic,
                    [
                        work_message(
                            batch.batch_id,
                            item_id,
                            d.get("payload") or {},
                            int(d.get("attempts") or 0) + 1,
                        )
                        for item_id, d in chunk
                    ],
                )
                resent += len(chunk)
        if resent and not dry_run:
            now = self.clock()
            self._ref(batch.batch_id).update(
                {
                    "last_resend_at": now,
                    "resent_count": firestore.Increment(resent),
                    "updated_at": now,
                }
            )
        return resent, spent

    @staticmethod
    def _topic(batch: Batch) -> str:
        if not batch.request_topic:
            raise ValueError(f"batch {batch.batch_id!r} has no request topic to re-send to")
        return batch.request_topic

    def decide(
        self, batch: Batch, now: datetime, policy: StallPolicy
    ) -> tuple[str, str, Batch] | None:
        """The stall rules for one active batch: ``(action, reason, batch with live counts)``
        or None (leave it). ``resend`` may become ``partial`` when no item has attempts left."""
        age = batch.age(now)
        if age >= policy.max_age:
            live = batch.with_counts(self.counts(batch.batch_id))
            return (
                "fail",
                f"exceeded max age {format_duration(policy.max_age)} "
                f"(age {format_duration(age)}, {live.fraction_done * 100:.1f}% done)",
                live,
            )
        if batch.state == BatchState.PUBLISHING:
            idle = batch.idle(now)
            if idle >= policy.idle_window:
                return (
                    "publish_failed",
                    f"publishing stalled: {batch.published_count}/{batch.total_items} "
                    f"published, no progress for {format_duration(idle)}",
                    batch,
                )
            return None
        live = batch.with_counts(
            self.counts(batch.batch_id), self.last_completion_at(batch.batch_id)
        )
        if live.done >= live.total_items:
            return "complete", "all items done", live
        idle = live.idle(now)
        if idle < policy.idle_window:
            return None
        return (
            "resend",
            f"no completion for {format_duration(idle)} at {live.fraction_done * 100:.1f}%",
            live,
        )

    def apply(
        self,
        action: str,
        batch: Batch,
        reason: str,
        policy: StallPolicy,
        send: Sender | None,
        *,
        dry_run: bool = False,
    ) -> FinishAction:
        """Carry out (or with ``dry_run`` describe) one decided action."""
        pct = round(batch.fraction_done * 100, 2)
        bid = batch.batch_id
        if action == "resend":
            resent, spent = (
                self.resend_open(batch, policy, send, dry_run=True)
                if dry_run or send is None
                else self.resend_open(batch, policy, send)
            )
            if resent:
                why = (
                    f"{reason}: {'would re-send' if dry_run or send is None else 're-sent'} "
                    f"{resent} open item(s) (attempt limit {policy.max_attempts})"
                )
                return FinishAction(
                    bid, "resend", why, pct, applied=not dry_run and send is not None, resent=resent
                )
            action = "partial"
            reason = (
                f"{reason}: {spent} item(s) still missing after {policy.max_attempts} "
                "attempt(s) each"
            )
        if dry_run:
            return FinishAction(bid, action, reason, pct)
        before = batch.missing_count
        if action == "complete":
            applied = self._finish(bid, BatchState.COMPLETED, reason)
        elif action == "publish_failed":
            applied = self.close(
                bid,
                BatchState.PUBLISH_FAILED,
                reason,
                item_reason=lambda _: f"not delivered: {reason}",
                only_from=(BatchState.PUBLISHING,),
            )
        elif action == "partial":
            applied = self.close(
                bid,
                BatchState.PARTIAL,
                reason,
                item_reason=lambda d: (
                    f"no completion after {int(d.get('attempts') or 0)} attempt(s), the last "
                    f"sent {_last_sent(d)}"
                ),
            )
        else:  # fail
            applied = self.close(
                bid, BatchState.FAILED, reason, item_reason=lambda _: f"batch failed: {reason}"
            )
        return self._closed(
            batch, action, reason, applied, lambda after: max(after.missing_count - before, 0)
        )

    def check_stalled(
        self,
        policy: StallPolicy = _DEFAULT_POLICY,
        *,
        send: Sender | None = None,
        now: datetime | None = None,
        dry_run: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> list[FinishAction]:
        """Apply the stall rules to every active batch, a page at a time. Without ``send`` the
        re-sends are only reported (what the CLI does without a topic)."""
        now = now or self.clock()
        actions: list[FinishAction] = []
        for page in self.iter_active(page_size=page_size):
            for batch in page:
                decision = self.decide(batch, now, policy)
                if decision is None:
                    continue
                action, reason, live = decision
                actions.append(self.apply(action, live, reason, policy, send, dry_run=dry_run))
        return actions

    def list_stuck(
        self, *, idle_for: timedelta, now: datetime | None = None, page_size: int = PAGE_SIZE
    ) -> list[Batch]:
        """Active batches with no progress for at least ``idle_for``, oldest first (live
        counts and the latest completion's time)."""
        now = now or self.clock()
        out = []
        for page in self.iter_active(page_size=page_size):
            for b in page:
                live = b.with_counts(self.counts(b.batch_id), self.last_completion_at(b.batch_id))
                if live.idle(now) >= idle_for:
                    out.append(live)
        return out

    def cleanup_stuck(
        self,
        policy: StallPolicy = _DEFAULT_POLICY,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> list[FinishAction]:
        """Close active batches with no progress for ``policy.stuck_after``, reason recorded:
        one still publishing is ``publish_failed``; any other ``partial`` (open items recorded
        missing) or ``completed`` when nothing is open."""
        now = now or self.clock()
        actions: list[FinishAction] = []
        for batch in self.list_stuck(idle_for=policy.stuck_after, now=now, page_size=page_size):
            idle = batch.idle(now)
            pct = batch.fraction_done * 100
            reason = f"stuck: no progress for {format_duration(idle)} at {pct:.1f}%"
            if batch.state == BatchState.PUBLISHING:
                action = "publish_failed"
            elif batch.done >= batch.total_items:
                action, reason = "complete", "all items done"
            else:
                action = "partial"
            actions.append(self.apply(action, batch, reason, policy, None, dry_run=dry_run))
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
        for sub in (self._items, self._completions, self._strays, self._transitions):
            col = sub(batch_id)
            while True:
                snaps = list(col.select([]).limit(FIRESTORE_MAX_WRITES_PER_COMMIT).stream())
                if not snaps:
                    break
                wb = self.db.batch()
                for s in snaps:
                    wb.delete(s.reference)
                wb.commit()
                deleted += len(snaps)
        self._ref(batch_id).delete()
        return {"batch_id": batch_id, "deleted_documents": deleted + 1, "reason": reason}


def _last_sent(data: Mapping[str, Any]) -> str:
    sent = data.get("sent_at") or []
    last = max(sent) if sent else None
    return last.isoformat() if isinstance(last, datetime) else "never"
