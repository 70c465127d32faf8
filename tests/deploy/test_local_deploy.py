"""`deploy --stack local`: the whole pipeline on this machine, lock and history included,
against the local platform (emulators, services from their Dockerfile CMD)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from infra.paths import REPO_ROOT as ROOT
from scripts.cli_common import ExitCode
from scripts.deploy import (
    DeployLockLocker,
    DeploymentHistory,
    DeployRequest,
    GitRepo,
    LocalTarget,
    PlanPreflight,
    Result,
    deploy_notifier,
    local_releases,
    run_deploy,
)
from scripts.deploylock import DEFAULT_DATABASE, DeployLock
from scripts.emulators import EmulatorUnavailable
from scripts.local import LocalPlatform, NotRunning, running_firestore
from scripts.notify import WEBHOOK_ENV
from shared.indexes import BATCHES_COLLECTION, ITEMS_SUBCOLLECTION
from tests.deploy.doubles import RecordingReporter

#: The webhook's path carries its credential (as a Slack incoming webhook's does).
HOOK_PATH = "/services/T000/B000/webhook-credential"

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]


def test_a_full_local_deploy_verifies_with_a_batch_records_and_releases(tmp_path):
    lp = LocalPlatform("prod", root=ROOT, state_dir=tmp_path / "local")
    try:
        try:
            lp.ensure_running()
        except EmulatorUnavailable as exc:
            pytest.skip(f"emulators unavailable: {exc}")
        project_before_plan = lp.firestore_client().project
        reporter = RecordingReporter()
        out = run_deploy(
            DeployRequest(stack="local", allow_dirty=True),
            target=LocalTarget(lp),
            preflight=lambda _stack: PlanPreflight(ROOT)("prod"),
            locker=DeployLockLocker(who="tester"),
            repo=GitRepo(ROOT),
            reporter=reporter,
        )
        assert out.exit_code == ExitCode.OK, (out.error, reporter.steps, reporter.lines[-20:])
        assert any("synthetic batch" in line and "completed" in line for line in reporter.lines)
        # What `deploy history --stack local` and `deploy-lock status --stack local` read: the
        # running platform's Firestore, in the one project it had before the plan and after.
        client = running_firestore(DEFAULT_DATABASE, state_dir=tmp_path / "local")
        assert client.project == project_before_plan == lp.firestore_client().project
        records = DeploymentHistory(client).list("local")
        raw = [d.to_dict() for d in client.collection("deployments").stream()]
        assert len(records) == 1, (out.deployment.id, raw, client.project)
        (record,) = records
        assert record.result == Result.SUCCEEDED and record.check["ok"], record.check
        assert record.commit == GitRepo(ROOT).head() and record.lock_token == 1
        lock = DeployLock(client, stack="local")
        assert not lock.status().held
        assert [e.event for e in reversed(lock.history(10))] == ["acquire", "release"]
    finally:
        lp.down(quiet=True)
    with pytest.raises(NotRunning):
        running_firestore(DEFAULT_DATABASE, state_dir=tmp_path / "local")


#: The first line of RecencyWeightedMean.predict, and what the broken release puts before it.
PREDICT_BODY = '        status = str(payload.get("status") or "ACTIVE").upper()\n'
BROKEN = '        raise PermanentPredictionError("broken release: every item fails")\n'


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout.strip()


def _clone(tmp_path: Path) -> Path:
    """A throwaway clone of this project's committed tree: the code root the local platform
    runs commits of (the work tree here stays untouched)."""
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    for key, value in (("user.email", "dev@example.com"), ("user.name", "Dev")):
        _git(clone, "config", key, value)
    _git(clone, "config", "commit.gpgsign", "false")
    return clone


def test_a_broken_worker_is_caught_rolled_back_and_announced(tmp_path, http_server, monkeypatch):
    """Issue 16's done-when, on the emulators: a good deploy posts started then succeeded; a
    committed worker that fails every item makes the next deploy exit non-zero, post failed
    then rolled_back, and the platform serves the previous good code again."""
    clone = _clone(tmp_path)
    state = tmp_path / "local"
    monkeypatch.setenv(WEBHOOK_ENV, http_server.url + HOOK_PATH)
    lp = LocalPlatform("prod", root=clone, state_dir=state)

    def deploy() -> tuple[object, RecordingReporter]:
        reporter = RecordingReporter()
        out = run_deploy(
            DeployRequest(stack="local"),
            # What `deploy --stack local` runs (scripts.deploy.stack_adapters): release trees of the
            # deployed commit, and the notifier from the environment (no Secret Manager here).
            target=LocalTarget(lp, releases=local_releases(clone, lp)),
            preflight=lambda _stack: PlanPreflight(clone)("prod"),
            locker=DeployLockLocker(who="tester"),
            repo=GitRepo(clone),
            reporter=reporter,
            notifier_for=lambda info: deploy_notifier(info, secrets=None),
        )
        return out, reporter

    try:
        try:
            lp.ensure_running()
        except EmulatorUnavailable as exc:
            pytest.skip(f"emulators unavailable: {exc}")
        good_commit = GitRepo(clone).head()
        out, reporter = deploy()
        assert out.exit_code == ExitCode.OK, (out.error, reporter.steps, reporter.lines[-20:])
        assert [r.body["event"] for r in http_server.posted()] == ["started", "succeeded"]
        assert {r.path for r in http_server.posted()} == {HOOK_PATH}
        assert out.check.predicted == out.check.items, out.check
        good = out.deployment
        assert (state / "releases" / good_commit / ".complete").exists()
        # The check's batch and items are marked synthetic where the platform stores them.
        batch = lp.firestore_client().collection(BATCHES_COLLECTION).document(out.check.batch_id)
        assert batch.get().to_dict()["metadata"]["synthetic"] is True
        item_ids = [d.id for d in batch.collection(ITEMS_SUBCOLLECTION).stream()]
        assert len(item_ids) == out.check.items
        assert all(i.startswith("synthetic-") for i in item_ids), item_ids

        predictor = clone / "services" / "worker" / "predictor.py"
        text = predictor.read_text()
        assert text.count(PREDICT_BODY) == 1
        predictor.write_text(text.replace(PREDICT_BODY, BROKEN + PREDICT_BODY))
        _git(clone, "commit", "-q", "-am", "worker: every item fails (test)")
        broken_commit = GitRepo(clone).head()

        out, reporter = deploy()
        assert out.exit_code == ExitCode.ERROR, (out.error, reporter.steps)
        assert out.check is not None and out.check.predicted == 0, out.check
        assert out.check.failed == out.check.items, out.check
        assert "items predicted" in out.error, out.error
        assert out.rolled_back_to == good.id, (out.warnings, reporter.lines[-20:])
        events = [r.body for r in http_server.posted()]
        assert [e["event"] for e in events] == [
            "started",
            "succeeded",
            "started",
            "failed",
            "rolled_back",
        ]
        failed, rolled_back = events[-2:]
        assert failed["commit"] == broken_commit and "items predicted" in failed["error"]
        assert rolled_back["commit"] == good_commit and rolled_back["rollback_of"] == good.id
        assert HOOK_PATH not in json.dumps(out.to_dict(), default=str), "never the webhook URL"

        records = {
            r.id: r for r in DeploymentHistory(lp.firestore_client(DEFAULT_DATABASE)).list("local")
        }
        assert records[out.deployment.id].result == Result.FAILED
        assert records[out.deployment.id].rolled_back_by == out.rollback_record.id
        rollback = records[out.rollback_record.id]
        assert rollback.result == Result.SUCCEEDED and rollback.automatic
        assert rollback.commit == good_commit

        # The previous good code serves again: the worker runs from the good commit's tree,
        # and a batch through the platform is predicted.
        worker = psutil.Process(lp.service_record("prediction-worker").pid)
        assert worker.cwd() == str((state / "releases" / good_commit).resolve())
        after = lp.run_synthetic_batch(items=10, timeout=180)
        assert after["state"] == "completed", after
        assert after["completed"] == 10 and after["failed"] == 0, after
    finally:
        lp.down(quiet=True)


def test_the_cli_deploys_the_local_stack_and_announces_it(tmp_path, http_server):
    """`deploy --stack local --yes --json` as an operator runs it, from a checkout of its own
    (the clone: its code, its `.local/` state), with the webhook in the environment."""
    clone = _clone(tmp_path)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", WEBHOOK_ENV)
    }
    env.update({"NO_GCE_CHECK": "true", WEBHOOK_ENV: http_server.url + HOOK_PATH})
    try:
        p = subprocess.run(
            [sys.executable, "-c", "from scripts.deploy_cli import main; main()"]
            + ["--stack", "local", "--yes", "--json"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
        out = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
        tooling = [s for s in out.get("steps", []) if s["name"] == "tooling"]
        if tooling and tooling[0]["status"] == "failed" and "emulators" in tooling[0]["detail"]:
            pytest.skip(f"emulators unavailable: {tooling[0]['detail']}")
        assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        assert out["ok"] and out["check"]["ok"], out["check"]
        assert out["check"]["predicted"] == out["check"]["items"]
        assert out["deployment"]["commit"] == GitRepo(clone).head()
        rollout = [s for s in out["steps"] if s["name"] == "rollout"]
        assert rollout[0]["detail"] == "not applicable: one instance per service"
        assert [r.body["event"] for r in http_server.posted()] == ["started", "succeeded"]
        assert HOOK_PATH not in p.stdout + p.stderr, "the webhook URL is never printed"
        # The services run the deployed commit's tree, not the checkout's work tree.
        head = GitRepo(clone).head()
        assert (clone / ".local" / "releases" / head / ".complete").exists()
    finally:
        with contextlib.suppress(NotRunning):
            LocalPlatform.attach(clone / ".local").down(quiet=True)
