"""The reads behind ``batches status`` and ``batches inspect``: a batch with live counts, the
items that failed or were closed missing, and the stray completions with their kinds."""

from __future__ import annotations

from typing import Any

from google.cloud.firestore_v1 import FieldFilter

from shared.batch_model import STRAY_KINDS, Batch
from shared.batch_store._documents import StoreBase


class Inspect(StoreBase):
    """Status and inspection reads (nothing here writes)."""

    def status(self, batch_id: str) -> Batch | None:
        """The batch with exact counts: live (aggregated) while open, final once finished."""
        batch = self.get(batch_id)
        if batch is None or not batch.active:
            return batch
        return batch.with_counts(self.counts(batch_id), self.last_completion_at(batch_id))

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
