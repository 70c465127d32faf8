"""The emulator helpers other tests rely on: start, client without env, wipe, stop."""

from __future__ import annotations

import os
import time

import pytest

from scripts import emulators

pytestmark = pytest.mark.emulator


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
    client = emulators.firestore_client(emu, "demo-stop", retry_deadline=2)
    client.collection("c").document("d").create({})
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
