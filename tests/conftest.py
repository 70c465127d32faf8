"""Root fixtures shared across test packages: Google's Firestore and Pub/Sub emulators, and the
prod/dev stacks evaluated offline, each started or evaluated once per session.

Fixtures used by one package live in that package's conftest. The emulators are started
lazily (only when a test asks for them) and skipped, with the reason, only where the jar or
Java is missing (:class:`scripts.emulators.EmulatorUnavailable`); any other start failure is
an error, with the emulator's log in the message.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from scripts import emulators
from scripts.plan import Plan, evaluate_stack, load_stack_file

# CI (CI=true) replays the same examples every run, so a landing is never decided by a random
# draw; developers' runs explore new ones (and keep failures in .hypothesis/ to replay).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

# Credential lookup must not probe the GCE metadata server (a slow timeout off GCP).
os.environ["NO_GCE_CHECK"] = "true"

#: The project id the emulators are started for; any id works against an emulator.
EMULATOR_PROJECT = "demo-test"


def _session_emulator(start, label):
    """Start one emulator for :data:`EMULATOR_PROJECT`; skip when it is not installed."""
    try:
        emu = start(EMULATOR_PROJECT)
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(f"{label} emulator unavailable: {exc}")
    with emu:
        yield emu


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[emulators.FirestoreEmulator]:
    """A Firestore emulator for the whole session (project :data:`EMULATOR_PROJECT`)."""
    yield from _session_emulator(emulators.start_firestore, "Firestore")


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[emulators.PubSubEmulator]:
    """A Pub/Sub emulator for the whole session (project :data:`EMULATOR_PROJECT`)."""
    yield from _session_emulator(emulators.start_pubsub, "Pub/Sub")


@pytest.fixture
def http_server() -> Iterator[Any]:
    """A loopback HTTP server recording every request (tests/loopback.py): webhooks, GitHub's
    API, a coordinator stand-in."""
    from tests.loopback import serve

    with serve() as server:
        yield server


@pytest.fixture
def firestore_db(firestore_emulator: emulators.FirestoreEmulator):
    """An official Firestore client on a freshly wiped emulator database."""
    firestore_emulator.wipe()
    client = emulators.firestore_client(firestore_emulator, firestore_emulator.project)
    try:
        yield client
    finally:
        client.close()


# Plans under Pulumi's mocks (program, rule and deploy tests). Each evaluation resets the mock
# runtime itself, so no test leaks state into another; a variant copies the raw config.
@pytest.fixture(scope="session")
def prod_plan() -> Plan:
    return evaluate_stack("prod", env={})


@pytest.fixture(scope="session")
def dev_plan() -> Plan:
    return evaluate_stack("dev", env={})


@pytest.fixture
def prod_config() -> dict[str, Any]:
    """A fresh, mutable copy of Pulumi.prod.yaml's config mapping."""
    return copy.deepcopy(load_stack_file("prod"))
