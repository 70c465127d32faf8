"""Fixtures shared by the deploy tests."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

FAKE_PULUMI = Path(__file__).with_name("fake_pulumi.py")


@pytest.fixture
def fake_pulumi(tmp_path, monkeypatch):
    """The stand-in CLI (``fake_pulumi.py``) first on PATH; returns a function listing its
    recorded invocations. ``FAKE_PULUMI_MODE`` (monkeypatch it) picks a documented failure."""
    bin_dir = tmp_path / "pulumi-bin"
    bin_dir.mkdir()
    exe = bin_dir / "pulumi"
    shutil.copy(FAKE_PULUMI, exe)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "pulumi-calls.jsonl"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()]

    return calls
