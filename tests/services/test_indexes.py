"""Every Firestore query the services and the ``batches`` CLI run has the index it needs.

The emulator does not enforce composite indexes; real Firestore rejects a query without one.
So this test runs the real code paths on the emulator, records every structured query the
client sends, derives the composite index each needs (Firestore's rules: equality filters plus
an order or inequality on another field, or more than one ordered field, need one), and
checks it against ``shared.indexes.REQUIRED_INDEXES``, the list the Pulumi program declares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.base_query import BaseQuery
from google.cloud.firestore_v1.types import StructuredQuery
from typer.testing import CliRunner

from scripts.batches_cli import app as batches_app
from shared.indexes import REQUIRED_INDEXES, IndexSpec
from tests.conftest import EMULATOR_PROJECT
from tests.services.conftest import items, register

pytestmark = pytest.mark.emulator

_EQUALITY = {
    StructuredQuery.FieldFilter.Operator.EQUAL,
    StructuredQuery.FieldFilter.Operator.IN,
    StructuredQuery.FieldFilter.Operator.ARRAY_CONTAINS,
    StructuredQuery.FieldFilter.Operator.ARRAY_CONTAINS_ANY,
}


@dataclass(frozen=True)
class Needed:
    collection: str
    scope: str
    equality: frozenset[str]
    ordered: tuple[tuple[str, str], ...]  # (field, ASCENDING|DESCENDING) in order

    def __str__(self) -> str:
        order = ", ".join(f"{f} {d}" for f, d in self.ordered)
        return f"{self.collection} ({self.scope}): equality {sorted(self.equality)}, order {order}"


def _field_filters(flt) -> list:
    if "field_filter" in flt:
        return [flt.field_filter]
    if "composite_filter" in flt:
        return [ff for sub in flt.composite_filter.filters for ff in _field_filters(sub)]
    return []


def needed_index(proto: StructuredQuery) -> Needed | None:
    """The composite index a structured query needs, or None if single-field indexes do."""
    (source,) = proto.from_
    filters = _field_filters(proto.where) if "where" in proto else []
    equality = {f.field.field_path for f in filters if f.op in _EQUALITY}
    inequality = [f.field.field_path for f in filters if f.op not in _EQUALITY]
    ordered: list[tuple[str, str]] = []
    for o in proto.order_by:
        if o.field.field_path != "__name__":
            ordered.append((o.field.field_path, o.direction.name))
    for field in inequality:
        if field not in {f for f, _ in ordered}:
            ordered.insert(0, (field, "ASCENDING"))
    ordered_fields = {f for f, _ in ordered}
    if len(ordered_fields) <= 1 and not (equality - ordered_fields and ordered_fields):
        return None  # a single-field index (or merged equality indexes) serves it
    scope = "COLLECTION_GROUP" if source.all_descendants else "COLLECTION"
    return Needed(source.collection_id, scope, frozenset(equality - ordered_fields), tuple(ordered))


def served_by(need: Needed, spec: IndexSpec) -> bool:
    if (spec.collection, spec.query_scope) != (need.collection, need.scope):
        return False
    fields = [(f.field_path, f.order) for f in spec.fields]
    k = len(need.equality)
    return {f for f, _ in fields[:k]} == need.equality and tuple(fields[k:]) == need.ordered


@pytest.fixture
def recorded(monkeypatch):
    seen: list[StructuredQuery] = []
    original = BaseQuery._to_protobuf

    def record(self):
        proto = original(self)
        seen.append(proto)
        return proto

    monkeypatch.setattr(BaseQuery, "_to_protobuf", record)
    return seen


def test_every_query_run_has_its_composite_index(
    recorded, coordinator, store, clock, firestore_env, monkeypatch
):
    # The coordinator's paths.
    coordinator.start(items(6), batch_id="ix-1")
    coordinator.wait_published("ix-1")
    for i in range(5):
        coordinator.complete("ix-1", f"p{i:05d}")
    coordinator.start(items(3), batch_id="ix-2")
    coordinator.wait_published("ix-2")
    clock.advance(minutes=30)
    coordinator.client.post("/check-stalled")
    coordinator.client.post("/cleanup-stuck")
    coordinator.client.post(
        "/admin/clear-batch",
        json={"batch_id": "ix-1", "reason": "x", "action": "delete"},
        headers={"X-API-Key": "test-api-key"},
    )
    # The CLI's paths.
    monkeypatch.setenv("GCP_PROJECT_ID", EMULATOR_PROJECT)
    store.create("ix-3", 2)
    register(store, "ix-3", ["a", "b"])
    store.record_completion("ix-3", "a", ok=False, error="OUT")
    store.record_completion("ix-3", "z", ok=True)  # a stray
    runner = CliRunner()
    for args in (
        ["list-stuck", "--idle", "0", "--json"],
        ["inspect", "ix-3", "--json"],
        ["check-stalled", "--dry-run", "--json"],
        ["force-complete", "ix-3", "--reason", "x"],
    ):
        result = runner.invoke(batches_app, args)
        assert result.exit_code in (0, 2), result.output
        json.loads(result.output) if "--json" in args else None

    assert recorded, "no query was recorded: the capture is broken"
    needs = {n for n in map(needed_index, recorded) if n is not None}
    missing = [str(n) for n in needs if not any(served_by(n, s) for s in REQUIRED_INDEXES)]
    assert not missing, "queries without a composite index:\n" + "\n".join(missing)
    unused = [s.name for s in REQUIRED_INDEXES if not any(served_by(n, s) for n in needs)]
    assert not unused, f"indexes no query needs (stale?): {unused}"


@pytest.mark.parametrize(
    ("build", "needs_index"),
    [
        (lambda c: c.where(filter=FieldFilter("state", "==", "x")), False),
        (lambda c: c.order_by("created_at").limit(3), False),
        (
            lambda c: c.where(filter=FieldFilter("state", "in", ["a", "b"])).order_by("created_at"),
            True,
        ),
        (
            lambda c: c.where(filter=FieldFilter("state", "==", "a")).where(
                filter=FieldFilter("total_items", ">", 3)
            ),
            True,
        ),
        (
            lambda c: c.where(filter=FieldFilter("a", "==", 1)).where(
                filter=FieldFilter("b", "==", 2)
            ),
            False,
        ),
        (lambda c: c.order_by("a").order_by("b"), True),
    ],
)
def test_the_index_rule(build, needs_index):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    db = firestore.Client(project="p", credentials=AnonymousCredentials())
    proto = build(db.collection("c"))._to_protobuf()
    assert (needed_index(proto) is not None) is needs_index
