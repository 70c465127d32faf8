"""The watchdog of ``deploy-lock run``: the command's parent, holder of its deadline.

Started by :func:`scripts.deploylock.run_locked` (see the design in ``_run.py``) as
``python -I _watchdog.py CTL_FD REPORT_FD GRACE KILL_AT -- CMD...``, in its own session. It
starts the command (own session and process group, ``PR_SET_PDEATHSIG=SIGKILL``, this process
its child subreaper) and ends it, and every process it started, by the deadline, whatever the
runner does. Standard library only (psutil if importable): it must start fast and depend on
nothing that could fail.

Protocol, one ASCII line per message. Runner to watchdog, on ``CTL_FD``:

``D <kill_at>``
    the lease was renewed: the command may run until ``kill_at`` (:func:`clock` seconds).
``L``
    the lease is lost: stop the command now (SIGINT; SIGKILL after the grace, or at
    ``kill_at`` if sooner).
``S <signum>``
    the runner got this signal: forward it to the command's group, then the same schedule.

End of file on ``CTL_FD`` means the runner died (SIGKILL, OOM kill): stop as for ``L``.

Watchdog to runner, on ``REPORT_FD``: ``P <pid>`` (started), ``F <message>`` (could not
start), ``X <code> <why>`` (ended; ``code`` as a shell reports it, 128+N for signal N; ``why``
one of ``exited``, ``deadline``, ``lost``, ``signal``, ``orphaned``).

Without any message the command is told to stop (SIGINT) at ``kill_at - GRACE`` and killed at
``kill_at``: a runner that is stopped (SIGSTOP, Ctrl-Z) or starved no longer moves the deadline.
A deadline, once reached, is final: a renewal arriving after it changes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PR_SET_CHILD_SUBREAPER = 36
_IGNORED = (signal.SIGINT, signal.SIGHUP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
#: How long to wait for SIGKILLed processes to be reaped before giving up on them.
_REAP_TIMEOUT_S = 5.0


def clock() -> float:
    """Seconds on the clock that every deadline of the lock uses: ``CLOCK_BOOTTIME`` on Linux
    (monotonic, never stepped by NTP or an operator, and counting time the machine spent
    suspended, which ``CLOCK_MONOTONIC`` does not), else ``time.monotonic``. Shared by all
    processes of one machine, so the runner can hand deadlines to the watchdog."""
    return time.clock_gettime(_CLOCK)


_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _descendants() -> list:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a project dependency
        return []
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _kill_everything(pgid: int) -> None:
    """SIGKILL the command's process group and every descendant of this process: those that
    left the group (``setsid``) and orphans re-parented here (this process is their
    subreaper)."""
    _signal_group(pgid, signal.SIGKILL)
    for proc in _descendants():
        with contextlib.suppress(Exception):
            proc.kill()


class _Watchdog:
    def __init__(self, ctl_fd: int, report_fd: int, grace: float, kill_at: float) -> None:
        self.ctl_fd = ctl_fd
        self.report_fd = report_fd
        self.grace = grace
        self.kill_at = kill_at
        self.ctl_open = True
        self.why: str | None = None  # why the stop began
        self.stop_kill_at: float | None = None  # SIGKILL time once a stop began
        self.killed = False
        self.pid = 0
        self.status: int | None = None
        self._buf = b""

    def report(self, line: str) -> None:
        with contextlib.suppress(OSError):  # the runner may be gone
            os.write(self.report_fd, (line + "\n").encode())

    def start(self, argv: list[str]) -> bool:
        prctl = _prctl()
        if prctl is not None:
            prctl(_PR_SET_CHILD_SUBREAPER, 1)
        me = os.getpid()

        def preexec() -> None:
            # SIG_IGN survives exec: give the command the default handlers back.
            for sig in _IGNORED:
                signal.signal(sig, signal.SIG_DFL)
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != me:  # the watchdog died before the death signal was armed
                os.kill(os.getpid(), signal.SIGKILL)

        try:
            proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=preexec)
        except (OSError, subprocess.SubprocessError) as exc:
            self.report(f"F {exc}".replace("\n", " "))
            return False
        self.pid = proc.pid
        # Reaped by hand below (os.waitpid), also the orphans this subreaper adopts.
        proc.returncode = 0
        self.report(f"P {self.pid}")
        return True

    # -- the stop schedule ------------------------------------------------------------------

    def begin_stop(self, why: str, signum: int = signal.SIGINT) -> None:
        _signal_group(self.pid, signum)
        if self.why is None:
            self.why = why
            self.stop_kill_at = min(self.kill_at, clock() + self.grace)

    def kill_time(self) -> float:
        if self.stop_kill_at is None:
            return self.kill_at
        return min(self.kill_at, self.stop_kill_at)

    def on_message(self, line: str) -> None:
        parts = line.split()
        if not parts:
            return
        if parts[0] == "D" and len(parts) == 2:
            new = float(parts[1])
            # Final once reached, and only while no stop has begun.
            if self.why is None and clock() < self.kill_at and new > self.kill_at:
                self.kill_at = new
        elif parts[0] == "L":
            self.begin_stop("lost")
        elif parts[0] == "S" and len(parts) == 2:
            self.begin_stop("signal", int(parts[1]))

    def read_control(self) -> None:
        try:
            data = os.read(self.ctl_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.ctl_open = False
            self.begin_stop("orphaned")  # the runner died: nobody renews or releases now
            return
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self.on_message(line.decode(errors="replace"))

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> int:
        pidfd = os.pidfd_open(self.pid) if hasattr(os, "pidfd_open") else None
        while self.status is None:
            now = clock()
            if not self.killed and now >= self.kill_time():
                _kill_everything(self.pid)
                self.killed = True
                if self.why is None:
                    self.why = "deadline"
            elif self.why is None and now >= self.kill_at - self.grace:
                self.begin_stop("deadline")
            if self.killed:
                timeout = 0.2
            else:
                nxt = self.kill_time() if self.why is not None else self.kill_at - self.grace
                timeout = max(0.0, nxt - clock())
            fds = [self.ctl_fd] if self.ctl_open else []
            if pidfd is not None:
                fds.append(pidfd)
            else:  # pragma: no cover - Linux < 5.3
                timeout = min(timeout, 0.05)
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries select
                ready = []
            if self.ctl_fd in ready and self.ctl_open:
                self.read_control()
            self.reap()
        # The command's leader is gone; its group or adopted orphans may live on: end them.
        _kill_everything(self.pid)
        self._reap_all()
        status = self.status
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        self.report(f"X {code} {self.why or 'exited'}")
        return 0

    def _reap_all(self) -> None:
        deadline = clock() + _REAP_TIMEOUT_S
        while clock() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                _kill_everything(self.pid)
                time.sleep(0.01)


def main(argv: list[str]) -> int:
    ctl_fd, report_fd = int(argv[0]), int(argv[1])
    grace, kill_at = float(argv[2]), float(argv[3])
    if argv[4] != "--" or len(argv) < 6:
        raise SystemExit("usage: _watchdog.py CTL_FD REPORT_FD GRACE KILL_AT -- CMD...")
    # Signals are the runner's business (it tells us on the control pipe); job control must not
    # stop the deadline's keeper.
    for sig in _IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    os.set_blocking(ctl_fd, False)
    dog = _Watchdog(ctl_fd, report_fd, grace, kill_at)
    if not dog.start(argv[5:]):
        return 1
    return dog.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
