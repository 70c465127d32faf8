"""``run_locked`` never lets its command overlap another holder, against Google's emulator.

Each test runs a real runner process (``tests.lock._workers run``: the library's supervisor
with a 6 s TTL, below the CLI's 10 s minimum so the suite waits seconds) whose command ticks
the shared clock into a file, then breaks the runner or Firestore and has another client
acquire. The proof of "zero overlap" is in the file: every reading the old command wrote is
earlier than the moment the other client *sent* the acquire that won (the grant itself happened
later still). The commands ignore SIGINT unless said otherwise, and start a grandchild that
leaves their process group and session: only SIGKILL of everything the command started stops
them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import psutil
import pytest

from scripts import emulators
from scripts.deploylock import DEFAULT_DATABASE, DeployLock, HolderInfo, clock
from tests.lock import _workers
from tests.polling import wait_for

from .conftest import REPO

pytestmark = pytest.mark.emulator

TTL = 6.0
GRACE = 2.0
OTHER = HolderInfo(who="other", host="test", pid=2)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Runner:
    """A runner process on ``host`` whose command ticks into ``ticks``."""

    def __init__(self, host: str, project: str, tmp_path, *, ignore_sigint: bool = True,
                 ttl: float = TTL, grace: float = GRACE) -> None:  # fmt: skip
        self.ticks = str(tmp_path / "ticks")
        argv = _workers.ticker_argv(self.ticks, ignore_sigint=ignore_sigint, escape=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lock._workers", "run", host, project, "prod",
             str(ttl), str(grace), "--", *argv],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "NO_GCE_CHECK": "true"},
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def wait_running(self, timeout: float = 60) -> None:
        """Until the command and its escaped grandchild both tick."""

        def ticking() -> bool:
            pids, ticks = _workers.read_ticks(self.ticks)
            if len(pids) == 2 and len(ticks) > 20:
                return True
            if self.proc.poll() is not None:
                pytest.fail(f"runner exited {self.proc.returncode}: {self.proc.stderr.read()}")
            return False

        wait_for(ticking, timeout=timeout, interval=0.05, what="the command to start ticking")

    def command_pids(self) -> list[int]:
        return _workers.read_ticks(self.ticks)[0]

    def last_tick(self) -> float:
        return max(_workers.read_ticks(self.ticks)[1])

    def cleanup(self) -> None:
        for pid in [self.proc.pid, *self.command_pids()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def start_runner(tmp_path):
    """``start_runner(emulator, ignore_sigint=True)``: a :class:`Runner` against ``emulator``
    whose command is ticking; killed with everything it started at the end of the test."""
    made: list[Runner] = []

    def start(emulator, *, ignore_sigint: bool = True) -> Runner:
        runner = Runner(emulator.host, emulator.project, tmp_path, ignore_sigint=ignore_sigint)
        made.append(runner)
        runner.wait_running()
        return runner

    yield start
    for r in made:
        r.cleanup()


def acquire_after(runner: Runner, lock: DeployLock, timeout: float):
    """Poll ``try_acquire`` until the other client wins (short sleeps: the test wants the
    earliest moment the lock can be had), assert the runner's command wrote nothing after
    that winning attempt was sent and none of its processes is left; return the lease."""

    def attempt() -> tuple[float, object] | None:
        sent = clock()
        try:
            lease = lock.try_acquire(OTHER)
        except Exception:  # noqa: BLE001 - Firestore resuming after SIGCONT: try again
            return None
        return None if lease is None else (sent, lease)

    sent, lease = wait_for(
        attempt,
        timeout=timeout,
        interval=0.05,
        what=lambda: f"the other client to acquire: {lock.status().describe()}",
    )
    assert_no_overlap(runner, sent)
    return lease


def assert_no_overlap(runner: Runner, acquired_sent: float) -> None:
    last = runner.last_tick()
    assert last < acquired_sent, (
        f"the old command ran {last - acquired_sent:.3f} s after the other client's acquire "
        "was sent"
    )
    for pid in runner.command_pids():
        assert not _alive(pid), f"command process {pid} outlived the lease"


def test_runner_sigkilled_its_command_dies_before_anyone_else_holds(
    firestore_emulator, make_lock, start_runner
):
    runner = start_runner(firestore_emulator)
    lock = make_lock(ttl=TTL)
    time.sleep(TTL * 0.6)  # past a renewal: the lease is kept alive
    assert lock.try_acquire(OTHER) is None
    runner.proc.send_signal(signal.SIGKILL)
    killed = clock()
    runner.proc.wait(10)
    lease = acquire_after(runner, lock, TTL * 3)
    # It ran until the runner died, then had the grace period (it ignores SIGINT) at most.
    assert killed - 0.5 < runner.last_tick() < killed + GRACE + 1.0
    assert lock.history(1)[0].event == "takeover"
    lock.release(lease)


def test_runner_sigstopped_past_the_ttl_command_ends_by_the_safe_time_and_it_exits_3(
    firestore_emulator, make_lock, start_runner
):
    runner = start_runner(firestore_emulator)
    lock = make_lock(ttl=TTL)
    runner.proc.send_signal(signal.SIGSTOP)
    stopped = clock()
    lease = acquire_after(runner, lock, TTL * 3)
    assert runner.last_tick() > stopped, "the command should run on until its deadline"
    runner.proc.send_signal(signal.SIGCONT)
    code = runner.proc.wait(30)
    stderr = runner.proc.stderr.read()
    assert code == 3, stderr
    assert "safe time" in stderr, stderr
    assert lock.status().holder.who == "other"  # the resumed runner took nothing back
    lock.release(lease)


def test_runner_obeying_sigint_is_stopped_early_enough_too(
    firestore_emulator, make_lock, start_runner
):
    runner = start_runner(firestore_emulator, ignore_sigint=False)
    lock = make_lock(ttl=TTL)
    runner.proc.send_signal(signal.SIGSTOP)
    lease = acquire_after(runner, lock, TTL * 3)
    runner.proc.send_signal(signal.SIGCONT)
    assert runner.proc.wait(30) == 3
    lock.release(lease)


def test_firestore_sigstopped_past_the_ttl(start_runner):
    """A partition: the runner cannot renew; its command must end before the lease can
    expire, and the other client takes over as soon as Firestore answers again."""
    try:
        emu = emulators.start_firestore("demo-partition")
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(str(exc))
    with emu:
        client = emulators.firestore_client(emu, emu.project, database=DEFAULT_DATABASE)
        lock = DeployLock(client, stack="prod", ttl=timedelta(seconds=TTL))
        deadline = time.monotonic() + 60
        warm = 0
        while warm < 5:  # a fresh JVM answers its first calls slowly: warm up every call
            try:
                lock.release(lock.acquire(OTHER))
                lock.history(5)
                warm += 1
            except Exception:
                if time.monotonic() > deadline:
                    raise
        runner = start_runner(emu)
        os.kill(emu.proc.pid, signal.SIGSTOP)
        stopped = clock()
        try:
            time.sleep(TTL + 1)  # the lease expires by Firestore's clock meanwhile
        finally:
            os.kill(emu.proc.pid, signal.SIGCONT)
        lease = acquire_after(runner, lock, TTL * 4)
        assert runner.last_tick() > stopped
        code = runner.proc.wait(30)
        assert code == 3, runner.proc.stderr.read()
        lock.release(lease)


def test_force_release_frees_the_lock_only_once_the_command_stopped(
    firestore_emulator, make_lock, start_runner
):
    runner = start_runner(firestore_emulator)
    lock = make_lock(ttl=TTL)
    displaced = lock.force_release(reason="deploy hung", by=HolderInfo(who="ops", host="h", pid=3))
    assert displaced is not None and displaced.holder.command
    forced = clock()
    assert lock.status().revoked
    lease = acquire_after(runner, lock, TTL * 3)
    assert runner.last_tick() > forced, "the command should have been running when forced"
    code = runner.proc.wait(30)
    stderr = runner.proc.stderr.read()
    assert code == 3, stderr
    assert "force-released by ops: deploy hung" in stderr, stderr
    events = [(e.event, e.token) for e in reversed(lock.history(50)) if e.event != "renew"]
    # Freed by the holder's release once its command stopped, or, if that came later than
    # the lease's expiry, taken over: either way only after the command was gone.
    assert events in (
        [("acquire", 1), ("force-release", 1), ("release", 1), ("acquire", 2)],
        [("acquire", 1), ("force-release", 1), ("takeover", 2)],
    ), events
    force = next(e for e in lock.history(50) if e.event == "force-release")
    assert force.previous_holder.command and force.by == "ops"
    lock.release(lease)
