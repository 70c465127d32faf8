"""Code run in separate processes by the lock tests (spawned: importable by module path), and
the contention harness the thread tests and ``benchmarks/lock_bench.py`` share with them.

A plain module (no pytest), so the benchmark imports it too: one copy of the round protocol
(:func:`contend_rounds`) and of the thread harness (:func:`in_threads`)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any


def enter(marker_dir: str) -> bool:
    """Claim the critical section through the file system, independently of the lock:
    O_EXCL creation fails if another holder is inside. Returns False on an overlap."""
    try:
        fd = os.open(os.path.join(marker_dir, "inside"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def leave(marker_dir: str) -> None:
    os.unlink(os.path.join(marker_dir, "inside"))


def contend_rounds(
    lock_for: Callable[[int], Any],
    holder: Any,
    rounds: int,
    barrier: Any,
    marker_dir: str,
    won: Callable[[int, Any, bool], None],
) -> None:
    """One contender's ``rounds``: each round every contender tries ``lock_for(round)`` at once
    (``barrier``, a threading or multiprocessing one); the winner claims the file-system marker
    (:func:`enter`) and holds until every contender has tried, then leaves, reports
    ``won(round, lease, alone)`` (``alone`` False: the marker saw another holder inside) and
    releases."""
    for rnd in range(rounds):
        lock = lock_for(rnd)
        barrier.wait()
        lease = lock.try_acquire(holder)
        alone = enter(marker_dir) if lease else True
        barrier.wait()  # everyone has tried while the winner holds
        if lease:
            if alone:
                leave(marker_dir)
            won(rnd, lease, alone)
            lock.release(lease)
        barrier.wait()


def in_threads(
    count: int,
    target: Callable[[int], None],
    *,
    barrier: threading.Barrier | None = None,
    timeout: float | None = None,
) -> list[BaseException]:
    """Run ``target(i)`` for ``i`` in ``range(count)``, each in its own thread, all started
    before any is joined (each join waits ``timeout``). Returns what the threads raised; a
    raising thread aborts ``barrier`` so the others stop waiting for it."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # surfaced to the caller
            errors.append(exc)
            if barrier is not None:
                barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return errors


def contender(host: str, project: str, stack: str, rounds: int, barrier, marker_dir: str,
              results) -> None:  # fmt: skip
    """One of N processes in :func:`contend_rounds`; each win is put on ``results``."""
    from scripts.deploylock import DEFAULT_DATABASE, DeployLock, HolderInfo
    from scripts.emulators import firestore_client

    lock = DeployLock(
        firestore_client(host, project, database=DEFAULT_DATABASE),
        stack=stack,
        ttl=timedelta(seconds=30),
    )
    contend_rounds(
        lambda _rnd: lock,
        HolderInfo.detect(reason="contention test"),
        rounds,
        barrier,
        marker_dir,
        lambda rnd, lease, alone: results.put((rnd, lease.token, alone, os.getpid())),
    )


def holder_main(args: list[str]) -> None:
    """``python -m tests.lock._workers HOST PROJECT STACK TTL``: acquire, heartbeat, wait to
    be killed. Prints the token once acquired."""
    host, project, stack, ttl = args[:4]
    from scripts.deploylock import DEFAULT_DATABASE, DeployLock
    from scripts.emulators import firestore_client

    lock = DeployLock(
        firestore_client(host, project, database=DEFAULT_DATABASE),
        stack=stack,
        ttl=timedelta(seconds=float(ttl)),
    )
    lease = lock.acquire()
    with lock.heartbeat(lease):
        print(f"acquired {lease.token}", flush=True)
        time.sleep(3600)


def runner_main(args: list[str]) -> int:
    """``python -m tests.lock._workers run HOST PROJECT STACK TTL GRACE -- CMD...``:
    :func:`run_locked` with a TTL below the CLI's 10 s minimum (the library allows 1 s), so
    the supervisor tests wait seconds, not tens of seconds. Short RPC timeouts, as a TTL of a
    few seconds needs."""
    host, project, stack, ttl, grace, dashes, *cmd = args
    assert dashes == "--", args
    from scripts.deploylock import DEFAULT_DATABASE, DeployLock, run_locked
    from scripts.emulators import firestore_client

    lock = DeployLock(
        firestore_client(host, project, database=DEFAULT_DATABASE, rpc_timeout=2),
        stack=stack,
        ttl=timedelta(seconds=float(ttl)),
        rpc_timeout=timedelta(seconds=2),
        retry_deadline=timedelta(seconds=2),
    )

    def log(msg: str) -> None:
        print(f"runner: {msg}", file=sys.stderr, flush=True)

    return run_locked(lock, cmd, grace=float(grace), log=log)


#: The command of the supervisor tests: appends ``clock()`` readings (the lock's clock,
#: CLOCK_BOOTTIME, shared by every process here) to a file every 10 ms, one write(2) each,
#: so a reading in the file proves the process ran at that moment. ``ignore``: ignores SIGINT
#: (only SIGKILL stops it). ``escape``: also starts a grandchild that leaves the process group
#: and session (setsid) and ticks too: killing the group alone would miss it.
TICKER = r"""
import os, signal, subprocess, sys, time
path, mode = sys.argv[1], sys.argv[2]
if "ignore" in mode:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
if "escape" in mode and "child" not in mode:
    subprocess.Popen([sys.executable, "-c", sys.argv[3], path, mode + ",child", sys.argv[3]],
                     start_new_session=True)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.write(fd, f"pid {os.getpid()}\n".encode())
while True:
    os.write(fd, f"{time.clock_gettime(time.CLOCK_BOOTTIME)!r}\n".encode())
    time.sleep(0.01)
"""


def ticker_argv(path: str, *, ignore_sigint: bool, escape: bool = False) -> list[str]:
    mode = ",".join(m for m, on in (("ignore", ignore_sigint), ("escape", escape)) if on)
    return [sys.executable, "-c", TICKER, path, mode or "plain", TICKER]


def read_ticks(path: str) -> tuple[list[int], list[float]]:
    """(pids, readings) written by :data:`TICKER` processes into ``path``."""
    pids, ticks = [], []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("pid "):
                    pids.append(int(line.split()[1]))
                elif line.strip():
                    ticks.append(float(line))
    except FileNotFoundError:
        pass
    return pids, ticks


if __name__ == "__main__":
    if sys.argv[1] == "run":
        sys.exit(runner_main(sys.argv[2:]))
    holder_main(sys.argv[1:])
