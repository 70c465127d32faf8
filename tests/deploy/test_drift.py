"""Drift: code drift against a temporary git repo, image drift, config drift via the engine."""

from __future__ import annotations

import json

import pytest

from infra.build_context import image_tag
from scripts.deploy import (
    Deployment,
    GitRepo,
    ImageTarget,
    ResourceChange,
    ServiceRef,
    compute_drift,
    context_paths,
)
from tests.deploy.doubles import FakeBuilder, FakeEngine, FakeInspector, digest
from tests.deploy.gitrepo import TempRepo

SERVICES = ("prediction-coordinator", "prediction-worker")
REPO = "us-west2-docker.pkg.dev/p/platform"


def refs():
    return {s: ServiceRef(s, s, "p", "us-west2") for s in SERVICES}


def targets():
    return {s: ImageTarget(s, f"{REPO}/{s}", "unused") for s in SERVICES}


@pytest.fixture
def repo(tmp_path):
    r = TempRepo(tmp_path / "repo")
    r.deployed = r.commit("initial")
    r.tags = {s: image_tag(s, r.root) for s in SERVICES}
    # 4 commits after the deploy: worker code, shared code (both), docs (neither), a worker test
    # file (.dockerignore keeps tests out of the image: neither).
    r.worker = r.commit("worker: faster", services__worker__main__py="app = 'worker2'\n")
    r.shared = r.commit("shared: contract v2", shared__contract__py="X = 2\n")
    r.docs = r.commit("docs", README__md="# demo v2\n")
    r.tests = r.commit("worker tests", **{"services/worker/tests/test_x.py": "assert 1\n"})
    return r


def _record(r, images=None, tags=None):
    return Deployment(
        id="prod-1",
        stack="prod",
        commit=r.deployed,
        who="ci",
        result="succeeded",
        images=images
        or {s: f"{REPO}/{s}@{digest(c)}" for s, c in zip(SERVICES, "cw", strict=True)},
        image_tags=tags if tags is not None else dict(r.tags),
    )


def _drift(repo, *, last, inspector=None, engine=None, registry=None):
    """``compute_drift`` for the prod stack of the temporary repository (its services, image
    targets and checkout); each test passes what it varies."""
    return compute_drift(
        stack="prod",
        repo=GitRepo(repo.root),
        root=repo.root,
        services=refs(),
        image_targets=targets(),
        last=last,
        inspector=inspector,
        engine=engine,
        registry=registry,
    )


def test_context_paths_are_the_files_landing_in_the_image_plus_dockerfile(repo):
    paths = context_paths("prediction-worker", repo.root)
    assert "images/worker.Dockerfile" in paths and "shared/contract.py" in paths
    assert "services/worker/main.py" in paths
    assert "services/worker/tests/test_x.py" not in paths  # .dockerignore'd
    assert not any(p.startswith("services/coordinator/") for p in paths)


def test_code_drift_counts_commits_behind_and_lists_per_service_context_changes(repo):
    inspector = FakeInspector()
    for s, c in zip(SERVICES, "cw", strict=True):
        inspector.serve(s, digest(c), commit=repo.deployed)
    report = _drift(repo, last=_record(repo), inspector=inspector)
    assert report.errors == []
    code = report.code
    assert code.deployed == repo.deployed and code.deployed_source == "label"
    assert code.behind == 4
    per = {s.service: [c.sha for c in s.commits] for s in code.services}
    assert per["prediction-worker"] == [repo.shared, repo.worker]  # newest first
    assert per["prediction-coordinator"] == [repo.shared]
    assert report.drifted


def test_no_drift_when_main_is_the_deployed_commit(repo):
    head = repo.git("rev-parse", "HEAD")
    record = _record(repo)
    record.commit = head
    record.image_tags = {s: image_tag(s, repo.root) for s in SERVICES}
    report = _drift(repo, last=record, engine=FakeEngine(changes=[]))
    assert report.errors == [] and report.code.behind == 0
    assert [i.drifted for i in report.images] == [False, False]
    assert report.config == [] and not report.drifted


def test_image_drift_from_the_recorded_tag_without_a_registry(repo):
    report = _drift(repo, last=_record(repo))
    drift = {i.service: i for i in report.images}
    # shared/ changed: both images' contexts changed since the deploy.
    assert drift["prediction-worker"].drifted and drift["prediction-coordinator"].drifted
    assert drift["prediction-worker"].deployed_tag == repo.tags["prediction-worker"]
    assert drift["prediction-worker"].current_tag == image_tag("prediction-worker", repo.root)
    assert report.code.deployed_source == "history"


def test_image_drift_against_the_registry_digest_of_the_current_tag(repo):
    current = {s: image_tag(s, repo.root) for s in SERVICES}
    # The coordinator's current context was built and is what runs; the worker's was built
    # but another digest runs.
    registry = FakeBuilder(
        existing={
            f"{REPO}/prediction-coordinator:{current['prediction-coordinator']}": digest("c"),
            f"{REPO}/prediction-worker:{current['prediction-worker']}": digest("9"),
        }
    )
    inspector = FakeInspector()
    for s, c in zip(SERVICES, "cw", strict=True):
        inspector.serve(s, digest(c), commit=repo.deployed)
    report = _drift(repo, last=_record(repo), inspector=inspector, registry=registry)
    drift = {i.service: i for i in report.images}
    assert not drift["prediction-coordinator"].drifted
    assert drift["prediction-worker"].drifted
    assert drift["prediction-worker"].current_digest == digest("9")


def test_config_drift_runs_refresh_preview_with_the_deployed_commit_and_digests(repo):
    change = ResourceChange(
        "urn:pulumi:prod::platform::gcp:pubsub/subscription:Subscription::worker-push",
        "gcp:pubsub/subscription:Subscription",
        "update",
        ("ackDeadlineSeconds",),
    )
    engine = FakeEngine(changes=[change])
    record = _record(repo)
    report = _drift(repo, last=record, engine=engine)
    assert report.config == [change]
    ((kind, stack, env),) = engine.calls
    assert (kind, stack) == ("preview", "prod")
    assert env["refresh"] is True and env["expect"] is True
    assert env["PLATFORM_GIT_COMMIT"] == repo.deployed
    assert json.loads(env["PLATFORM_IMAGE_OVERRIDES"]) == record.images
    assert report.to_dict()["config"][0]["diffs"] == ["ackDeadlineSeconds"]


def test_unknown_deployed_commit_is_an_error_not_no_drift(repo):
    record = _record(repo)
    record.commit = "f" * 40
    report = _drift(repo, last=record)
    assert report.code is None
    assert any("not in this clone" in e for e in report.errors)
