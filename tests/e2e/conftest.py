"""Fixtures for the local platform's tests: the prod topology on Google's emulators.

One platform per session (emulators, both services, the scheduler), stopped at the end
whatever happens. The prod stack's config is used unchanged except the push subscriptions'
retry backoff (1-2 s instead of 10-600 s, so a dead-letter takes seconds, not minutes) and the
coordinator's stall idle window (3 s, a local-only env override): same topology, shorter
clocks.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from infra.paths import REPO_ROOT
from scripts import emulators
from scripts.local import LocalPlatform

REPO = REPO_ROOT
PLATFORM_KEY = "prediction-platform:platform"
#: The coordinator's stall idle window in these tests (seconds).
IDLE_WINDOW_S = 3


def prod_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())["config"]


def fast_retry(config: dict[str, Any], *, min_s: int = 1, max_s: int = 2) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for topic in config[PLATFORM_KEY]["topics"].values():
        for sub in topic["subscriptions"]:
            sub["min_backoff_seconds"] = min_s
            sub["max_backoff_seconds"] = max_s
    return config


def _need_emulators() -> None:
    try:
        emulators._need_java()
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(f"emulators unavailable: {exc}")
    if not emulators.FIRESTORE_JAR.is_file() or not emulators.PUBSUB_LAUNCHER.is_file():
        pytest.skip("Google's Firestore/Pub/Sub emulators are not installed")


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    """The prod topology running locally (see the module docstring)."""
    _need_emulators()
    os.environ["NO_GCE_CHECK"] = "true"
    state = tmp_path_factory.mktemp("local-platform")
    lp = LocalPlatform(
        "prod",
        state_dir=state,
        config=fast_retry(prod_config()),
        service_env={"prediction-coordinator": {"STALL_IDLE_SECONDS": str(IDLE_WINDOW_S)}},
    )
    with lp:
        lp.up()
        yield lp
