"""The four adapters' own logic: tooling check, Pulumi without its CLI, Cloud Build requests and
skip-if-present, Cloud Run verification (over the real run_v2 message types)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scripts.deploy import (
    AutomationPulumi,
    CloudRunAdapter,
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

ROOT = Path(__file__).resolve().parents[2]
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


def test_cloud_run_adapter_reads_revision_traffic_and_digest_from_run_v2_messages():
    from google.cloud import run_v2

    base = "projects/p/locations/us-west2"
    service = run_v2.Service(
        name=f"{base}/services/prediction-worker",
        latest_ready_revision=f"{base}/services/prediction-worker/revisions/w-2",
        latest_created_revision=f"{base}/services/prediction-worker/revisions/w-2",
        traffic_statuses=[
            run_v2.TrafficTargetStatus(
                type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
                percent=100,
            )
        ],
        labels={"git-commit": "abc"},
        uri="https://w.run.app",
    )
    revision = run_v2.Revision(
        containers=[run_v2.Container(image=f"{REPO}/prediction-worker@{digest('d')}")],
    )

    class Services:
        def get_service(self, name, timeout):
            assert name == REF.resource
            return service

    class Revisions:
        def get_revision(self, name, timeout):
            assert name.endswith("/revisions/w-2")
            return revision

    adapter = CloudRunAdapter()
    adapter._services, adapter._revisions = Services(), Revisions()
    state = adapter.describe(REF)
    assert state.latest_ready_revision == "w-2" and state.latest_percent == 100
    assert state.image_digest == digest("d") and state.labels == {"git-commit": "abc"}
