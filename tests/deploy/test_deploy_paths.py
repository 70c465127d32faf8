"""The two CI deploy paths, as far as this machine can prove them: image pushes authenticated
by the deploy identity's token, the image refs the program deployed verified on Cloud Run, and
the policy pack handed to the real engine (the Automation API driving a stand-in ``pulumi``)."""

from __future__ import annotations

import json

import pytest

import scripts.plan._stack as plan_stack
from infra.paths import REPO_ROOT
from policy.graph import T
from scripts.cli_common import ExitCode
from scripts.deploy import (
    CloudTarget,
    DeployLockLocker,
    DeployRequest,
    GitRepo,
    PreflightResult,
    deploy_engine,
    run_deploy,
    stack_info,
)
from scripts.plan import Plan, evaluate_stack
from tests.deploy.doubles import FakeInspector, FakeSyntheticCheck, FakeTooling, RecordingReporter
from tests.deploy.gitrepo import TempRepo

SECRET_SIG = "4dabf18193072939515e22adb298388d"


# --- Image pushes: the deploy identity's token on the docker-build Image ----------------------


def test_images_push_with_the_deploy_identitys_access_token_as_a_secret(monkeypatch):
    raw: dict[str, dict] = {}

    class Capturing(plan_stack.PlanMocks):
        def new_resource(self, args):
            if args.typ == T.IMAGE:
                raw[args.name] = dict(args.inputs)
            return super().new_resource(args)

    monkeypatch.setattr(plan_stack, "PlanMocks", Capturing)
    plan = evaluate_stack("prod", env={})
    assert set(raw) == {"prediction-coordinator-image", "prediction-worker-image"}
    for name, inputs in raw.items():
        registries = inputs.get("registries")
        # The whole credential is a secret: the token never lands in state or logs in clear.
        assert isinstance(registries, dict) and registries.get(SECRET_SIG), (name, registries)
        (registry,) = registries["value"]
        host = inputs["tags"][0].split("/", 1)[0]
        assert registry == {
            "address": host,  # the registry the tag pushes to
            "username": "oauth2accesstoken",
            # The provider's own access token (getClientConfig), the mock's placeholder here.
            "password": "mock-access-token",
        }, name
        assert inputs["push"] is True, name
    # No long-lived key anywhere in the program.
    assert not plan.of_type("gcp:serviceaccount/key:Key")


# --- Verify: the refs the program deployed, against what Cloud Run serves --------------------


def test_the_program_exports_the_image_ref_each_service_runs(prod_plan: Plan):
    refs = prod_plan.outputs["image_refs"]
    services = {r.get("name"): r for r in prod_plan.of_type(T.CLOUD_RUN)}
    assert set(refs) == set(services)
    for name, svc in services.items():
        assert refs[name] == svc.get("template.containers[0].image"), svc.urn
        assert "@sha256:" in refs[name], refs[name]


def test_deploy_hands_the_policy_pack_to_the_real_engines_up_and_preview(fake_pulumi):
    engine = deploy_engine(REPO_ROOT)
    engine.preview("prod", env={"PLATFORM_GIT_COMMIT": "abc1234"})
    engine.up("prod", env={"PLATFORM_GIT_COMMIT": "abc1234"})
    runs = {c["args"][1]: c for c in fake_pulumi() if c["args"][1:2] in (["up"], ["preview"])}
    assert set(runs) == {"up", "preview"}, fake_pulumi()
    pack = str((REPO_ROOT / "policy").resolve())
    assert (REPO_ROOT / "policy" / "PulumiPolicy.yaml").exists()
    for op, call in runs.items():
        args = call["args"]
        assert "--policy-pack" in args and args[args.index("--policy-pack") + 1] == pack, (op, args)
        assert call["env"] == {"PLATFORM_GIT_COMMIT": "abc1234"}, (op, call)


def _deploy(firestore_db, tmp_path, prod_plan: Plan, inspector: FakeInspector):
    repo = TempRepo(tmp_path / "repo")
    repo.commit("initial")
    info = stack_info(
        "prod",
        prod_plan.resources,
        {"gcp:project": "nba-props-platform"},
        coordinator="prediction-coordinator",
    )
    target = CloudTarget(
        engine=deploy_engine(REPO_ROOT),
        inspector=inspector,
        firestore_factory=lambda info: firestore_db,
        tooling=FakeTooling(),
        synthetic=FakeSyntheticCheck(),
    )
    reporter = RecordingReporter()
    out = run_deploy(
        DeployRequest(stack="prod"),
        target=target,
        preflight=lambda stack: PreflightResult(errors=[], info=info, plan=prod_plan),
        locker=DeployLockLocker(who="tester"),
        repo=GitRepo(repo.root),
        reporter=reporter,
    )
    return out, reporter


def _serve(inspector: FakeInspector, refs: dict[str, str], **wrong: str) -> None:
    for name, ref in refs.items():
        inspector.serve(name, wrong.get(name.replace("prediction-", ""), ref.rpartition("@")[2]))


@pytest.mark.emulator
def test_verify_fails_a_revision_serving_another_digest_than_deployed(
    firestore_db, tmp_path, prod_plan, fake_pulumi, monkeypatch
):
    # The engine reports the program's own outputs, as `pulumi up` would after deploying it.
    refs = prod_plan.outputs["image_refs"]
    monkeypatch.setenv("FAKE_PULUMI_OUTPUTS", json.dumps(prod_plan.outputs))
    inspector = FakeInspector()
    _serve(inspector, refs, worker="sha256:" + "e" * 64)  # an old revision still serves
    out, reporter = _deploy(firestore_db, tmp_path, prod_plan, inspector)
    assert out.exit_code == ExitCode.ERROR, (out.error, reporter.steps)
    assert reporter.status_of("verify") == "failed"
    want = refs["prediction-worker"].rpartition("@")[2]
    assert f"prediction-worker: serves digest sha256:{'e' * 64}, expected {want}" in out.error
    assert "prediction-coordinator" not in out.error
    assert out.deployment is not None and out.deployment.result == "failed"


@pytest.mark.emulator
def test_verify_passes_when_cloud_run_serves_what_was_deployed(
    firestore_db, tmp_path, prod_plan, fake_pulumi, monkeypatch
):
    refs = prod_plan.outputs["image_refs"]
    monkeypatch.setenv("FAKE_PULUMI_OUTPUTS", json.dumps(prod_plan.outputs))
    inspector = FakeInspector()
    _serve(inspector, refs)
    out, reporter = _deploy(firestore_db, tmp_path, prod_plan, inspector)
    assert out.exit_code == ExitCode.OK, (out.error, reporter.steps)
    assert {c.service: c.digest for c in out.checks} == {
        name: ref.rpartition("@")[2] for name, ref in refs.items()
    }
