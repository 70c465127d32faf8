"""Deploy-lock benchmark against Google's Firestore emulator (started and stopped here).

Uncontended: acquire, verify and release latency (p50/p99) beside a raw single-document create,
all measured interleaved in the same run so machine noise hits them alike; the ratios are what
to compare (goal: a fresh-process acquire of a free lock p50 <= 1.5x create). ``acquire
(fresh)`` is a new lock object each time, as a new ``deploy-lock`` process would be; ``acquire``
is one lock object re-acquiring after its own release. Both are one commit (create the lease
document + Increment the token counter). ``verify`` is the holder's re-check before a mutation
(one read of both documents); ``release`` one conditional delete + history event.
Contention: 16 threads per round all try at once, the winner holds until all have tried, then
releases; rounds/second and overlaps (two holders at once, detected outside the lock by the
lock tests' file-system marker). The round protocol and the thread harness are the lock tests'
(``tests/lock/_workers.py``, a plain module without pytest). Usage::

    .venv/bin/python benchmarks/lock_bench.py [--iterations 500] [--rounds 100] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_GCE_CHECK", "true")

from scripts.deploylock import DeployLock, HolderInfo  # noqa: E402
from scripts.emulators import firestore_client, start_firestore  # noqa: E402
from tests.lock import _workers  # noqa: E402

PROJECT = "demo-bench"
CONTENDERS = 16
WARMUP = 50


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def uncontended(client, iterations: int) -> dict[str, dict[str, float]]:
    lock = DeployLock(client, stack="bench", ttl=timedelta(minutes=10))
    raw = client.collection("bench_raw")
    me = HolderInfo.detect(reason="benchmark")
    times: dict[str, list[float]] = {
        "raw create": [], "acquire (fresh)": [], "acquire": [], "verify": [], "release": [],
    }  # fmt: skip
    for _ in range(20):  # a cold JVM may time out its first calls: not measured
        with contextlib.suppress(Exception):
            raw.document(uuid.uuid4().hex).create({})
            DeployLock(client, stack="bench-warm").status()
    for i in range(WARMUP + iterations):
        t0 = time.perf_counter()
        raw.document(uuid.uuid4().hex).create({"i": i})
        t1 = time.perf_counter()
        fresh = DeployLock(client, stack="bench-fresh", ttl=timedelta(minutes=10))
        t2 = time.perf_counter()
        fresh_lease = fresh.acquire(me)
        t3 = time.perf_counter()
        fresh.release(fresh_lease)  # another stack: `lock` alone writes "bench"
        t4 = time.perf_counter()
        lease = lock.acquire(me)
        t5 = time.perf_counter()
        lock.verify(lease)
        t6 = time.perf_counter()
        lock.release(lease)
        t7 = time.perf_counter()
        if i >= WARMUP:
            times["raw create"].append(t1 - t0)
            times["acquire (fresh)"].append(t3 - t2)
            times["acquire"].append(t5 - t4)
            times["verify"].append(t6 - t5)
            times["release"].append(t7 - t6)
    return {
        name: {
            "p50_ms": _pct(s, 0.5),
            "p99_ms": _pct(s, 0.99),
            "mean_ms": statistics.mean(s) * 1000,
        }
        for name, s in times.items()
    }


def contention(emulator, rounds: int) -> dict[str, float]:
    barrier = threading.Barrier(CONTENDERS)
    wins: list[tuple[int, bool]] = []  # (token, alone)

    def won(_rnd: int, lease, alone: bool) -> None:
        wins.append((lease.token, alone))

    with tempfile.TemporaryDirectory(prefix="lock-bench-") as marker_dir:

        def contender(i: int) -> None:
            lock = DeployLock(
                firestore_client(emulator, PROJECT), stack="contended", ttl=timedelta(minutes=1)
            )
            me = HolderInfo(who=f"bench-{i}", host="bench", pid=i)
            _workers.contend_rounds(lambda _rnd: lock, me, rounds, barrier, marker_dir, won)

        started = time.perf_counter()
        errors = _workers.in_threads(CONTENDERS, contender, barrier=barrier)
        elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    winners = [token for token, _ in wins]
    return {
        "contenders": CONTENDERS,
        "rounds": rounds,
        "rounds_per_s": rounds / elapsed,
        "winners": len(winners),
        "overlaps": sum(not alone for _, alone in wins),
        "tokens_strictly_increasing": winners == sorted(set(winners)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with start_firestore(PROJECT) as emulator:
        client = firestore_client(emulator, PROJECT)
        lat = uncontended(client, args.iterations)
        cont = contention(emulator, args.rounds)
    create = lat["raw create"]["p50_ms"]
    result = {
        "uncontended": lat,
        "ratios_p50": {
            "acquire_fresh/create": lat["acquire (fresh)"]["p50_ms"] / create,
            "acquire/create": lat["acquire"]["p50_ms"] / create,
            "verify/create": lat["verify"]["p50_ms"] / create,
            "release/create": lat["release"]["p50_ms"] / create,
        },
        "loadavg_1m_before_after": [load_before, os.getloadavg()[0]],
        "contention": cont,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"uncontended, {args.iterations} iterations (interleaved, after {WARMUP} warm-up):")
    for name, s in lat.items():
        ratio = s["p50_ms"] / create
        print(f"  {name:<15} p50 {s['p50_ms']:6.2f} ms  p99 {s['p99_ms']:6.2f} ms  "
              f"p50 x{ratio:.2f} of raw create")  # fmt: skip
    print(f"contention, {CONTENDERS} threads x {cont['rounds']} rounds: "
          f"{cont['rounds_per_s']:.1f} rounds/s, {cont['winners']} winners, "
          f"{cont['overlaps']} overlaps, tokens strictly increasing: "
          f"{cont['tokens_strictly_increasing']}")  # fmt: skip
    print(f"load average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
