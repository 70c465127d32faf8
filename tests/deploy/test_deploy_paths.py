"""The two CI deploy paths, as far as this machine can prove them: image pushes authenticated
by the deploy identity's token, the image refs the program deployed verified on Cloud Run, and
the policy pack handed to the real engine (the Automation API driving a stand-in ``pulumi``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import scripts.plan._stack as plan_stack
from infra.paths import REPO_ROOT
from policy.graph import T
from scripts.cli_common import ExitCode
from scripts.deploy import (
    CloudBuildAdapter,
    CloudTarget,
    DeployError,
    DeployLockLocker,
    DeployRequest,
    GitRepo,
    ImageTarget,
    PreflightResult,
    deploy_engine,
    run_deploy,
    stack_info,
)
from scripts.plan import Plan, evaluate_stack, load_stack_file
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


def _deploy(firestore_db, tmp_path, prod_plan: Plan, monkeypatch, **wrong: str):
    """Deploy the prod plan while Cloud Run serves each service the digest deployed, or
    ``wrong[short name]``. The engine reports the program's own outputs, as `pulumi up` would
    after deploying it."""
    monkeypatch.setenv("FAKE_PULUMI_OUTPUTS", json.dumps(prod_plan.outputs))
    inspector = FakeInspector()
    for name, ref in prod_plan.outputs["image_refs"].items():
        inspector.serve(name, wrong.get(name.replace("prediction-", ""), ref.rpartition("@")[2]))
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


@pytest.mark.emulator
def test_verify_fails_a_revision_serving_another_digest_than_deployed(
    firestore_db, tmp_path, prod_plan, fake_pulumi, monkeypatch
):
    refs = prod_plan.outputs["image_refs"]
    # An old revision still serves the worker.
    out, reporter = _deploy(
        firestore_db, tmp_path, prod_plan, monkeypatch, worker=f"sha256:{'e' * 64}"
    )
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
    out, reporter = _deploy(firestore_db, tmp_path, prod_plan, monkeypatch)
    assert out.exit_code == ExitCode.OK, (out.error, reporter.steps)
    assert {c.service: c.digest for c in out.checks} == {
        name: ref.rpartition("@")[2] for name, ref in refs.items()
    }


# --- The Cloud Build path: explicit bucket and identity, credentials from the metadata server --


def test_cloudbuild_builds_run_as_the_configured_identity_from_the_configured_bucket(
    prod_plan: Plan,
):
    from google.cloud.devtools import cloudbuild_v1

    builder = CloudBuildAdapter.for_stack(prod_plan.config, REPO_ROOT)
    cloudbuild = prod_plan.config.platform.deploy.cloudbuild
    repo = prod_plan.outputs["repository_url"]
    target = ImageTarget("prediction-worker", f"{repo}/prediction-worker", "0123abcd")
    build = builder.build_request(target, "source/prediction-worker-0123abcd.tgz")
    assert isinstance(build, cloudbuild_v1.Build)
    assert build.service_account == (
        f"projects/nba-props-platform/serviceAccounts/{cloudbuild.service_account}"
    )
    assert build.source.storage_source.bucket == cloudbuild.source_bucket
    assert build.options.logging == cloudbuild_v1.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY
    assert list(build.images) == [target.tagged]
    (build_step, smoke) = build.steps
    assert list(build_step.args) == [
        "build",
        "-f",
        "images/worker.Dockerfile",
        "-t",
        target.tagged,
        ".",
    ]
    assert list(smoke.args)[-2:] == ["-c", "import services.worker.main"]


def test_the_cloudbuild_builder_refuses_a_stack_without_its_resources_naming_the_key():
    from infra.config import parse_config

    raw = load_stack_file("prod")
    platform = dict(raw["prediction-platform:platform"])
    platform["deploy"] = {"service_account": platform["deploy"]["service_account"]}
    raw = {**raw, "prediction-platform:platform": platform}
    config = parse_config("prod", raw, "prediction-platform")
    with pytest.raises(DeployError) as info:
        CloudBuildAdapter.for_stack(config, REPO_ROOT)
    assert "platform.deploy.cloudbuild" in str(info.value)
    assert "builder_email" in str(info.value) and "build_source_bucket" in str(info.value)


class _Metadata(BaseHTTPRequestHandler):
    """The GCE metadata server as Cloud Build provides it to a build step (no key file)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        answers = {"/": "", "/computeMetadata/v1/project/project-id": "nba-props-platform"}
        body = answers.get(self.path.split("?")[0])
        self.send_response(200 if body is not None else 404)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", "application/text")
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *args):
        pass


def test_deploy_finds_a_build_steps_credentials_on_the_metadata_server(tmp_path):
    # On Cloud Build the metadata server is the only credential source: the tooling check must
    # probe it (a forced NO_GCE_CHECK made `deploy` report "no credentials" there).
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_GCE_CHECK", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
    }
    env.update(
        GCE_METADATA_HOST=host,
        GCE_METADATA_IP=host,
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),  # no `gcloud auth application-default`
    )
    code = (
        "import json\n"
        "from scripts.deploy import SystemTooling\n"
        "missing = SystemTooling(which=lambda name: '/usr/bin/pulumi').missing()\n"
        "print(json.dumps([str(m) for m in missing]))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [], done.stdout
