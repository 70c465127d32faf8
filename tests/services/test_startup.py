"""Missing configuration stops a service at start-up with one message listing everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from infra.build_context import REPO_ROOT
from shared.contract import CONTRACTS, MissingEnvironment
from shared.startup import EX_CONFIG, ConfigError


@pytest.mark.parametrize(
    ("service", "module"),
    [
        ("prediction-coordinator", "services.coordinator.main"),
        ("prediction-worker", "services.worker.main"),
    ],
)
def test_uvicorn_start_without_env_exits_78_with_one_message(service, module):
    """Started the way the image's CMD starts it, in an empty environment."""
    env = {"PATH": os.environ["PATH"], "PORT": "0", "NO_GCE_CHECK": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == EX_CONFIG, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert len(errors) == 1, proc.stderr
    line = json.loads(errors[0])
    contract = CONTRACTS[service]
    assert line["missing"] == list(contract.all_required)
    for name in contract.all_required:
        assert name in line["message"]
    assert "Traceback" not in proc.stderr


def test_create_app_raises_with_every_missing_variable():
    from services.coordinator.app import create_app

    app = create_app(environ={"GCP_PROJECT_ID": "p"})
    with pytest.raises(MissingEnvironment) as info, TestClient(app):
        pass
    assert info.value.missing == ["REQUEST_TOPIC", "COORDINATOR_API_KEY"]


def test_bad_optional_values_are_reported_together():
    from services.coordinator.settings import Settings

    env = {
        "GCP_PROJECT_ID": "p",
        "REQUEST_TOPIC": "t",
        "COORDINATOR_API_KEY": "k",
        "STALL_IDLE_SECONDS": "soon",
        "STALL_MAX_ATTEMPTS": "0",
    }
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert len(info.value.problems) == 2


def test_optional_windows_shorten_the_stall_policy():
    from services.coordinator.settings import Settings

    env = {
        "GCP_PROJECT_ID": "p",
        "REQUEST_TOPIC": "t",
        "COORDINATOR_API_KEY": "k",
        "STALL_IDLE_SECONDS": "2",
        "BATCH_MAX_AGE_SECONDS": "60",
        "STALL_MAX_ATTEMPTS": "5",
        "STUCK_AFTER_SECONDS": "30",
    }
    policy = Settings.from_env(env).policy
    assert policy.idle_window.total_seconds() == 2 and policy.max_age.total_seconds() == 60
    assert policy.max_attempts == 5 and policy.stuck_after.total_seconds() == 30


def test_every_variable_the_services_read_is_in_their_contract():
    """The program sets env from the contract: a variable read but not declared is never set."""
    import re

    for service, folder in (
        ("prediction-coordinator", "coordinator"),
        ("prediction-worker", "worker"),
    ):
        contract = CONTRACTS[service]
        declared = set(contract.all_required + contract.optional)
        read = set()
        for path in (REPO_ROOT / "services" / folder).glob("*.py"):
            text = path.read_text()
            read |= set(re.findall(r'env(?:iron)?(?:\.get)?[\[(]"([A-Z_][A-Z0-9_]+)"', text))
        assert read and read <= declared, f"{service}: reads {sorted(read - declared)}"


def test_the_contract_says_which_services_use_firestore():
    """The program grants datastore.user from this flag: it must match what the code imports."""
    import re

    for service, folder in (
        ("prediction-coordinator", "coordinator"),
        ("prediction-worker", "worker"),
    ):
        code = "\n".join(p.read_text() for p in (REPO_ROOT / "services" / folder).glob("*.py"))
        uses = bool(re.search(r"google\.cloud\s+import\s+firestore|shared\.batch_store", code))
        assert CONTRACTS[service].uses_firestore == uses, service
