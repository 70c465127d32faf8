"""Process supervision shared by the services, the emulators and the scheduler.

Every process the local platform starts runs in its own session (process group), so stopping
it reaches its children (uvicorn's workers, the emulator's JVM). A :class:`ProcRecord` names a
process by pid **and** its kernel start time, so another shell (``platform local down``) never
signals a recycled pid. In-process owners register their records in :data:`_OWNED`; an atexit
hook stops whatever is still owned when the interpreter exits (tests, Ctrl-C), unless the
owner :func:`disown` s them (``platform local up`` leaves them running on purpose).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ProcRecord",
    "spawn",
    "free_port",
    "stop",
    "alive",
    "peak_rss_kib",
    "rss_kib",
    "disown",
    "tail",
    "STOP_GRACE_S",
]

#: SIGTERM, then this long, then SIGKILL (Cloud Run gives a container 10 s after SIGTERM).
STOP_GRACE_S = 10.0
_HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return s.getsockname()[1]


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


@dataclass(frozen=True)
class ProcRecord:
    name: str
    pid: int
    start_ticks: int | None
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
            start_ticks=d.get("start_ticks"),
            log=d.get("log", ""),
            cmd=tuple(d.get("cmd") or ()),
            port=d.get("port"),
        )


_OWNED: dict[int, ProcRecord] = {}
_POPEN: dict[int, subprocess.Popen] = {}
_LOCK = threading.Lock()


def _own(record: ProcRecord, proc: subprocess.Popen | None = None) -> None:
    with _LOCK:
        _OWNED[record.pid] = record
        if proc is not None:
            _POPEN[record.pid] = proc


def disown(records: Sequence[ProcRecord]) -> None:
    """Leave these processes running when this interpreter exits."""
    with _LOCK:
        for r in records:
            _OWNED.pop(r.pid, None)


def adopt(name: str, proc: subprocess.Popen, *, log: Path, port: int | None = None) -> ProcRecord:
    """A record of ``proc``, started elsewhere (an emulator): stopped when this interpreter
    exits, unless :func:`disown` ed."""
    record = ProcRecord(
        name=name,
        pid=proc.pid,
        start_ticks=_start_ticks(proc.pid),
        log=str(log),
        cmd=tuple(proc.args),
        port=port,
    )
    _own(record, proc)
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
    """Start ``cmd`` in a new session with exactly ``env``, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            env=dict(env),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = ProcRecord(
        name=name,
        pid=proc.pid,
        start_ticks=_start_ticks(proc.pid),
        log=str(log_path),
        cmd=tuple(cmd),
        port=port,
    )
    _own(record, proc)
    return record


def _reap(pid: int) -> None:
    proc = _POPEN.get(pid)
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.poll()


def alive(record: ProcRecord) -> bool:
    """Whether the process of ``record`` (same pid, same start time) is still running."""
    _reap(record.pid)
    ticks = _start_ticks(record.pid)
    if ticks is None:
        return False
    if record.start_ticks is not None and ticks != record.start_ticks:
        return False  # the pid was recycled
    try:
        state = Path(f"/proc/{record.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of our own children still count for killpg(0): reap before deciding.
    proc = _POPEN.get(pgid)
    if proc is not None and proc.poll() is not None:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
    return True


def stop(record: ProcRecord, *, grace: float = STOP_GRACE_S, sig: int = signal.SIGTERM) -> bool:
    """Signal the process group, wait up to ``grace`` s, then SIGKILL it. Idempotent.

    Returns whether anything was running. A record whose pid now belongs to another process
    (start time differs) is left alone.
    """
    was_alive = alive(record)
    with _LOCK:
        _OWNED.pop(record.pid, None)
    if was_alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(record.pid):
            time.sleep(0.05)
    if record.start_ticks is None or was_alive or _start_ticks(record.pid) == record.start_ticks:
        # Sweep the group: the leader may be gone while a child (a JVM) lingers.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
    proc = _POPEN.pop(record.pid, None)
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
    return was_alive


def kill(record: ProcRecord) -> None:
    """SIGKILL the process group at once (a crash, for tests)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pid, signal.SIGKILL)
    proc = _POPEN.get(record.pid)
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_kib(pid: int) -> int | None:
    """The kernel's high-water mark of the process's resident memory (``VmHWM``)."""
    return _status_kib(pid, "VmHWM")


def rss_kib(pid: int) -> int | None:
    return _status_kib(pid, "VmRSS")


def tail(path: str | Path, limit: int = 3000) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return text[-limit:] if text.strip() else "(log is empty)"


@atexit.register
def _stop_owned() -> None:
    with _LOCK:
        records = list(_OWNED.values())
    for r in records:
        with contextlib.suppress(Exception):
            stop(r, grace=3.0)
