"""Run a command while holding the lock: ``deploy-lock run -- CMD...``.

The command must never run while another client holds the lease: not when this runner is
SIGKILLed, stopped (SIGSTOP, Ctrl-Z, a starved CI runner), cut off from Firestore, or
displaced by a force-release; not even when the command ignores SIGINT.

**Safe time.** The runner knows, by its own clock (:func:`clock`, ``CLOCK_BOOTTIME``), the last
moment its lease is certainly valid: the send time of its last confirmed renewal + TTL -
margin (:attr:`Lease.safe_until`; Firestore starts the TTL later, at its commit, and judges
expiry by its own clock, so the lease lives at least that long, up to clock-rate error, which
the margin covers). The command is told to stop (SIGINT) ``grace`` before the safe time and
killed (SIGKILL) at it, so it has *exited* before anyone else can acquire. The grace is spent
inside the TTL (:func:`max_grace`); every confirmed renewal pushes both moments out.

**A watchdog process holds that deadline**, not the runner. Process tree::

    runner (this process: holds the lease, heartbeats Firestore)
      └─ watchdog (_watchdog.py, own session; stdlib only)       ← deadline, renewed over a pipe
           └─ command (own session and process group, PR_SET_PDEATHSIG=SIGKILL)

Why a separate process: a deadline kept in the runner dies or freezes with it. SIGKILL runs no
handler, SIGSTOP freezes every thread, and ``PR_SET_PDEATHSIG`` alone (the kernel signalling
the command when its parent dies) covers neither a *stopped* runner nor the command's own
children in its group. The watchdog is in its own session, so Ctrl-Z or a signal to the
runner's process group does not freeze it; it is the command's parent and its child
subreaper, so it can reap, and kill, every process the command starts, also those that left the
group. It acts on what the runner stops doing, not on what the runner does:

- the runner is **SIGKILLed** (or dies any way): the control pipe reaches end of file; the
  watchdog stops the command at once (SIGINT, SIGKILL after the grace or at the deadline);
- the runner is **stopped**, or Firestore is **unreachable**: no renewal moves the deadline;
  the watchdog stops the command at the deadline, whatever the runner does. A runner that
  resumes later finds the command gone (the watchdog's report waits in the pipe) and exits 3;
- the lease is **lost** (a renewal or the revocation poll finds it superseded or
  force-released): the runner tells the watchdog to stop the command at once;
- the **watchdog** is SIGKILLed: the command's leader gets SIGKILL from the kernel
  (``PR_SET_PDEATHSIG``), and the runner, seeing the pipe close, kills the rest of its group;
  the watchdog is **stopped**: the runner kills the command's group itself at the deadline.

Only both processes frozen or killed at once (a suspended machine, a paused VM, a cgroup
freeze, ``kill -9`` of both) defeats this; see the README's lock table for what then remains.
The alternatives weighed: ``PR_SET_PDEATHSIG`` plus a deadline in the command's own parent
(the runner) fails on SIGSTOP; a PID namespace (all of it killed with its init) needs
privileges CI runners lack; a cgroup needs delegation. A watchdog is portable to any Linux,
costs one small process, and its failure modes are the runner's, mirrored.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from ._acquire import WaitCallback
from ._defaults import DEFAULT_GRACE, validate_grace
from ._errors import DeployLockError, LeaseLost
from ._heartbeat import Heartbeat
from ._holder import HolderInfo
from ._lock import DeployLock
from ._records import Lease
from ._watchdog import clock

#: Exit code when the lease was lost while the command ran, or the command was stopped to keep
#: within the lease's safe time (the CLI's LOCK_HELD).
EXIT_LEASE_LOST = 3
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_WATCHDOG = Path(__file__).with_name("_watchdog.py")
#: How long the runner waits for a report after killing the command itself (watchdog stuck).
_WATCHDOG_SILENT_S = 2.0

__all__ = ["DEFAULT_GRACE", "EXIT_LEASE_LOST", "CommandNotStarted", "run_locked"]


class CommandNotStarted(DeployLockError):
    """The command could not be started (not found, not executable); the lock was released."""


class _Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        self.signum = signum


class _WatchdogHandle:
    """The runner's end of the watchdog: control pipe out, report pipe in."""

    def __init__(self, argv: Sequence[str], grace: float, kill_at: float) -> None:
        ctl_r, ctl_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", str(_WATCHDOG), str(ctl_r), str(rep_w), repr(grace),
                 repr(kill_at), "--", *argv],
                pass_fds=(ctl_r, rep_w),
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(ctl_r)
            os.close(rep_w)
        self._ctl = ctl_w
        self._rep = rep_r
        self._buf = b""
        self._send_lock = threading.Lock()
        self.pid: int | None = None  # the command's pid (= its process group)

    def send(self, line: str) -> None:
        with self._send_lock, contextlib.suppress(OSError):  # the watchdog may be gone
            os.write(self._ctl, (line + "\n").encode())

    def read(self, timeout: float) -> str | None:
        """The next report line; ``""`` at end of file; None if none within ``timeout``."""
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self._rep], [], [], max(0.0, timeout))
            if not ready:
                return None
            data = os.read(self._rep, 4096)
            if not data:
                return ""
            self._buf += data
            timeout = 0
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def kill_command(self) -> None:
        """SIGKILL the command's group and every process under the watchdog (its backup)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        try:
            import psutil

            for proc in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        except Exception:  # noqa: BLE001 - psutil missing or the watchdog gone
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._ctl)
        with contextlib.suppress(OSError):
            os.close(self._rep)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_locked(
    lock: DeployLock,
    argv: Sequence[str],
    *,
    holder: HolderInfo | None = None,
    wait: timedelta | float = 0,
    grace: timedelta | float | None = None,
    on_wait: WaitCallback | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> int:
    """Acquire the lock, run ``argv`` under a watchdog that keeps it within the lease, release
    on every way out.

    The command is stopped (SIGINT, then SIGKILL ``grace`` later) so that it has exited by the
    lease's safe time, unless a renewal confirms the lease first; and at once (the same
    schedule) when the lease is lost or force-released, or when this process dies. SIGINT,
    SIGTERM and SIGHUP sent to this process are forwarded to the command's process group.
    Must be called from the main thread (it installs signal handlers, restored on return).

    :param grace: seconds the command gets between SIGINT and SIGKILL; at most
        :func:`~scripts.deploylock.max_grace` of the lock's TTL (None: the default, 10 s or
        less when the TTL cannot hold it).
    :returns: the command's exit code (128+N if killed by signal N), or 3 if the lease was lost
        while it ran, or it was stopped to stay within the lease (also when its release found
        the lease lost), or 128+N if a signal arrived before the command started.
    :raises InvalidLockConfig: ``grace`` does not fit in the TTL (before anything is done).
    :raises LockHeld: as :meth:`DeployLock.acquire` (the command never ran).
    :raises LockUnavailable: Firestore unreachable before the command started.
    :raises CommandNotStarted: the command could not be started.
    """
    if not argv:
        raise DeployLockError("no command given to run")
    grace_s = validate_grace(grace, lock.ttl).total_seconds()
    holder = holder or HolderInfo.detect(command=shlex.join(argv))
    dog: _WatchdogHandle | None = None

    def on_signal(signum: int, _frame: object) -> None:
        if dog is None:
            raise _Interrupted(signum)
        log(f"received {signal.Signals(signum).name}: forwarding it to the command")
        dog.send(f"S {signum}")

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
            dog = _WatchdogHandle(argv, grace_s, lease.safe_until)
            started = dog.read(30)
            if not started or not started.startswith("P "):
                why = started[2:] if started and started.startswith("F ") else "watchdog failed"
                dog.close()
                dog = None
                raise CommandNotStarted(f"cannot run {shlex.join(argv)}: {why}")
            dog.pid = int(started[2:])
            watchdog = dog

            def renewed(lease: Lease) -> None:
                watchdog.send(f"D {lease.safe_until!r}")

            def lost(exc: LeaseLost) -> None:
                log(f"{exc}: stopping the command (SIGINT, SIGKILL in {grace_s:g} s at most)")
                watchdog.send("L")

            hb = lock.heartbeat(
                lease, stop_before=timedelta(seconds=grace_s), on_lost=lost, on_renewed=renewed
            ).start()
            code = _supervise(dog, hb, lease, log)
        except _Interrupted as exc:
            log(f"interrupted by {signal.Signals(exc.signum).name} before the command started")
            code = 128 + exc.signum
    finally:
        # No more forwarding: from here on a second Ctrl-C must not skip the release.
        for sig in _FORWARDED:
            signal.signal(sig, signal.SIG_IGN)
        try:
            if hb is not None:
                hb.stop()
            if dog is not None:
                dog.close()
            if lease is not None:
                code = _release(lock, lease, log, code)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    assert code is not None
    return code


def _supervise(
    dog: _WatchdogHandle, hb: Heartbeat, lease: Lease, log: Callable[[str], None]
) -> int:
    """Wait for the watchdog's report; kill the command ourselves if the watchdog fails."""
    backup_killed_at: float | None = None
    while True:
        until_kill = lease.safe_until - clock()
        line = dog.read(min(0.5, max(0.0, until_kill)) if backup_killed_at is None else 0.2)
        if line is not None and line.startswith("X "):
            _, rc, why = line.split(maxsplit=2)
            break
        if line == "":
            dog.kill_command()
            log("the watchdog died: the command was killed")
            return 1
        now = clock()
        if backup_killed_at is None and now >= lease.safe_until:
            log("the watchdog did not stop the command by the safe time: SIGKILL")
            dog.kill_command()
            backup_killed_at = now
        elif backup_killed_at is not None and now - backup_killed_at > _WATCHDOG_SILENT_S:
            log("the watchdog does not answer: killing it")
            dog.proc.kill()
            return EXIT_LEASE_LOST
    if why == "deadline":
        log(
            "the command was stopped to end before the lease's safe time (no renewal "
            "confirmed in time)"
        )
    if why in ("deadline", "lost", "orphaned") or backup_killed_at is not None or hb.lost.is_set():
        return EXIT_LEASE_LOST
    return int(rc)


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
