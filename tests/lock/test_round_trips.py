"""Round trips per operation, counted at the lock's one RPC door, against Google's emulator.

A free lock costs one conditional commit from a fresh process (the lease document's create +
the counter's Increment, whose result is the token); everything else keeps the guarantees of
the read-then-write path: one holder at a time, tokens strictly increasing, history complete.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest
from google.api_core import exceptions as gexc

from scripts.deploylock import DEFAULT_DATABASE, DeployLock, HolderInfo
from scripts.emulators import firestore_client
from tests.lock import _workers

pytestmark = pytest.mark.emulator


def holder(who: str) -> HolderInfo:
    return HolderInfo(who=who, host="test-host", pid=1000, git_commit="abc123")


def count_rpcs(lock: DeployLock) -> list[str]:
    """Record every Firestore call ``lock`` makes (what it was doing), in order."""
    calls: list[str] = []
    rpc = lock._docs.rpc

    def counting(what, fn, *args, **kwargs):
        calls.append(what.split(" the ")[0].split(" ")[0])
        return rpc(what, fn, *args, **kwargs)

    lock._docs.rpc = counting  # type: ignore[method-assign]
    return calls


def test_a_fresh_lock_object_acquires_a_free_lock_in_one_commit(make_lock, lock_db):
    make_lock().release(make_lock().acquire(holder("earlier")))  # tokens so far: 1
    fresh = make_lock()
    calls = count_rpcs(fresh)
    lease = fresh.acquire(holder("alice"))
    assert calls == ["acquiring"], calls
    assert lease.token == 2
    counter = lock_db.document("deploy_locks/prod/meta/tokens").get().to_dict()
    assert counter == {"token": 2, "lease_id": lease.lease_id}
    status = make_lock().status()
    assert status.held and status.token == 2 and status.holder.who == "alice"
    assert status.acquired_at == lease.acquired_at and status.expires_at == lease.expires_at
    calls.clear()
    assert fresh.release(lease) is True
    assert calls == ["releasing"], "release by the holder: one conditional commit"


def test_held_and_expired_cost_reads_not_blind_writes(make_lock):
    lock = make_lock(ttl=1)
    lock.acquire(holder("alice"))
    waiter = make_lock(ttl=1)
    calls = count_rpcs(waiter)
    assert waiter.try_acquire(holder("bob")) is None
    assert calls == ["acquiring", "reading"], "fresh: the create fails, then one read"
    calls.clear()
    assert waiter.try_acquire(holder("bob")) is None
    assert calls == ["reading"], "a waiter that saw it held polls with one read"
    calls.clear()
    import time

    time.sleep(1.1)
    taken = waiter.try_acquire(holder("bob"))
    assert taken is not None and taken.token == 2
    assert calls == ["reading", "taking"], "takeover of an expired lease: two round trips"
    calls.clear()
    waiter.release(taken)
    waiter.release(waiter.acquire(holder("bob")))
    assert calls == ["releasing", "acquiring", "releasing"], "after its release: create again"


def test_a_commit_whose_reply_was_lost_is_recognised_as_ours(make_lock, monkeypatch):
    """gRPC retries a commit that may have landed; the retry then fails AlreadyExists. The
    read finds our own lease id: granted, not held by someone else."""
    lock = make_lock()
    real = lock._docs.commit
    first = [True]

    def commit_then_lose_reply(what, batch):
        results = real(what, batch)
        if first[0]:
            first[0] = False
            raise gexc.AlreadyExists("retried commit: the first attempt had landed")
        return results

    monkeypatch.setattr(lock._docs, "commit", commit_then_lose_reply)
    lease = lock.acquire(holder("alice"))
    assert lease.token == 1 and lock.verify(lease).holder.who == "alice"
    assert lock.release(lease)


def test_16_fresh_processes_worth_of_creates_one_winner_per_round(firestore_emulator, tmp_path,
                                                                  lock_db):  # fmt: skip
    """Every round, 16 new lock objects (as 16 new CLI processes) commit a create at once:
    exactly one succeeds, in one round trip; the file-system marker sees no overlap."""
    contenders, rounds = 16, 20
    barrier = threading.Barrier(contenders)
    results: list[tuple[int, int, bool, int, int]] = []

    def contender(i: int) -> None:
        client = firestore_client(
            firestore_emulator, firestore_emulator.project, database=DEFAULT_DATABASE
        )
        calls: dict[int, list[str]] = {}  # round -> that round's lock's RPCs

        def fresh(rnd: int) -> DeployLock:
            lock = DeployLock(client, stack="prod", ttl=timedelta(seconds=30))
            calls[rnd] = count_rpcs(lock)
            return lock

        def won(rnd, lease, alone) -> None:  # before its release: the acquire's RPCs only
            results.append((rnd, lease.token, alone, i, len(calls[rnd])))

        me = HolderInfo(who=f"thread-{i}", host="test", pid=i)
        _workers.contend_rounds(fresh, me, rounds, barrier, str(tmp_path), won)

    errors = _workers.in_threads(contenders, contender, barrier=barrier, timeout=180)
    assert not errors, errors
    by_round: dict[int, list] = {}
    for rnd, token, ok, who, rpcs in results:
        by_round.setdefault(rnd, []).append((token, ok, who, rpcs))
    assert sorted(by_round) == list(range(rounds))
    assert all(len(w) == 1 and w[0][1] for w in by_round.values()), by_round
    assert [by_round[r][0][0] for r in range(rounds)] == list(range(1, rounds + 1))
    assert all(by_round[r][0][3] == 1 for r in range(rounds)), "a winner needed a read"
    history = [(e.event, e.token) for e in reversed(DeployLock(lock_db, stack="prod").history(500))]
    assert history == [(ev, t) for t in range(1, rounds + 1) for ev in ("acquire", "release")]


def test_holder_to_dict_has_every_field():
    info = HolderInfo.detect(reason="r", command="c")
    assert info.to_dict() == dataclasses.asdict(info)
    assert HolderInfo.from_dict(info.to_dict()) == info
