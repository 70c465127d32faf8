"""`deploy --stack local`: the whole pipeline on this machine, lock and history included,
against the local platform (emulators, services from their Dockerfile CMD)."""

from __future__ import annotations

import pytest

from infra.paths import REPO_ROOT as ROOT
from scripts.cli_common import ExitCode
from scripts.deploy import (
    DeployLockLocker,
    DeploymentHistory,
    DeployRequest,
    GitRepo,
    LocalTarget,
    Result,
    run_deploy,
)
from scripts.deploy._preflight import PlanPreflight
from scripts.deploylock import DEFAULT_DATABASE, DeployLock
from scripts.emulators import EmulatorUnavailable
from scripts.local import LocalPlatform, NotRunning, running_firestore
from tests.deploy.doubles import RecordingReporter

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
