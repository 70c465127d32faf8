"""Where a batch's documents live, and the reads the rest of the store builds on.

:class:`StoreBase` holds the client and the clock, a reference to each part of a batch (the
layout in :mod:`shared.batch_store`), the batch document's reads, the aggregation query that
counts outcomes, the paged scans of active batches and open items, and ``delete``, which
removes every part of a batch (so a new subcollection is added here, beside its reference).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

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
    Clock,
    Counts,
    utcnow,
    validate_batch_id,
)
from shared.indexes import (
    BATCHES_COLLECTION,
    COMPLETIONS_SUBCOLLECTION,
    ITEMS_SUBCOLLECTION,
    STRAYS_SUBCOLLECTION,
)
from shared.limits import FIRESTORE_MAX_WRITES_PER_COMMIT

#: Room left in a completion document for everything but the prediction.
_COMPLETION_OVERHEAD = 4096


class StoreBase:
    """The client, the clock and a batch's documents; the reads every other part uses."""

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
