"""Composite Firestore indexes the services and the ``batches`` CLI need.

Real Firestore rejects a query that needs a composite index it does not have
(``FailedPrecondition: The query requires an index``); the emulator does not enforce indexes,
so nothing local would notice. Every such query the code runs is listed here, and the Pulumi
program declares one ``gcp.firestore.Index`` per spec::

    for spec in REQUIRED_INDEXES:
        gcp.firestore.Index(
            spec.name,
            database=database_name,
            collection=spec.collection,
            query_scope=spec.query_scope,
            fields=[gcp.firestore.IndexFieldArgs(field_path=f.field_path, order=f.order)
                    for f in spec.fields],
        )

Firestore appends ``__name__`` (same direction as the last field) to every composite index on
its own; the specs leave it out. ``tests/services/test_indexes.py`` records the structured
queries the store and the CLI actually send (against the emulator) and checks that every one
needing a composite index has its spec here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BATCHES_COLLECTION",
    "COMPLETIONS_SUBCOLLECTION",
    "ITEMS_SUBCOLLECTION",
    "STRAYS_SUBCOLLECTION",
    "IndexField",
    "IndexSpec",
    "REQUIRED_INDEXES",
]

#: Batch documents: one per batch, id = batch id.
BATCHES_COLLECTION = "prediction_batches"
#: ``prediction_batches/{batch}/items/{item}``: one per work item published.
ITEMS_SUBCOLLECTION = "items"
#: ``prediction_batches/{batch}/completions/{item}``: one per completed (or failed) item,
#: created if absent, so a redelivered completion is counted once.
COMPLETIONS_SUBCOLLECTION = "completions"
#: ``prediction_batches/{batch}/strays/{id}``: completions acknowledged but never counted
#: (foreign, late, duplicate, unknown batch), one per message, for ``batches inspect``.
STRAYS_SUBCOLLECTION = "strays"

Order = Literal["ASCENDING", "DESCENDING"]
Scope = Literal["COLLECTION", "COLLECTION_GROUP"]


@dataclass(frozen=True)
class IndexField:
    field_path: str
    order: Order = "ASCENDING"


@dataclass(frozen=True)
class IndexSpec:
    """One composite index: ``collection`` is the collection id (a subcollection's last segment)."""

    name: str  # logical name, stable: the program derives the resource name from it
    collection: str
    fields: tuple[IndexField, ...]
    query_scope: Scope = "COLLECTION"
    purpose: str = ""


REQUIRED_INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec(
        name="batches-by-state-created",
        collection=BATCHES_COLLECTION,
        fields=(IndexField("state"), IndexField("created_at")),
        purpose=(
            "active batches, oldest first, paged: where state in [...] order by created_at "
            "(coordinator /check-stalled and /cleanup-stuck, batches list-stuck/check-stalled)"
        ),
    ),
)
