"""Recording an item's outcome exactly once, and every other completion as a stray.

One commit creates ``completions/{item}`` and updates ``items/{item}``: ``NotFound`` means the
item (or the batch) was never registered, ``AlreadyExists`` that the item has an outcome
already (see :mod:`shared.batch_store`). Neither is counted; each is kept as a stray.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc

from shared.batch_model import CompletionOutcome, validate_item_id
from shared.batch_store._documents import _COMPLETION_OVERHEAD, StoreBase
from shared.indexes import BATCHES_COLLECTION, COMPLETIONS_SUBCOLLECTION
from shared.limits import (
    FIRESTORE_MAX_DOCUMENT_BYTES,
    FIRESTORE_MAX_NESTING_DEPTH,
    document_size,
    firestore_size,
    json_depth,
)

#: A stray keeps its prediction only when it is this small (it is evidence, not a result).
_STRAY_PREDICTION_BYTES = 64 * 1024


def _sanitize_id(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "_.:-" else "_" for ch in text)
    return keep[:200] or "none"


class Outcomes(StoreBase):
    """``record_completion`` and the strays it records."""

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
