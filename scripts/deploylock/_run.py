"""Run a command while holding the lock: ``deploy-lock run -- CMD...``."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from ._errors import DeployLockError, LeaseLost
from ._lock import DeployLock, Heartbeat, WaitCallback
from ._model import HolderInfo, Lease

#: After the lease is lost (or run is asked to stop), the command gets SIGINT (SIGTERM when
#: run itself got SIGTERM), then this long to exit before SIGKILL.
DEFAULT_GRACE = timedelta(seconds=10)
#: Exit code when the lease was lost while the command ran (the CLI's LOCK_HELD).
EXIT_LEASE_LOST = 3
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class CommandNotStarted(DeployLockError):
    """The command could not be started (not found, not executable); the lock was released."""


class _Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        self.signum = signum


def run_locked(
    lock: DeployLock,
    argv: Sequence[str],
    *,
    holder: HolderInfo | None = None,
    wait: timedelta | float = 0,
    grace: timedelta = DEFAULT_GRACE,
    on_wait: WaitCallback | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> int:
    """Acquire the lock, run ``argv`` with a heartbeat, release on every way out.

    The command runs in its own session and process group; SIGINT, SIGTERM and SIGHUP sent to
    this process are forwarded to that group, and the command is SIGKILLed if it has not
    exited ``grace`` later. If the heartbeat finds the lease lost, the command gets SIGINT,
    then SIGKILL after ``grace``. Must be called from the main thread (it installs signal
    handlers, restored on return).

    :returns: the command's exit code (128+N if killed by signal N), or 3 if the lease was lost
        while it ran (also when its release found it lost), or 128+N if a signal arrived before
        the command started.
    :raises LockHeld: as :meth:`DeployLock.acquire` (the command never ran).
    :raises LockUnavailable: Firestore unreachable before the command started.
    :raises CommandNotStarted: the command could not be started.
    """
    if not argv:
        raise DeployLockError("no command given to run")
    holder = holder or HolderInfo.detect(command=shlex.join(argv))
    child: subprocess.Popen[bytes] | None = None
    stop_deadline: float | None = None

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_deadline
        if child is None:
            raise _Interrupted(signum)
        log(f"received {signal.Signals(signum).name}: forwarding it to the command")
        _signal_group(child, signum)
        if stop_deadline is None:
            stop_deadline = time.monotonic() + grace.total_seconds()

    previous = {sig: signal.signal(sig, on_signal) for sig in _FORWARDED}
    hb: Heartbeat | None = None
    lease: Lease | None = None
    code: int | None = None
    try:
        try:
            lease = lock.acquire(holder, wait=wait, on_wait=on_wait)
            log(
                f"acquired the lock of stack {lock.stack!r} (token {lease.token}, "
                f"expires {lease.expires_at:%H:%M:%S} UTC unless renewed)"
            )
            hb = lock.heartbeat(lease).start()
            try:
                child = subprocess.Popen(list(argv), start_new_session=True)
            except OSError as exc:
                raise CommandNotStarted(f"cannot run {shlex.join(argv)}: {exc}") from exc
            code = _supervise(child, hb, grace, log, lambda: stop_deadline)
        except _Interrupted as exc:
            log(f"interrupted by {signal.Signals(exc.signum).name} before the command started")
            code = 128 + exc.signum
            if lease is None:
                lease = _find_own_lease(lock, holder)
    finally:
        # No more forwarding: from here on a second Ctrl-C must not skip the release.
        for sig in _FORWARDED:
            signal.signal(sig, signal.SIG_IGN)
        try:
            if hb is not None:
                hb.stop()
            if lease is not None:
                code = _release(lock, hb.lease if hb is not None else lease, log, code)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    assert code is not None
    return code


def _supervise(
    child: subprocess.Popen[bytes],
    hb: Heartbeat,
    grace: timedelta,
    log: Callable[[str], None],
    stop_deadline: Callable[[], float | None],
) -> int:
    lost_deadline: float | None = None
    killed = False
    while True:
        try:
            rc = child.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if hb.lost.is_set() and lost_deadline is None:
            log(
                f"{hb.error}: stopping the command (SIGINT, SIGKILL in {grace.total_seconds():g} s)"
            )
            _signal_group(child, signal.SIGINT)
            lost_deadline = now + grace.total_seconds()
        deadlines = [d for d in (lost_deadline, stop_deadline()) if d is not None]
        if deadlines and now > min(deadlines) and not killed:
            log("the command did not exit within the grace period: SIGKILL")
            _signal_group(child, signal.SIGKILL)
            killed = True
    # The command's group may still hold children that outlived it: end them too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    code = 128 - rc if rc < 0 else rc
    if hb.lost.is_set():
        return EXIT_LEASE_LOST
    return code


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signum)


def _release(lock: DeployLock, lease: Lease, log: Callable[[str], None], code: int | None) -> int:
    """Release ``lease``; return the exit code to use (3 if the lease turned out lost)."""
    try:
        if lock.release(lease):
            log(f"released the lock of stack {lock.stack!r} (token {lease.token})")
    except LeaseLost as exc:
        log(f"{exc}")
        return EXIT_LEASE_LOST
    except DeployLockError as exc:
        log(f"could not release the lock (it expires after its TTL): {exc}")
        return code if code else 1
    return code if code is not None else 1


def _find_own_lease(lock: DeployLock, holder: HolderInfo) -> Lease | None:
    """After an interrupt during acquire: the lease we may have been granted, if any."""
    with contextlib.suppress(DeployLockError):
        status = lock.status()
        if status.held and status.holder == holder:
            return lock.lease_for_token(status.token)
    return None
