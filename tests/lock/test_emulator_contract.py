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
