"""The four adapters' own logic: tooling check, Pulumi without its CLI, Cloud Build requests and
skip-if-present, Cloud Run verification (over the real run_v2 message types)."""

from __future__ import annotations

import json
import shutil

import grpc
import pytest

from infra.paths import REPO_ROOT
from scripts.deploy import (
    AutomationPulumi,
    CloudBuildAdapter,
    CloudRunAdapter,
    DeployError,
    ImageTarget,
    ServiceRef,
    ServiceState,
    SystemTooling,
    ToolingMissing,
    build_steps,
    check_tooling,
    ensure_images,
    entry_module,
    verify_services,
)
from scripts.deploy._cloudbuild import _tag_resource, split_image
from tests.deploy.doubles import FakeBuilder, FakeInspector, digest
from tests.fakegcp import FakeArtifactRegistry, FakeCloudBuild, FakeCloudRun

ROOT = REPO_ROOT
REPO = "us-west2-docker.pkg.dev/nba-props-platform/platform"


# -- tooling -----------------------------------------------------------------------------------


def test_tooling_reports_every_missing_prerequisite_with_its_fix():
    def no_credentials():
        raise RuntimeError("Your default credentials were not found")

    tooling = SystemTooling(which=lambda _: None, auth_default=no_credentials)
    missing = tooling.missing()
    assert [m.name for m in missing] == ["pulumi CLI", "GCP credentials"]
    assert "get.pulumi.com" in missing[0].fix
    assert "gcloud auth application-default login" in missing[1].fix
    with pytest.raises(ToolingMissing) as info:
        check_tooling(tooling)
    assert "pulumi CLI" in str(info.value) and "GCP credentials" in str(info.value)


def test_tooling_passes_when_everything_is_there():
    tooling = SystemTooling(which=lambda _: "/usr/bin/pulumi", auth_default=lambda: ("c", "p"))
    assert tooling.missing() == []
    check_tooling(tooling)


@pytest.mark.skipif(shutil.which("pulumi") is not None, reason="a pulumi CLI is installed here")
def test_automation_api_without_the_cli_gives_the_clear_error_not_file_not_found(monkeypatch):
    # The Automation API raises a bare FileNotFoundError: 'pulumi'; the adapter names the fix.
    engine = AutomationPulumi(ROOT)
    with pytest.raises(ToolingMissing) as info:
        engine.preview("prod", env={})
    text = str(info.value)
    assert "pulumi CLI" in text and "install" in text and "pip install pulumi" in text
    assert engine.interrupt(grace=0.1) is False  # nothing ran


# -- Cloud Build and Artifact Registry ---------------------------------------------------------


def test_build_steps_use_the_repo_root_context_and_the_service_dockerfile():
    target = ImageTarget("prediction-coordinator", f"{REPO}/prediction-coordinator", "abc123")
    build, smoke = build_steps(target, module=entry_module("prediction-coordinator", ROOT))
    assert build["args"] == [
        "build",
        "-f",
        "images/coordinator.Dockerfile",
        "-t",
        f"{REPO}/prediction-coordinator:abc123",
        ".",
    ]
    assert smoke["args"][-2:] == ["-c", "import services.coordinator.main"]
    assert smoke["args"][:5] == ["run", "--rm", "--entrypoint", "python", target.tagged]


def test_ensure_images_skips_tags_already_in_the_registry_and_builds_the_rest():
    coord = ImageTarget("prediction-coordinator", f"{REPO}/prediction-coordinator", "t1")
    worker = ImageTarget("prediction-worker", f"{REPO}/prediction-worker", "t2")
    builder = FakeBuilder(existing={coord.tagged: digest("c")})
    lines: list[str] = []
    out = ensure_images(builder, {c.service: c for c in (coord, worker)}, on_output=lines.append)
    assert [t.service for t in builder.built] == ["prediction-worker"]
    assert out["prediction-coordinator"].built is False
    assert out["prediction-coordinator"].ref == f"{coord.repository}@{digest('c')}"
    assert out["prediction-worker"].built is True
    assert out["prediction-worker"].ref.startswith(f"{worker.repository}@sha256:")
    assert any("already in Artifact Registry" in line for line in lines)


def test_artifact_registry_tag_resource_name():
    target = ImageTarget("prediction-worker", f"{REPO}/prediction-worker", "0123abcd")
    assert _tag_resource(target) == (
        "projects/nba-props-platform/locations/us-west2/repositories/platform"
        "/packages/prediction-worker/tags/0123abcd"
    )
    nested = ImageTarget("x", f"{REPO}/team/x", "t")
    assert "/packages/team%2Fx/tags/t" in _tag_resource(nested)
    assert split_image("localhost:5000/a/b:tag") == ("localhost:5000/a/b", "tag")


# -- Cloud Run ---------------------------------------------------------------------------------

REF = ServiceRef("prediction-worker", "prediction-worker", "p", "us-west2")


def test_verify_passes_only_at_100_percent_with_the_expected_digest():
    inspector = FakeInspector()
    inspector.serve("prediction-worker", digest("a"))
    assert verify_services(inspector, {REF: digest("a")})[0].ok
    assert verify_services(inspector, {REF: None})[0].ok  # any digest

    wrong = verify_services(inspector, {REF: digest("b")})[0]
    assert not wrong.ok and "expected sha256:bbbb" in wrong.problems[0]

    inspector.serve("prediction-worker", digest("a"), percent=50)
    split = verify_services(inspector, {REF: digest("a")})[0]
    assert not split.ok and "50% of traffic" in split.problems[0]

    gone = verify_services(FakeInspector(), {REF: None})[0]
    assert not gone.ok and "does not exist" in gone.problems[0]


def test_verify_flags_a_latest_revision_that_is_not_ready():
    inspector = FakeInspector(
        states={
            "prediction-worker": ServiceState(
                exists=True,
                latest_ready_revision="w-1",
                latest_created_revision="w-2",
                latest_percent=100,
                image_digest=digest("a"),
            )
        }
    )
    check = verify_services(inspector, {REF: digest("a")})[0]
    assert not check.ok and "w-2 is not ready" in check.problems[0]


# The real adapter on an in-process server of Cloud Run's own service definitions
# (tests/fakegcp): request names, fields and status codes go through run_v2's types.

RESOURCE = "projects/p/locations/us-west2/services/prediction-worker"


def _cloud_run() -> tuple[FakeCloudRun, CloudRunAdapter]:
    fake = FakeCloudRun()
    fake.start()
    services, revisions = fake.clients()
    return fake, CloudRunAdapter(services=services, revisions=revisions)


def test_cloud_run_adapter_reads_revision_traffic_and_digest_over_grpc():
    fake, adapter = _cloud_run()
    with fake:
        fake.serve(
            RESOURCE, f"{REPO}/prediction-worker@{digest('d')}", labels={"git-commit": "abc"}
        )
        state = adapter.describe(REF)
        assert [r.name for r in fake.requests("GetService")] == [RESOURCE]
        assert [r.name for r in fake.requests("GetRevision")] == [
            f"{RESOURCE}/revisions/prediction-worker-00002-abc"
        ]
    assert state.exists and state.latest_ready_revision == "prediction-worker-00002-abc"
    assert state.latest_percent == 100 and state.image_digest == digest("d")
    assert state.labels == {"git-commit": "abc"} and state.uri.endswith(".a.run.app")


def test_cloud_run_adapter_sees_a_traffic_split_and_a_tag_without_digest():
    fake, adapter = _cloud_run()
    with fake:
        fake.serve(RESOURCE, f"{REPO}/prediction-worker@{digest('e')}", percent=40)
        split = adapter.describe(REF)
        assert not verify_services(adapter, {REF: digest("e")})[0].ok
        fake.serve(RESOURCE, f"{REPO}/prediction-worker:tag")
        by_tag = adapter.describe(REF)
    assert split.image_digest == digest("e") and split.latest_percent == 40
    # A revision by tag (and, with this run_v2, no resolved digest field): no digest claimed.
    assert by_tag.image_digest is None and by_tag.latest_percent == 100


def test_cloud_run_not_found_is_a_missing_service_not_an_error():
    fake, adapter = _cloud_run()
    with fake:
        state = adapter.describe(REF)
        assert not state.exists
        check = verify_services(adapter, {REF: None})[0]
    assert not check.ok and "does not exist" in check.problems[0]


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("GetService", grpc.StatusCode.PERMISSION_DENIED),
        ("GetService", grpc.StatusCode.FAILED_PRECONDITION),
        ("GetRevision", grpc.StatusCode.PERMISSION_DENIED),
        ("GetRevision", grpc.StatusCode.NOT_FOUND),
    ],
)
def test_cloud_run_errors_become_deploy_errors_naming_the_resource(method, code):
    fake, adapter = _cloud_run()
    with fake:
        fake.serve(RESOURCE, f"{REPO}/prediction-worker@{digest('d')}")
        fake.fail(method, code, "run.services.get denied on the caller")
        with pytest.raises(DeployError) as info:
            adapter.describe(REF)
    text = str(info.value)
    assert text.startswith("Cloud Run: cannot read") and "denied on the caller" in text
    assert ("prediction-worker" in text) and "Traceback" not in text


# -- Artifact Registry and Cloud Build over gRPC -------------------------------------------------


def _builder(**kwargs) -> tuple[FakeArtifactRegistry, FakeCloudBuild, CloudBuildAdapter, list]:
    registry, cloud_build = FakeArtifactRegistry(), FakeCloudBuild(**kwargs)
    registry.start()
    cloud_build.start()
    uploads: list[str] = []

    def upload(target: ImageTarget) -> tuple[str, str]:
        # Cloud Storage speaks its JSON API: no service definition to serve (hand-written).
        uploads.append(target.tagged)
        return "p_cloudbuild", f"source/{target.service}-{target.tag}.tgz"

    adapter = CloudBuildAdapter(
        project="nba-props-platform",
        root=ROOT,
        source_bucket="p_cloudbuild",
        service_account=BUILDER,
        build_client=cloud_build.client(),
        registry_client=registry.client(),
        uploader=upload,
    )
    return registry, cloud_build, adapter, uploads


WORKER = ImageTarget("prediction-worker", f"{REPO}/prediction-worker", "0123abcd")
BUILDER = "cloud-builder@nba-props-platform.iam.gserviceaccount.com"


def test_artifact_registry_lookup_by_tag_resource():
    registry, cloud_build, adapter, _ = _builder()
    with registry, cloud_build:
        tag = _tag_resource(WORKER)
        registry.tags[tag] = f"{tag.rsplit('/tags/', 1)[0]}/versions/{digest('a')}"
        assert adapter.existing_digest(WORKER) == digest("a")
        other = ImageTarget("prediction-worker", WORKER.repository, "ffff")
        assert adapter.existing_digest(other) is None  # NOT_FOUND: not built yet
        assert [r.name for r in registry.requests("GetTag")] == [tag, _tag_resource(other)]
        registry.fail("GetTag", grpc.StatusCode.PERMISSION_DENIED, "artifactregistry.tags.get")
        with pytest.raises(DeployError) as info:
            adapter.existing_digest(WORKER)
    assert "Artifact Registry lookup of" in str(info.value)
    assert "artifactregistry.tags.get" in str(info.value)


def test_cloud_build_request_and_long_running_operation():
    registry, cloud_build, adapter, uploads = _builder(polls_before_done=1)
    lines: list[str] = []
    with registry, cloud_build:
        out = adapter.build(WORKER, on_output=lines.append)
        [request] = cloud_build.requests("CreateBuild")
        polls = cloud_build.requests("GetOperation")
    assert out == "sha256:" + "d" * 64
    assert uploads == [WORKER.tagged]
    assert request.project_id == "nba-props-platform"
    build = request.build
    assert build.source.storage_source.bucket == "p_cloudbuild"
    assert build.source.storage_source.object_ == "source/prediction-worker-0123abcd.tgz"
    assert list(build.images) == [WORKER.tagged]
    assert [s.id for s in build.steps] == ["build-prediction-worker", "smoke-prediction-worker"]
    assert list(build.steps[0].args)[:3] == ["build", "-f", "images/worker.Dockerfile"]
    assert build.timeout.total_seconds() == 1200 and list(build.tags) == ["deploy", WORKER.service]
    # Runs as the bootstrap's build identity, which requires Cloud Logging only.
    assert build.service_account == f"projects/nba-props-platform/serviceAccounts/{BUILDER}"
    assert build.options.logging == build.options.LoggingMode.CLOUD_LOGGING_ONLY
    assert polls and polls[0].name.startswith("operations/build/nba-props-platform/")
    assert any("Cloud Build started https://console.cloud.google.com/" in x for x in lines)


def test_cloud_build_failures_become_deploy_errors():
    registry, cloud_build, adapter, _ = _builder()
    with registry, cloud_build:
        cloud_build.fail_builds = "Build failed; check build logs for details"
        with pytest.raises(DeployError) as failed:
            adapter.build(WORKER)
        cloud_build.fail_builds = None
        cloud_build.fail(
            "CreateBuild", grpc.StatusCode.FAILED_PRECONDITION, "source bucket does not exist"
        )
        with pytest.raises(DeployError) as refused:
            adapter.build(WORKER)
    assert "Build failed; check build logs" in str(failed.value)
    assert "source bucket does not exist" in str(refused.value)


def test_cloud_build_that_pushed_no_image_is_an_error():
    registry, cloud_build, adapter, _ = _builder()
    with registry, cloud_build:
        cloud_build.push_images = False
        with pytest.raises(DeployError) as info:
            adapter.build(WORKER)
    assert "pushed no image" in str(info.value)


def test_ensure_images_over_grpc_skips_what_the_registry_has():
    builder = FakeBuilder(existing={WORKER.tagged: digest("a")})
    coord = ImageTarget("prediction-coordinator", f"{REPO}/prediction-coordinator", "t1")
    out = ensure_images(builder, {t.service: t for t in (WORKER, coord)})
    assert builder.looked_up == [coord.tagged, WORKER.tagged]
    assert [t.service for t in builder.built] == ["prediction-coordinator"]
    assert builder.uploads == [coord.tagged]
    assert out["prediction-worker"].ref == f"{WORKER.repository}@{digest('a')}"
    [request] = builder.cloud_build.requests("CreateBuild")
    assert list(request.build.images) == [coord.tagged]


# -- Pulumi through the Automation API (a stand-in CLI behaving as Pulumi documents) -----------


def _engine(tmp_path) -> AutomationPulumi:
    # A workspace of its own: the Automation API runs the CLI there.
    work = tmp_path / "work"
    work.mkdir()
    (work / "Pulumi.yaml").write_text("name: prediction-platform\nruntime: python\n")
    return AutomationPulumi(work, pulumi_home=str(tmp_path / "home"))


def test_preview_reads_the_engine_events_and_the_summary(fake_pulumi, tmp_path):
    engine = _engine(tmp_path)
    lines: list[str] = []
    result = engine.preview("prod", env={"PLATFORM_GIT_COMMIT": "abc1234"}, on_output=lines.append)
    assert result.summary == {"create": 1, "same": 3} and result.changed
    assert [(c.op, c.name, c.type) for c in result.changes] == [
        ("create", "t", "gcp:pubsub/topic:Topic")
    ]
    preview = next(c for c in fake_pulumi() if "preview" in c["args"])
    assert preview["env"] == {"PLATFORM_GIT_COMMIT": "abc1234"}
    assert "--non-interactive" in preview["args"] and "--event-log" in preview["args"]
    assert "Previewing update (fake)" in lines


def test_up_returns_the_summary_and_the_outputs(fake_pulumi, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_PULUMI_OUTPUTS", json.dumps({"repository_url": "r"}))
    result = _engine(tmp_path).up("prod", env={})
    assert result.summary == {"create": 1, "same": 3}
    assert result.outputs == {"repository_url": "r"}


@pytest.mark.parametrize(
    ("mode", "call", "fragment"),
    [
        ("not-found", "preview", "stack 'prod' does not exist"),
        ("locked", "up", "another update on 'prod'"),
        ("fail", "up", "(exit 4: resource or deployment error"),
    ],
)
def test_documented_cli_failures_become_deploy_errors(
    fake_pulumi, tmp_path, monkeypatch, mode, call, fragment
):
    monkeypatch.setenv("FAKE_PULUMI_MODE", mode)
    engine = _engine(tmp_path)
    with pytest.raises(DeployError) as info:
        getattr(engine, call)("prod", env={})
    assert fragment in str(info.value), str(info.value)


def test_expected_no_changes_returns_the_proposed_changes_as_drift(
    fake_pulumi, tmp_path, monkeypatch
):
    monkeypatch.setenv("FAKE_PULUMI_MODE", "changes")
    result = _engine(tmp_path).preview("prod", env={}, expect_no_changes=True)
    assert [c.op for c in result.changes] == ["create"] and result.summary == {"create": 1}


@pytest.mark.parametrize("ignores_sigint", [False, True])
def test_interrupt_stops_only_this_engines_running_up(
    fake_pulumi, tmp_path, monkeypatch, ignores_sigint
):
    import threading

    monkeypatch.setenv("FAKE_PULUMI_MODE", "hang")
    if ignores_sigint:
        monkeypatch.setenv("FAKE_PULUMI_IGNORE_SIGINT", "1")
    engine, other = _engine(tmp_path), AutomationPulumi(tmp_path / "work")
    errors: list[Exception] = []
    started = threading.Event()

    def run() -> None:
        try:
            engine.up("prod", env={}, on_output=lambda line: started.set())
        except Exception as exc:  # noqa: BLE001 - asserted below: a DeployError
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(60), "the stand-in never started"
    assert other.interrupt(grace=0.1) is False  # another engine's process is not its own
    assert engine.interrupt(grace=1.0) is True
    thread.join(30)
    assert not thread.is_alive() and errors, "up returned or hung after the interrupt"
    assert isinstance(errors[0], DeployError), repr(errors[0])
    sigint_seen = any(c["args"] == ["<SIGINT>"] for c in fake_pulumi())
    assert sigint_seen is not ignores_sigint  # graceful cancel, or killed after the grace
    assert engine.interrupt(grace=0.1) is False  # nothing left running
