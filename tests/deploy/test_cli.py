"""The ``deploy`` and ``drift`` console scripts, run as CI runs them (a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from infra.paths import REPO_ROOT
from scripts.deploy import (
    Deployment,
    DeploymentHistory,
    DeployOutcome,
    Result,
    new_deployment_id,
)

ROOT = REPO_ROOT
NO_PULUMI = shutil.which("pulumi") is None


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "FIRESTORE_EMULATOR_HOST")
    }
    base.update({"NO_GCE_CHECK": "true", "COLUMNS": "200", **(env or {})})
    module = "scripts.drift_cli" if args[0] == "drift" else "scripts.deploy_cli"
    return subprocess.run(
        [sys.executable, "-c", f"from {module} import main; main()", *args[1:]],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _msg(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"


@pytest.mark.parametrize(
    "cmd",
    [
        ["deploy", "--help"],
        ["deploy", "history", "--help"],
        ["deploy", "rollback", "--help"],
        ["drift", "--help"],
    ],
)
def test_help_documents_the_exit_codes(cmd):
    p = run(*cmd)
    assert p.returncode == 0, _msg(p)
    assert "Exit codes" in p.stdout and "64" in p.stdout, _msg(p)


@pytest.mark.parametrize(
    "cmd",
    [
        ["deploy", "--stack", "prod", "--bogus"],
        ["deploy", "--dry-run"],
        ["deploy", "--stack", "prod", "--dry-run", "--builder", "kaniko"],
        ["deploy", "--stack", "prod"],  # not a terminal and no --yes
        ["deploy", "rollback", "--stack", "prod"],
        ["drift", "--bogus"],
        ["drift", "--stack", "local"],
    ],
)
def test_usage_errors_exit_64_never_2(cmd):
    p = run(*cmd)
    assert p.returncode == 64, _msg(p)


@pytest.mark.skipif(not NO_PULUMI, reason="a pulumi CLI is installed here")
def test_dry_run_passes_preflight_then_stops_at_tooling_with_the_clear_message():
    p = run("deploy", "--stack", "prod", "--dry-run", "--json")
    assert p.returncode == 1, _msg(p)
    out = json.loads(p.stdout)
    steps = [(s["name"], s["status"]) for s in out["steps"]]
    assert steps[:3] == [("preflight", "ok"), ("tooling", "failed"), ("lock", "skipped")], out
    assert "pulumi CLI" in out["error"] and "get.pulumi.com" in out["error"]
    assert "GCP credentials" in out["error"]


@pytest.mark.skipif(not NO_PULUMI, reason="a pulumi CLI is installed here")
def test_drift_without_tooling_is_an_error_not_no_drift():
    p = run("drift", "--stack", "prod")
    assert p.returncode == 1, _msg(p)
    assert "pulumi CLI" in p.stderr


@pytest.mark.emulator
def test_history_and_rollback_read_the_records(firestore_emulator, firestore_db):
    history = DeploymentHistory(firestore_db)
    dep = history.start(
        Deployment(id=new_deployment_id("prod"), stack="prod", commit="a" * 40, who="alice")
    )
    history.finish(dep.id, Result.SUCCEEDED, images={"prediction-worker": "r/w@sha256:" + "1" * 64})
    env = {
        "FIRESTORE_EMULATOR_HOST": firestore_emulator.host,
        "DEPLOY_LOCK_PROJECT": "demo-test",
        "DEPLOY_LOCK_DATABASE": "(default)",
    }

    p = run("deploy", "history", "--stack", "prod", "--json", env=env)
    assert p.returncode == 0, _msg(p)
    (listed,) = json.loads(p.stdout)["deployments"]
    assert listed["id"] == dep.id and listed["result"] == "succeeded"

    p = run("deploy", "history", "--stack", "prod", env=env)
    assert p.returncode == 0 and dep.id in p.stdout and "alice" in p.stdout, _msg(p)

    p = run("deploy", "rollback", "--stack", "prod", "--to", "previous", "--yes", env=env)
    assert p.returncode == 1 and "no previous one" in p.stderr, _msg(p)


def test_the_human_output_shows_the_check_the_traffic_steps_the_rollback_and_warnings():
    from scripts.cli_common import ExitCode, console
    from scripts.deploy_cli import _render
    from scripts.rollout import CheckPolicy, judge_check

    check = judge_check(
        CheckPolicy(),
        batch_id="synthetic-1",
        status={"state": "completed", "completed": 20, "failed": 0},
        dead_lettered=0,
        elapsed_s=12.5,
    )
    step = {"percent": 10, "samples": [{"requests": 250, "error_rate": 0.08}], "breach": "8%"}
    outcome = DeployOutcome(
        "prod",
        exit_code=ExitCode.ERROR,
        error="traffic step 10% breached",
        check=check,
        rollout=[
            {
                "service": "prediction-worker",
                "candidate": "prediction-worker-00003-new",
                "previous": "prediction-worker-00002-old",
                "ok": False,
                "steps": [step],
                "error": "5xx share 8% > 1%",
                "restored": True,
            }
        ],
        warnings=["webhook: failed not delivered: webhook answered HTTP 500"],
        rolled_back_to="prod-good",
        rollback_record=Deployment(id="prod-rb", stack="prod", commit="b" * 40, who="ci"),
    )
    with console.capture() as captured:
        _render(outcome, as_json=False)
    text = " ".join(captured.get().split())
    assert "check: completed: 20/20 predicted (100%), 0 failed, 0 dead-lettered" in text, text
    assert "rollout prediction-worker -> prediction-worker-00003-new: 10% (250 req" in text
    assert "traffic restored to prediction-worker-00002-old: 5xx share 8% > 1%" in text
    assert "rolled back automatically to prod-good (record prod-rb, commit bbbbbbbbbbbb)" in text
    assert "warning: webhook: failed not delivered: webhook answered HTTP 500" in text
