"""Pins the Firestore emulator behaviours the deploy lock is built on.

If an emulator (or client) upgrade changes any of these, the lock tests above them prove
nothing: this file must fail first. Production Firestore documents the same semantics.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

pytestmark = pytest.mark.emulator


def test_create_if_absent_has_exactly_one_winner_under_16_threads(firestore_db):
    for rnd in range(10):
        ref = firestore_db.collection("contract").document(f"race-{rnd}")
        barrier = threading.Barrier(16)
        outcomes: list[str] = []

        def create(i: int, ref=ref, barrier=barrier, outcomes=outcomes) -> None:
            barrier.wait()
            try:
                ref.create({"winner": i})
                outcomes.append("won")
            except gexc.AlreadyExists:
                outcomes.append("exists")

        threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["exists"] * 15 + ["won"], f"round {rnd}: {outcomes}"


def test_last_update_time_precondition_is_enforced(firestore_db):
    ref = firestore_db.collection("contract").document("versioned")
    first = ref.create({"n": 1}).update_time
    ref.update({"n": 2}, option=firestore_db.write_option(last_update_time=first))
    with pytest.raises(gexc.FailedPrecondition):
        ref.update({"n": 3}, option=firestore_db.write_option(last_update_time=first))
    assert ref.get().get("n") == 2


def test_batched_write_is_atomic_when_a_precondition_fails(firestore_db):
    ref = firestore_db.collection("contract").document("lease")
    stale = ref.create({"n": 1}).update_time
    ref.update({"n": 2})
    event = firestore_db.collection("contract").document("event")
    batch = firestore_db.batch()
    batch.update(ref, {"n": 3}, option=firestore_db.write_option(last_update_time=stale))
    batch.create(event, {"e": 1})
    with pytest.raises(gexc.FailedPrecondition):
        batch.commit()
    assert not event.get().exists, "the event was written although the lease write failed"
    assert ref.get().get("n") == 2


def test_server_times_read_time_and_update_time(firestore_db):
    ref = firestore_db.collection("contract").document("clock")
    written = ref.create({"at": firestore.SERVER_TIMESTAMP}).update_time
    time.sleep(0.2)
    snap = ref.get()
    assert snap.update_time == written
    assert snap.read_time - snap.update_time >= timedelta(milliseconds=150)
    # The server timestamp field is taken within the same commit as update_time.
    assert abs(snap.get("at") - snap.update_time) < timedelta(seconds=1)
    assert snap.read_time.tzinfo is not None


def test_ordered_query_with_limit(firestore_db):
    events = firestore_db.collection("contract").document("h").collection("events")
    for seq in (3, 1, 2):
        events.document(f"{seq:012d}").create({"seq": seq})
    docs = events.order_by("seq", direction=firestore.Query.DESCENDING).limit(2).get()
    assert [d.get("seq") for d in docs] == [3, 2]


def test_increment_result_comes_back_in_the_commit_and_a_failed_create_rolls_it_back(
    firestore_db,
):
    """The lock's one-round-trip acquire: create-if-absent + Increment in one commit, the new
    value read from the commit's ``transform_results``; if the create fails, the counter is
    untouched (the commit is atomic)."""
    lease = firestore_db.collection("contract").document("lease")
    counter = firestore_db.collection("contract").document("counter")
    batch = firestore_db.batch()
    batch.create(lease, {"holder": "a"})
    batch.set(counter, {"token": firestore.Increment(1), "lease_id": "a"}, merge=True)
    results = batch.commit()
    assert results[1].transform_results[0].integer_value == 1
    batch = firestore_db.batch()
    batch.create(lease, {"holder": "b"})
    batch.set(counter, {"token": firestore.Increment(1), "lease_id": "b"}, merge=True)
    with pytest.raises(gexc.AlreadyExists):
        batch.commit()
    assert counter.get().to_dict() == {"token": 1, "lease_id": "a"}
    lease.delete()
    batch = firestore_db.batch()
    batch.create(lease, {"holder": "c"})
    batch.set(counter, {"token": firestore.Increment(1), "lease_id": "c"}, merge=True)
    assert batch.commit()[1].transform_results[0].integer_value == 2


def test_get_all_reads_both_documents_at_one_read_time(firestore_db):
    a = firestore_db.collection("contract").document("a")
    b = firestore_db.collection("contract").document("b")
    a.create({"x": 1})
    snaps = list(firestore_db.get_all([a, b]))
    assert {s.reference.path: s.exists for s in snaps} == {a.path: True, b.path: False}
    assert len({s.read_time for s in snaps}) == 1


def test_descending_order_by_a_field_not_by_document_id(firestore_db):
    """History is ordered by a ``key`` field: the emulator refuses ``__name__`` descending."""
    events = firestore_db.collection("contract").document("h").collection("events")
    for key in ("000000000001-000000", "000000000001-000000-ab12", "000000000002-000000"):
        events.document(key).create({"key": key})
    docs = events.order_by("key", direction=firestore.Query.DESCENDING).get()
    assert [d.id for d in docs] == [
        "000000000002-000000", "000000000001-000000-ab12", "000000000001-000000",
    ]  # fmt: skip
    with pytest.raises(gexc.FailedPrecondition, match="descending"):
        events.order_by("__name__", direction=firestore.Query.DESCENDING).get()
