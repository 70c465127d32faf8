"""Creating a batch and publishing it: the batch document, the size checks on work items, their
registration before publishing, publishing progress, and the work message itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.api_core import exceptions as gexc

from shared.batch_model import Batch, BatchState, validate_batch_id, validate_item_id
from shared.batch_store._documents import _COMPLETION_OVERHEAD
from shared.batch_store._finishing import Finishing
from shared.limits import (
    FIRESTORE_MAX_DOCUMENT_BYTES,
    FIRESTORE_MAX_NESTING_DEPTH,
    FIRESTORE_MAX_REQUEST_BYTES,
    FIRESTORE_MAX_WRITES_PER_COMMIT,
    firestore_size,
    json_depth,
)

#: Registration chunks: 500 writes per commit, and well inside the 10 MiB request limit.
_REGISTER_BYTES = FIRESTORE_MAX_REQUEST_BYTES * 8 // 10


class ItemTooLarge(ValueError):
    """A work item that could never be stored (document size or nesting): refuse it at /start."""


def work_message(
    batch_id: str, item_id: str, payload: Mapping[str, Any], attempt: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """A work item's message and attributes, for the first publish and every re-send."""
    body = {"batch_id": batch_id, "item_id": item_id, "payload": dict(payload), "attempt": attempt}
    return body, {"batch_id": batch_id, "item_id": item_id, "attempt": str(attempt)}


class Publishing(Finishing):
    """``create``, ``check_item``, ``register_items`` and the publishing transitions (a failed
    publish closes the batch, so this builds on :class:`Finishing`)."""

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
