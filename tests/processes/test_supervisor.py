"""scripts.processes on real processes: trees stopped, recycled pids left alone, memory read."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scripts import processes
from tests.polling import wait_for

#: A parent that starts a child and both sleep: the tree stop() must end.
_TREE = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print('ready', flush=True); time.sleep(60)"  # noqa: E501


def _spawn(tmp_path: Path, code: str, name: str = "p") -> processes.ProcRecord:
    return processes.spawn(
        name,
        [sys.executable, "-c", code],
        env={"PATH": os.environ.get("PATH", "")},
        cwd=tmp_path,
        log_path=tmp_path / f"{name}.log",
    )


def _children(rec: processes.ProcRecord) -> list[psutil.Process]:
    return psutil.Process(rec.pid).children(recursive=True)


def test_stop_ends_the_whole_tree_and_reports_it_was_running(tmp_path):
    rec = _spawn(tmp_path, _TREE)
    wait_for(
        lambda: "ready" in (tmp_path / "p.log").read_text(), timeout=10, interval=0.05, what="ready"
    )
    (child,) = _children(rec)
    assert processes.alive(rec)
    assert processes.stop(rec, grace=5) is True
    assert not processes.alive(rec)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
    with pytest.raises(ProcessLookupError):
        os.killpg(rec.pid, 0)
    assert processes.stop(rec) is False, "a second stop finds nothing running"


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"  # noqa: E501
    rec = _spawn(tmp_path, code)
    wait_for(
        lambda: "ready" in (tmp_path / "p.log").read_text(), timeout=10, interval=0.05, what="ready"
    )
    started = time.monotonic()
    assert processes.stop(rec, grace=0.5)
    assert not processes.alive(rec)
    assert time.monotonic() - started < 5


def test_a_record_with_another_start_time_is_a_recycled_pid_and_left_alone(tmp_path):
    rec = _spawn(tmp_path, "import time; time.sleep(60)")
    try:
        stale = dataclasses.replace(rec, started=rec.started - 3600)
        assert not processes.alive(stale)
        assert processes.stop(stale, grace=0.5) is False
        assert processes.alive(rec), "the live process with that pid was signalled"
    finally:
        processes.stop(rec, grace=1)


def test_a_record_survives_the_state_file_and_still_names_its_process(tmp_path):
    rec = _spawn(tmp_path, "import time; time.sleep(60)")
    try:
        again = processes.ProcRecord.from_dict(rec.to_dict())
        assert again == rec
        assert processes.alive(again)
        rss = processes.rss_kib(rec.pid)  # then the peak: a high-water mark read later
        assert processes.peak_rss_kib(rec.pid) >= rss > 0
    finally:
        processes.stop(rec, grace=1)


def test_kill_is_immediate_and_the_exited_child_is_not_alive(tmp_path):
    rec = _spawn(tmp_path, "import time; time.sleep(60)")
    processes.kill(rec)
    assert not processes.alive(rec)
    assert processes.rss_kib(rec.pid) is None


_PARENT = """
import sys, time
from pathlib import Path
from scripts import processes
from tests.polling import wait_for
proc = processes.launch([sys.executable, "-c", "import time; time.sleep(60)"],
                        log_path=Path(sys.argv[1]), die_with_parent=True)
print(proc.pid, flush=True)
time.sleep(60)
"""


def test_a_child_started_to_die_with_its_parent_dies_when_the_parent_is_sigkilled(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(tmp_path / "child.log")],
        stdout=subprocess.PIPE, text=True, cwd=repo,
    )  # fmt: skip
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        child.wait(timeout=10)  # raises TimeoutExpired if it outlived its parent
    finally:
        parent.kill()
