"""Fixtures of the deploy-lock tests: locks and CLI environments on the session emulator."""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import pytest

from infra.paths import REPO_ROOT
from scripts import emulators
from scripts.deploylock import DEFAULT_DATABASE, DeployLock

REPO = REPO_ROOT
DEPLOY_LOCK = [sys.executable, "-m", "scripts.deploy_lock_cli"]


@pytest.fixture
def lock_db(firestore_db, firestore_emulator):
    """A client on the lock's own database (the one ``deploy-lock`` uses by default), wiped."""
    client = emulators.firestore_client(
        firestore_emulator, firestore_emulator.project, database=DEFAULT_DATABASE
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def make_lock(lock_db):
    """``make_lock(stack="prod", ttl=seconds)``: a DeployLock on the freshly wiped emulator."""

    def make(stack: str = "prod", ttl: float = 5.0, **kwargs) -> DeployLock:
        return DeployLock(lock_db, stack=stack, ttl=timedelta(seconds=ttl), **kwargs)

    return make


@pytest.fixture
def cli_env(lock_db, firestore_emulator) -> dict[str, str]:
    """Environment for running ``deploy-lock`` in a subprocess against the emulator."""
    return {
        **os.environ,
        **firestore_emulator.env(),
        "GOOGLE_CLOUD_PROJECT": firestore_emulator.project,
        "NO_GCE_CHECK": "true",
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",  # rich wraps at 80 columns otherwise: keep messages on one line
    }
