"""The acquire fast path: a lock that last saw its lease released writes without reading first.

It must keep every guarantee of the read-then-write path: one holder at a time (also when all
contenders take the fast path from the same version), tokens strictly increasing, history
complete, and a stale version falling back to a read instead of being trusted.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta

import pytest

from scripts.deploylock import DEFAULT_DATABASE, DeployLock, HolderInfo
from scripts.emulators import firestore_client
from tests.lock import _workers

pytestmark = pytest.mark.emulator


def holder(who: str) -> HolderInfo:
    return HolderInfo(who=who, host="test-host", pid=1000, git_commit="abc123")


def count_reads(lock: DeployLock) -> list[int]:
    """Count the lease document reads ``lock`` makes (a one-element list, incremented)."""
    reads = [0]
    get = lock._get

    def counting_get():
        reads[0] += 1
        return get()

    lock._get = counting_get  # type: ignore[method-assign]
    return reads


def test_acquire_after_own_release_writes_without_reading(make_lock):
    lock = make_lock()
    first = lock.acquire(holder("alice"))
    assert lock.release(first)
    reads = count_reads(lock)
    second = lock.acquire(holder("alice"))
    assert reads[0] == 0, "the fast path read the lease document"
    assert second.token == first.token + 1
    status = lock.status()
    assert status.held and status.token == second.token and status.holder.who == "alice"
    assert status.acquired_at == second.acquired_at
    assert status.expires_at == second.expires_at
    assert lock.release(second)
    events = [(e.event, e.token) for e in reversed(lock.history(10))]
    assert events == [("acquire", 1), ("release", 1), ("acquire", 2), ("release", 2)]


def test_fast_path_with_a_stale_version_reads_and_refuses(make_lock):
    """A version seen released is stale once someone else acquired: the conditional write
    fails, nothing is written, and the read finds the live holder."""
    a, b = make_lock(), make_lock()
    a.release(a.acquire(holder("alice")))
    held_by_b = b.acquire(holder("bob"))
    reads = count_reads(a)
    assert a.try_acquire(holder("alice")) is None
    assert reads[0] == 1, "the failed fast path must fall back to exactly one read"
    assert b.status().holder.who == "bob"
    b.release(held_by_b)
    # a's version is now the one it read (held by bob): it reads again, and wins.
    third = a.acquire(holder("alice"))
    assert third.token == 3 and reads[0] == 2
    events = [(e.event, e.token) for e in reversed(a.history(10))]
    assert events == [("acquire", 1), ("release", 1), ("acquire", 2), ("release", 2),
                      ("acquire", 3)]  # fmt: skip


def test_fast_path_after_force_release_and_never_over_a_live_lease(make_lock):
    lock, ops = make_lock(), make_lock()
    lease = lock.acquire(holder("alice"))
    assert ops.force_release(reason="hung", by=holder("ops")) is not None
    # ops saw it released by its own write: its fast path takes the lock.
    reads = count_reads(ops)
    taken = ops.acquire(holder("ops"))
    assert reads[0] == 0 and taken.token == lease.token + 1
    # lock's own version is the held one it wrote: it must read, and find ops holding it.
    assert lock.try_acquire(holder("alice")) is None
    # The force-release record left in the document does not apply to the new lease.
    status = ops.status()
    assert status.held and status.released_by is None
    ops.renew(taken)
    assert ops.release(taken) is True
    assert [e.event for e in reversed(lock.history(10))] == [
        "acquire", "force-release", "acquire", "renew", "release"
    ]  # fmt: skip


def test_a_new_ttl_is_written_on_both_paths(make_lock):
    short = make_lock(ttl=5)
    short.release(short.acquire(holder("alice")))
    longer = make_lock(ttl=7)
    lease = longer.acquire(holder("bob"))  # read path, version written with a 5 s TTL
    assert longer.status().ttl == timedelta(seconds=7)
    assert lease.expires_at - lease.acquired_at == timedelta(seconds=7)
    longer.release(lease)
    short.status()
    reads = count_reads(short)
    lease = short.acquire(holder("alice"))  # fast path from a 7 s version
    assert reads[0] == 0
    status = short.status()
    assert status.ttl == timedelta(seconds=5) and status.expires_at == lease.expires_at


def test_acquired_at_survives_renewals(make_lock):
    lock = make_lock(ttl=5)
    lock.release(lock.acquire(holder("alice")))
    lease = lock.acquire(holder("alice"))  # fast path
    time.sleep(0.05)
    lock.renew(lease)
    time.sleep(0.05)
    lock.renew(lease)
    status = lock.status()
    assert status.acquired_at == lease.acquired_at
    assert status.renewed_at > status.acquired_at
    # A renewal from another process (the CLI's renew --token) keeps it too.
    other = make_lock(ttl=5)
    other.renew(other.lease_for_token(lease.token))
    assert make_lock().status().acquired_at == lease.acquired_at


def test_16_threads_all_on_the_fast_path_one_winner_per_round(firestore_emulator, tmp_path,
                                                              lock_db):  # fmt: skip
    """Every round all 16 contenders hold the same released version and write conditioned
    on it at once: exactly one commit may succeed; the file-system marker sees no overlap."""
    contenders, rounds = 16, 30
    barrier = threading.Barrier(contenders)
    results: list[tuple[int, int, bool, int]] = []
    fast_wins: list[int] = []
    errors: list[BaseException] = []

    def contender(i: int) -> None:
        client = firestore_client(
            firestore_emulator, firestore_emulator.project, database=DEFAULT_DATABASE
        )
        lock = DeployLock(client, stack="prod", ttl=timedelta(seconds=30))
        reads = count_reads(lock)
        me = HolderInfo(who=f"thread-{i}", host="test", pid=i)
        try:
            if i == 0:
                lock.release(lock.acquire(me))
            barrier.wait()
            for rnd in range(rounds):
                lock.status()  # everyone now knows the same released version
                barrier.wait()
                before = reads[0]
                lease = lock.try_acquire(me)
                ok = _workers.enter(str(tmp_path)) if lease else True
                barrier.wait()
                if lease:
                    if ok:
                        _workers.leave(str(tmp_path))
                    results.append((rnd, lease.token, ok, i))
                    if reads[0] == before:
                        fast_wins.append(rnd)
                    lock.release(lease)
                barrier.wait()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    by_round: dict[int, list] = {}
    for rnd, token, ok, who in results:
        by_round.setdefault(rnd, []).append((token, ok, who))
    assert sorted(by_round) == list(range(rounds))
    assert all(len(w) == 1 and w[0][1] for w in by_round.values()), by_round
    tokens = [by_round[r][0][0] for r in range(rounds)]
    assert tokens == list(range(2, rounds + 2)), tokens
    assert fast_wins == list(range(rounds)), "every round must be won on the fast path"
    lock = DeployLock(lock_db, stack="prod")
    history = [(e.event, e.token) for e in reversed(lock.history(500))]
    expected = [(ev, t) for t in range(1, rounds + 2) for ev in ("acquire", "release")]
    assert history == expected


def test_holder_to_dict_has_every_field():
    info = HolderInfo.detect(reason="r", command="c")
    assert info.to_dict() == dataclasses.asdict(info)
    assert HolderInfo.from_dict(info.to_dict()) == info
