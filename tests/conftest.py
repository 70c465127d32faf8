"""Root fixtures: Google's Firestore and Pub/Sub emulators, started once per session.

Only emulator fixtures live here; each test package keeps its own fixtures in its conftest.
The emulators are started lazily (only when a test asks for them) and skipped, with the reason,
only where the jar or Java is missing (:class:`scripts.emulators.EmulatorUnavailable`); any
other start failure is an error, with the emulator's log in the message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from scripts import emulators

# Credential lookup must not probe the GCE metadata server (a slow timeout off GCP).
os.environ["NO_GCE_CHECK"] = "true"

#: The project id the emulators are started for; any id works against an emulator.
EMULATOR_PROJECT = "demo-test"


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[emulators.FirestoreEmulator]:
    """A Firestore emulator for the whole session (project :data:`EMULATOR_PROJECT`)."""
    try:
        emu = emulators.start_firestore(EMULATOR_PROJECT)
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(f"Firestore emulator unavailable: {exc}")
    with emu:
        yield emu


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[emulators.PubSubEmulator]:
    """A Pub/Sub emulator for the whole session (project :data:`EMULATOR_PROJECT`)."""
    try:
        emu = emulators.start_pubsub(EMULATOR_PROJECT)
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(f"Pub/Sub emulator unavailable: {exc}")
    with emu:
        yield emu


@pytest.fixture
def firestore_db(firestore_emulator: emulators.FirestoreEmulator):
    """An official Firestore client on a freshly wiped emulator database."""
    firestore_emulator.wipe()
    client = emulators.firestore_client(firestore_emulator, firestore_emulator.project)
    try:
        yield client
    finally:
        client.close()
