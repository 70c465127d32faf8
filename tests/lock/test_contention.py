"""16 contenders, in threads and in separate processes: one winner per round, never two."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import timedelta

import pytest

from scripts.deploylock import DEFAULT_DATABASE, DeployLock, HolderInfo
from scripts.emulators import firestore_client
from tests.lock import _workers

pytestmark = pytest.mark.emulator

CONTENDERS = 16


def check_rounds(results: list[tuple[int, int, bool, int]], rounds: int) -> None:
    """One winner per round, no overlap seen by the file-system marker, tokens increasing."""
    by_round: dict[int, list] = {}
    for rnd, token, ok, who in results:
        by_round.setdefault(rnd, []).append((token, ok, who))
    assert sorted(by_round) == list(range(rounds)), f"rounds without a winner: {by_round}"
    for rnd, winners in sorted(by_round.items()):
        assert len(winners) == 1, f"round {rnd} had {len(winners)} winners: {winners}"
        assert winners[0][1], f"round {rnd}: the winner found another holder inside"
    tokens = [by_round[r][0][0] for r in range(rounds)]
    assert tokens == sorted(set(tokens)), f"tokens not strictly increasing: {tokens}"


def _client(firestore_emulator):
    # One client per contender, as separate deploy processes would have.
    return firestore_client(
        firestore_emulator, firestore_emulator.project, database=DEFAULT_DATABASE
    )


def test_16_threads_one_winner_per_round(firestore_db, firestore_emulator, tmp_path):
    rounds = 50
    barrier = threading.Barrier(CONTENDERS)
    results: list[tuple[int, int, bool, int]] = []

    def contender(i: int) -> None:
        lock = DeployLock(_client(firestore_emulator), stack="prod", ttl=timedelta(seconds=30))
        _workers.contend_rounds(
            lambda _rnd: lock,
            HolderInfo(who=f"thread-{i}", host="test", pid=i),
            rounds,
            barrier,
            str(tmp_path),
            lambda rnd, lease, alone: results.append((rnd, lease.token, alone, i)),
        )

    errors = _workers.in_threads(CONTENDERS, contender, barrier=barrier, timeout=120)
    assert not errors, errors
    check_rounds(results, rounds)
    assert [r[1] for r in sorted(results)] == list(range(1, rounds + 1))


def test_16_threads_churn_with_wait_never_overlap(make_lock, firestore_emulator, tmp_path):
    """Free-running: each thread acquires (waiting), holds briefly, releases, 4 times."""
    per_thread = 4
    overlaps: list[str] = []
    tokens: list[int] = []

    def worker(i: int) -> None:
        lock = DeployLock(_client(firestore_emulator), stack="prod", ttl=timedelta(seconds=30))
        for _ in range(per_thread):
            lease = lock.acquire(HolderInfo(who=f"t{i}", host="test", pid=i), wait=60)
            if not _workers.enter(str(tmp_path)):
                overlaps.append(f"t{i} token {lease.token}")
            else:
                _workers.leave(str(tmp_path))
            tokens.append(lease.token)
            assert lock.release(lease)

    errors = _workers.in_threads(CONTENDERS, worker, timeout=120)
    assert not errors and not overlaps, (errors, overlaps)
    assert tokens == list(range(1, CONTENDERS * per_thread + 1)), tokens
    history = make_lock().history(500)
    acquired = [e.token for e in reversed(history) if e.event == "acquire"]
    assert acquired == list(range(1, CONTENDERS * per_thread + 1))


def test_16_processes_one_winner_per_round(firestore_db, firestore_emulator, tmp_path):
    rounds = 20
    ctx = multiprocessing.get_context("spawn")  # no fork after gRPC started in this process
    barrier = ctx.Barrier(CONTENDERS, timeout=120)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_workers.contender,
            args=(
                firestore_emulator.host,
                firestore_emulator.project,
                "prod",
                rounds,
                barrier,
                str(tmp_path),
                results,
            ),
        )  # fmt: skip
        for _ in range(CONTENDERS)
    ]
    for p in procs:
        p.start()
    collected = [results.get(timeout=180) for _ in range(rounds)]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * CONTENDERS
    assert results.empty(), "more winners than rounds"
    check_rounds(collected, rounds)
    assert len({pid for *_, pid in collected}) >= 1
