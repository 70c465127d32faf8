"""Processes in their own session, known by pid and start time, stopped as a tree (psutil).

Every process started here runs in a new session (process group) with its output appended to
a log file. A :class:`ProcRecord` names it by pid **and** start time, so another shell
(``platform local down``) never signals a recycled pid. Records this interpreter owns are
stopped by an atexit hook (tests, Ctrl-C) unless :func:`disown` ed (``platform local up``
leaves them running on purpose); a process started with ``die_with_parent`` is also stopped by
the kernel when this process dies, even by SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

#: SIGTERM, then this long, then SIGKILL (Cloud Run gives a container 10 s after SIGTERM).
STOP_GRACE_S = 10.0
#: Two start times this close are one process: psutil derives them from the boot time the
#: kernel reports, which moves by up to a second when the wall clock is stepped.
_SAME_START_S = 1.0
_HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return s.getsockname()[1]


def tail(path: str | Path, limit: int = 3000) -> str:
    """The last ``limit`` characters of a log, or a note that it is empty or unreadable."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return text[-limit:] if text.strip() else "(log is empty)"


@dataclass(frozen=True)
class ProcRecord:
    name: str
    pid: int
    started: float | None  # psutil's create_time(); None if unknown
    log: str
    cmd: tuple[str, ...] = ()
    port: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cmd"] = list(self.cmd)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProcRecord:
        return cls(
            name=d["name"],
            pid=int(d["pid"]),
            started=d.get("started"),
            log=d.get("log", ""),
            cmd=tuple(d.get("cmd") or ()),
            port=d.get("port"),
        )


_OWNED: dict[int, ProcRecord] = {}
#: Our own children, to reap: a child that exited stays a zombie until waited for.
_POPEN: dict[int, subprocess.Popen] = {}
_LOCK = threading.Lock()


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGTERM the child when its parent dies.

    ``atexit`` does not run when the parent is SIGKILLed (a CI time-out, ``timeout -s KILL``)
    and the child, in its own session, would live on: orphaned emulators were seen here.
    Linux only (prctl ``PR_SET_PDEATHSIG``; psutil has no equivalent); elsewhere None. libc is
    loaded here, in the parent: the child between fork and exec only makes one call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


def launch(
    cmd: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> subprocess.Popen:
    """Start ``cmd`` in a new session, output appended to ``log_path`` (``env``: exactly this
    environment; default inherited). ``die_with_parent``: see :func:`_die_with_parent`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(cmd),
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() reaches what it leaves behind
            preexec_fn=_die_with_parent() if die_with_parent else None,
        )


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def track(
    name: str, proc: subprocess.Popen, *, log: Path, port: int | None = None, owned: bool = True
) -> ProcRecord:
    """A record of ``proc`` (started by :func:`launch`); ``owned``: stopped when this
    interpreter exits unless :func:`disown` ed."""
    record = ProcRecord(
        name=name,
        pid=proc.pid,
        started=_started(proc.pid),
        log=str(log),
        cmd=tuple(str(a) for a in proc.args),
        port=port,
    )
    with _LOCK:
        _POPEN[record.pid] = proc
        if owned:
            _OWNED[record.pid] = record
    return record


def spawn(
    name: str,
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    port: int | None = None,
) -> ProcRecord:
    """:func:`launch` with exactly ``env``, then :func:`track` (owned)."""
    proc = launch(cmd, log_path=log_path, env=env, cwd=cwd)
    return track(name, proc, log=log_path, port=port)


def own(record: ProcRecord) -> None:
    """Stop this (already running) process when this interpreter exits."""
    with _LOCK:
        _OWNED[record.pid] = record


def disown(records: Sequence[ProcRecord]) -> None:
    """Leave these processes running when this interpreter exits."""
    with _LOCK:
        for r in records:
            _OWNED.pop(r.pid, None)


def _same(record: ProcRecord) -> psutil.Process | None:
    """The process of ``record`` if its pid still names it (same start time), zombie or not."""
    proc = _POPEN.get(record.pid)
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.poll()  # reap our own exited child
    try:
        p = psutil.Process(record.pid)
        if record.started is not None and abs(p.create_time() - record.started) > _SAME_START_S:
            return None  # the pid was recycled
        return p
    except psutil.Error:
        return None


def _running(p: psutil.Process | None) -> bool:
    try:
        return p is not None and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def alive(record: ProcRecord) -> bool:
    """Whether the process of ``record`` (same pid, same start time) is still running."""
    return _running(_same(record))


def _tree(p: psutil.Process) -> list[psutil.Process]:
    try:
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return [p]


def _signal_all(procs: Sequence[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)


def _sweep_group(pgid: int) -> None:
    """SIGKILL what is left of the session's group: a child whose parent died is re-parented
    out of the tree, and only its process group still names it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _forget(pid: int) -> None:
    with _LOCK:
        _OWNED.pop(pid, None)
        proc = _POPEN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


def stop(record: ProcRecord, *, grace: float = STOP_GRACE_S, sig: int = signal.SIGTERM) -> bool:
    """Signal the process and its descendants, wait up to ``grace`` s, then SIGKILL what is
    left (the tree, and the group the tree started in). Idempotent.

    Returns whether anything was running. A record whose pid now belongs to another process
    (start time differs) is left alone.
    """
    p = _same(record)
    was_alive = _running(p)
    if was_alive:
        tree = _tree(p)
        _signal_all(tree, sig)
        _gone, left = psutil.wait_procs(tree, timeout=grace)
        _signal_all(left, signal.SIGKILL)
    if p is not None or record.started is None:
        _sweep_group(record.pid)
    _forget(record.pid)
    return was_alive


def kill(record: ProcRecord) -> None:
    """SIGKILL the process, its descendants and its group at once (a crash, for tests)."""
    p = _same(record)
    if p is not None:
        _signal_all(_tree(p), signal.SIGKILL)
        _sweep_group(record.pid)
    proc = _POPEN.get(record.pid)
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


def rss_kib(pid: int) -> int | None:
    """The process's resident memory now, KiB."""
    try:
        return psutil.Process(pid).memory_info().rss // 1024
    except psutil.Error:
        return None


def peak_rss_kib(pid: int) -> int | None:
    """The kernel's high-water mark of the process's resident memory (``VmHWM``), KiB.

    Read from ``/proc`` by hand: psutil reports current memory only, not the peak.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@atexit.register
def _stop_owned() -> None:
    with _LOCK:
        records = list(_OWNED.values())
    for r in records:
        with contextlib.suppress(Exception):
            stop(r, grace=3.0)
