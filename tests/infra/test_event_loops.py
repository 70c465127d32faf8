"""The offline plan leaves no event loop for the interpreter to close at exit.

A loop left open is closed by its ``__del__`` during interpreter shutdown, after its self-pipe
socket may already be gone; that printed "Exception ignored in: BaseEventLoop.__del__ ...
ValueError: Invalid file descriptor: -1" at the end of ``make local`` about one run in three.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

from infra.paths import REPO_ROOT
from scripts.plan import evaluate_bootstrap


def _open_loops() -> list[asyncio.AbstractEventLoop]:
    gc.collect()
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed() and not o.is_running()
    ]


def test_a_plan_run_closes_every_event_loop_it_opened():
    before = {id(loop) for loop in _open_loops()}
    evaluate_bootstrap("prod")
    left = [loop for loop in _open_loops() if id(loop) not in before]
    assert left == [], f"{len(left)} event loop(s) left open by the offline plan: {left}"


def test_the_bootstrap_plan_command_prints_no_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "scripts.platform_cli", "bootstrap-plan"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr
