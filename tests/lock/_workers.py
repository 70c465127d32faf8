"""Code run in separate processes by the lock tests (spawned: importable by module path)."""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta


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


def contender(host: str, project: str, stack: str, rounds: int, barrier, marker_dir: str,
              results) -> None:  # fmt: skip
    """One of N processes: each round, all try at once; the winner holds until all tried."""
    from scripts.deploylock import DEFAULT_DATABASE, DeployLock, HolderInfo
    from scripts.emulators import firestore_client

    lock = DeployLock(
        firestore_client(host, project, database=DEFAULT_DATABASE),
        stack=stack,
        ttl=timedelta(seconds=30),
    )
    holder = HolderInfo.detect(reason="contention test")
    for rnd in range(rounds):
        barrier.wait()
        lease = lock.try_acquire(holder)
        ok = enter(marker_dir) if lease else True
        barrier.wait()  # everyone has tried while the winner holds
        if lease:
            if ok:
                leave(marker_dir)
            lock.release(lease)
            results.put((rnd, lease.token, ok, os.getpid()))
        barrier.wait()


def holder_main() -> None:
    """``python -m tests.lock._workers HOST PROJECT STACK TTL``: acquire, heartbeat, wait to
    be killed. Prints the token once acquired."""
    host, project, stack, ttl = sys.argv[1:5]
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


if __name__ == "__main__":
    holder_main()
