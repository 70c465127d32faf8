"""The emulator helpers other tests rely on: start, client without env, wipe, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from infra.paths import REPO_ROOT
from scripts import emulators
from tests.polling import wait_for

pytestmark = pytest.mark.emulator

REPO = REPO_ROOT


def test_client_reaches_emulator_without_env(firestore_db, firestore_emulator):
    assert (
        "FIRESTORE_EMULATOR_HOST" not in os.environ
        or os.environ["FIRESTORE_EMULATOR_HOST"] != firestore_emulator.host
    )
    ref = firestore_db.collection("probe").document("a")
    ref.create({"x": 1})
    assert ref.get().to_dict() == {"x": 1}
    assert firestore_emulator.env() == {"FIRESTORE_EMULATOR_HOST": firestore_emulator.host}


def test_wipe_deletes_documents(firestore_db, firestore_emulator):
    firestore_db.collection("probe").document("a").create({"x": 1})
    firestore_emulator.wipe()
    assert not firestore_db.collection("probe").document("a").get().exists


def test_stopped_emulator_fails_fast():
    """A client pointed at a dead emulator errors within seconds, not the default ~49 s."""
    try:
        emu = emulators.start_firestore("demo-stop")
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(str(exc))
    # The first request to a cold emulator can take seconds on a loaded machine: warm it up
    # with the default deadline; the fast-failing client is what is under test, after stop.
    emulators.firestore_client(emu, "demo-stop").collection("c").document("d").set({})
    client = emulators.firestore_client(emu, "demo-stop", retry_deadline=2)
    assert client.collection("c").document("d").get().exists
    pid = emu.proc.pid
    emu.stop()
    assert not emu.running()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - RetryError or ServiceUnavailable
        client.collection("c").document("d").get()
    assert time.monotonic() - started < 6


def test_missing_jar_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setattr(emulators, "FIRESTORE_JAR", tmp_path / "nope.jar")
    with pytest.raises(emulators.EmulatorUnavailable, match="nope.jar"):
        emulators.start_firestore("x")


_PARENT = """
import sys, time
from scripts import emulators
emu = emulators.start_{kind}("demo-orphan", detached={detached})
print(emu.proc.pid, flush=True)
time.sleep(120)
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only a reaper is missing.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("kind", ["firestore", "pubsub"])
def test_an_emulator_dies_with_a_sigkilled_parent(kind):
    """atexit never runs on SIGKILL (a CI time-out): the kernel must still stop the JVM."""
    if not emulators.FIRESTORE_JAR.is_file() or not emulators.PUBSUB_LAUNCHER.is_file():
        pytest.skip("emulators not installed")
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT.format(kind=kind, detached=False)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        pid = int(parent.stdout.readline())
        assert _pid_alive(pid)
        parent.kill()
        parent.wait(10)
        wait_for(
            lambda: not _pid_alive(pid),
            timeout=15,
            interval=0.2,
            what=f"{kind} emulator {pid} to end with its SIGKILLed parent",
        )
    finally:
        parent.kill()


def test_a_detached_emulator_outlives_its_parent():
    """The local platform's emulators stay up after `platform local up` returns."""
    if not emulators.FIRESTORE_JAR.is_file():
        pytest.skip("emulators not installed")
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT.format(kind="firestore", detached=True)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    pid = int(parent.stdout.readline())
    try:
        parent.kill()
        parent.wait(10)
        time.sleep(1)
        assert _pid_alive(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
