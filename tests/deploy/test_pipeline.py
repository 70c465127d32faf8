"""The deploy pipeline end to end with the real deploy lock and deployment history on Google's
Firestore emulator, real git, and test doubles of exactly the four cloud adapters."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import timedelta

import pytest

from infra.build_context import image_tag
from scripts.cli_common import ExitCode
from scripts.deploy import (
    CloudTarget,
    DeployError,
    DeployLockLocker,
    DeploymentHistory,
    DeployRequest,
    ImageTarget,
    MissingTool,
    PreflightResult,
    Result,
    ServiceRef,
    StackInfo,
    StackService,
    run_deploy,
)
from scripts.deploy._images import default_image_tags
from scripts.deploylock import DeployLock, HolderInfo
from tests.deploy.doubles import (
    FakeBuilder,
    FakeEngine,
    FakeInspector,
    FakeNotifier,
    FakeSyntheticCheck,
    FakeTooling,
    RecordingReporter,
    digest,
)
from tests.deploy.gitrepo import TempRepo

pytestmark = pytest.mark.emulator

SERVICES = ("prediction-coordinator", "prediction-worker")
REPO = "us-west2-docker.pkg.dev/p/platform-images"


def _info(root, services=SERVICES) -> StackInfo:
    return StackInfo(
        "prod",
        "p",
        "us-west2",
        {
            s: StackService(
                s,
                ServiceRef(s, s, "p", "us-west2"),
                ImageTarget(s, f"{REPO}/{s}", image_tag(s, root)),
            )
            for s in services
        },
        coordinator="prediction-coordinator" if "prediction-coordinator" in services else None,
    )


class World:
    """One pipeline under test: a temp repo, the emulator, doubles of the four adapters."""

    def __init__(self, db, tmp_path) -> None:
        self.db = db
        self.repo = TempRepo(tmp_path / "repo")
        self.head = self.repo.commit("initial")
        self.info = _info(self.repo.root)
        self.preflight_errors: list[str] = []
        self.preflight_calls = 0
        self.engine = FakeEngine()
        self.inspector = FakeInspector()
        self.builder = FakeBuilder()
        self.tooling = FakeTooling()
        self.reporter = RecordingReporter()
        self.synthetic = FakeSyntheticCheck()
        self.notifier = FakeNotifier()
        self.served = {s: digest(c) for s, c in zip(SERVICES, "cw", strict=True)}

        def cloud_run_updated():
            for s, d in self.served.items():
                self.inspector.serve(s, d, commit=self.head)

        self.engine.on_up = cloud_run_updated
        self.target = CloudTarget(
            engine=self.engine,
            inspector=self.inspector,
            firestore_factory=lambda info: db,
            tooling=self.tooling,
            synthetic=self.synthetic,
        )

    def preflight(self, stack):
        self.preflight_calls += 1
        return PreflightResult(errors=list(self.preflight_errors), info=self.info)

    def lock(self, ttl=timedelta(minutes=1)) -> DeployLock:
        return DeployLock(self.db, stack="prod", ttl=ttl)

    def deploy(self, *, ttl=timedelta(minutes=1), grace=2.0, **kw):
        from scripts.deploy._git import GitRepo

        kw.setdefault("stack", "prod")
        notify = {"notifier": kw.pop("notifier", self.notifier)}
        if "notifier_for" in kw:
            notify["notifier_for"] = kw.pop("notifier_for")
        request = DeployRequest(interrupt_grace=grace, **kw)
        return run_deploy(
            request,
            target=self.target,
            preflight=self.preflight,
            locker=DeployLockLocker(ttl=ttl, who="tester"),
            repo=GitRepo(self.repo.root),
            reporter=self.reporter,
            builder=self.builder,
            image_tags=default_image_tags(self.repo.root),
            **notify,
        )

    def records(self):
        return DeploymentHistory(self.db).list("prod")


@pytest.fixture
def world(firestore_db, tmp_path):
    return World(firestore_db, tmp_path)


def _assert_released(world):
    status = world.lock().status()
    assert not status.held, status.describe()


def test_a_deploy_locks_applies_verifies_records_and_releases(world):
    out = world.deploy()
    assert out.exit_code == ExitCode.OK, (out.error, world.reporter.steps)
    assert [s.name for s in out.steps] == [
        "preflight",
        "tooling",
        "lock",
        "build",
        "apply",
        "verify",
        "check",
        "rollout",
        "record",
        "release",
    ]
    assert all(s.status == "ok" for s in out.steps), out.steps
    ((kind, stack, env),) = [c for c in world.engine.calls if c[0] == "up"]
    assert env["PLATFORM_GIT_COMMIT"] == world.head
    assert "PLATFORM_IMAGE_OVERRIDES" not in env  # builder local: the program builds
    (record,) = world.records()
    assert record.result == Result.SUCCEEDED and record.commit == world.head
    assert record.who == "tester" and record.lock_token == int(env["PLATFORM_LOCK_TOKEN"])
    assert record.images == {s: f"{REPO}/{s}@{d}" for s, d in world.served.items()}
    assert record.image_tags == {s: image_tag(s, world.repo.root) for s in SERVICES}
    assert record.summary == {"update": 2, "same": 10}
    assert record.started_at <= record.ended_at
    _assert_released(world)


def test_the_check_and_announcements_are_in_the_record(world):
    out = world.deploy()
    assert out.exit_code == ExitCode.OK, out.error
    (record,) = world.records()
    assert record.check["ok"] and record.check["predicted"] == 20
    assert [e.kind for e in world.notifier.events] == ["started", "succeeded"]
    assert world.notifier.events[-1].lock_token == record.lock_token
    assert out.to_dict()["check"]["predicted_share"] == 1.0


def test_a_check_that_predicts_nothing_rolls_back_to_the_last_good_release(world):
    assert world.deploy().exit_code == ExitCode.OK
    (good,) = world.records()
    world.synthetic.predicted = 0  # the new release fails every item permanently
    world.head = world.repo.commit("broken worker", services__worker__main__py="broken = 1\n")
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR
    assert "0 of 20 items predicted" in out.error, out.error
    assert out.rolled_back_to == good.id
    records = {r.id: r for r in world.records()}
    failed = records[out.deployment.id]
    rollback = records[out.rollback_record.id]
    assert failed.result == Result.FAILED and failed.rolled_back_by == rollback.id
    assert f"rolled back automatically to {good.id}" in failed.error
    assert rollback.kind == "rollback" and rollback.automatic and rollback.rollback_of == good.id
    assert rollback.result == Result.SUCCEEDED and rollback.commit == good.commit
    # The rollback redeployed the good release's digests, under the same lock token.
    up_envs = [c[2] for c in world.engine.calls if c[0] == "up"]
    assert json.loads(up_envs[-1]["PLATFORM_IMAGE_OVERRIDES"]) == good.images
    assert up_envs[-1]["PLATFORM_LOCK_TOKEN"] == up_envs[-2]["PLATFORM_LOCK_TOKEN"]
    # The release failed, and the rollback is announced after it, naming what serves now.
    kinds = [e.kind for e in world.notifier.events]
    assert kinds == ["started", "succeeded", "started", "failed", "rolled_back"], kinds
    failed_event, rolled_back = world.notifier.events[-2:]
    assert failed_event.deployment_id == failed.id and failed_event.commit == world.head
    assert "0 of 20 items predicted" in failed_event.error and not failed_event.rollback_of
    assert rolled_back.rollback_of == good.id and rolled_back.deployment_id == rollback.id
    assert rolled_back.commit == good.commit and dict(rolled_back.images) == good.images
    _assert_released(world)


def test_notifications_built_from_the_stack_info_once_the_lock_is_held(world):
    seen = []

    def notifier_for(info):
        seen.append((info.stack, world.lock().status().held))
        return world.notifier, ["webhook: setup warning (test)"]

    assert world.deploy(dry_run=True, notifier=None, notifier_for=notifier_for).exit_code in (
        ExitCode.OK,
        ExitCode.CHANGES,
    )
    assert seen == [], "a dry run announces nothing and reads no secret"
    out = world.deploy(notifier=None, notifier_for=notifier_for)
    assert out.exit_code == ExitCode.OK, out.error
    assert seen == [("prod", True)]
    assert [e.kind for e in world.notifier.events] == ["started", "succeeded"]
    assert "webhook: setup warning (test)" in out.warnings
    (record,) = world.records()
    assert "webhook: setup warning (test)" in record.warnings


def test_a_notifier_that_cannot_be_built_is_a_warning_not_a_failure(world):
    def broken(info):
        raise RuntimeError("no channel")

    out = world.deploy(notifier=None, notifier_for=broken)
    assert out.exit_code == ExitCode.OK, out.error
    assert any("notifications not set up" in w and "no channel" in w for w in out.warnings)


def test_a_failed_check_without_an_earlier_release_fails_and_says_why(world):
    world.synthetic.predicted = 0
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR and out.rolled_back_to is None
    assert any("no earlier succeeded deployment" in w for w in out.warnings), out.warnings
    assert [e.kind for e in world.notifier.events] == ["started", "failed"]
    (record,) = world.records()
    assert record.result == Result.FAILED and record.check["predicted"] == 0


def test_no_automatic_rollback_where_the_target_cannot_restore_a_commits_code(world):
    # `deploy --stack local --allow-dirty`: the services run the work tree, so redeploying the
    # good commit would restart the same broken code and call it a rollback.
    assert world.deploy().exit_code == ExitCode.OK
    world.target.restores_commits = False
    world.synthetic.predicted = 0
    ups = len([c for c in world.engine.calls if c[0] == "up"])
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR and out.rolled_back_to is None
    assert any("runs the work tree" in w for w in out.warnings), out.warnings
    assert len([c for c in world.engine.calls if c[0] == "up"]) == ups + 1, "no second up"
    assert [e.kind for e in world.notifier.events][-2:] == ["started", "failed"]


def test_automatic_rollback_refuses_a_digest_gone_from_the_registry(world):
    assert world.deploy().exit_code == ExitCode.OK

    class GoneRegistry:
        def digest_exists(self, ref):
            return False

    world.target.registry = GoneRegistry()
    world.synthetic.predicted = 0
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR and out.rolled_back_to is None
    assert any("no longer in the registry" in w for w in out.warnings), out.warnings
    assert [e.kind for e in world.notifier.events][-1] == "failed"


def test_a_failing_up_records_a_failed_deployment_and_releases(world):
    world.engine.up_error = DeployError("pulumi up failed for stack 'prod': boom")
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR and "boom" in out.error
    (record,) = world.records()
    assert record.result == Result.FAILED and "boom" in record.error
    assert world.reporter.status_of("verify") == "skipped"
    _assert_released(world)


def test_a_held_lock_exits_3_naming_the_holder_without_running_up(world):
    other = world.lock().acquire(HolderInfo.detect(who="bob", reason="hotfix"))
    out = world.deploy()
    assert out.exit_code == ExitCode.LOCK_HELD
    assert "bob" in out.error and "hotfix" in out.error
    assert not [c for c in world.engine.calls if c[0] in ("up", "preview")]
    assert world.records() == []
    assert world.lock().status().token == other.token  # still bob's


def test_preflight_failure_never_takes_the_lock(world):
    world.preflight_errors = ["platform.services.prediction-worker.timeout_seconds: > 3600"]
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR and "timeout_seconds" in out.error
    assert world.reporter.status_of("lock") == "skipped"
    assert not world.lock().status().exists  # never locked, not even briefly
    assert world.engine.calls == []


def test_missing_pulumi_gives_the_clear_error_before_the_lock(world):
    from scripts.deploy import SystemTooling

    world.target._tooling = SystemTooling(which=lambda _: None, auth_default=lambda: None)
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR
    assert "pulumi CLI" in out.error and "get.pulumi.com" in out.error
    assert not world.lock().status().exists and world.engine.calls == []


def test_a_dirty_tree_is_refused_unless_allowed(world):
    world.repo.write("services/worker/main.py", "changed = True\n")
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR and "--allow-dirty" in out.error
    assert not world.lock().status().exists
    assert world.deploy(allow_dirty=True).exit_code == ExitCode.OK


def test_untracked_files_outside_every_image_do_not_dirty_the_tree(world):
    # What the Makefile creates on a fresh machine (.tools/ with pip's own files) and other
    # untracked files no image build sees must not block a deploy.
    world.repo.write(".dockerignore", "**/tests\n**/__pycache__\n.git\n.tools\n")
    world.repo.commit("ignore .tools in the build context")
    world.repo.write(".tools/lib/python3.11/site-packages/pip/__init__.py", "x = 1\n")
    world.repo.write("services/worker/tests/scratch.py", "y = 2\n")
    out = world.deploy()
    assert out.exit_code == ExitCode.OK, out.error


def test_an_untracked_file_inside_an_image_context_is_refused(world):
    # It would be built into the image while the commit label says it is not there.
    world.repo.write("shared/new_module.py", "z = 3\n")
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR, out.error
    assert "shared/new_module.py" in out.error and "--allow-dirty" in out.error


def test_sigterm_mid_apply_interrupts_records_and_releases(world):
    world.engine.block_up = True

    def send_sigterm():
        assert world.engine.in_up.wait(20)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=send_sigterm, daemon=True).start()
    before = signal.getsignal(signal.SIGTERM)
    out = world.deploy()
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert out.exit_code == ExitCode.ERROR and "SIGTERM" in out.error
    assert "pulumi refresh" in out.error and "pulumi cancel" in out.error
    assert ("interrupt", "", {"grace": 2.0}) in world.engine.calls
    (record,) = world.records()
    assert record.result == Result.INTERRUPTED and "pulumi refresh" in record.instructions
    _assert_released(world)


def test_a_lease_lost_during_up_interrupts_it_and_records_it(world):
    world.engine.block_up = True

    def force_release():
        assert world.engine.in_up.wait(20)
        world.lock().force_release(reason="test: take over", by=HolderInfo.detect(who="ops"))

    threading.Thread(target=force_release, daemon=True).start()
    started = time.monotonic()
    out = world.deploy(ttl=timedelta(seconds=1.5))
    assert time.monotonic() - started < 15
    assert out.exit_code == ExitCode.LOCK_HELD and "lost" in out.error
    assert any(c[0] == "interrupt" for c in world.engine.calls)
    (record,) = world.records()
    assert record.result == Result.INTERRUPTED and "pulumi cancel" in record.instructions
    assert world.reporter.status_of("release") == "ok"


def test_verification_failure_is_recorded_as_failed(world):
    world.served["prediction-worker"] = digest("0")
    world.engine.on_up = lambda: (
        world.inspector.serve("prediction-coordinator", digest("c")),
        world.inspector.serve("prediction-worker", digest("0"), percent=90),
    )
    out = world.deploy()
    assert out.exit_code == ExitCode.ERROR and "90% of traffic" in out.error
    (record,) = world.records()
    assert record.result == Result.FAILED and record.verification
    _assert_released(world)


def test_cloudbuild_skips_existing_tags_builds_the_rest_and_hands_digests_over(world):
    coord = world.info.services["prediction-coordinator"].image
    world.builder.existing[coord.tagged] = digest("c")

    def serve_overrides():
        env = [c for c in world.engine.calls if c[0] == "up"][-1][2]
        for s, ref in json.loads(env["PLATFORM_IMAGE_OVERRIDES"]).items():
            world.inspector.serve(s, ref.rpartition("@")[2])

    world.engine.on_up = serve_overrides
    out = world.deploy(builder="cloudbuild")
    assert out.exit_code == ExitCode.OK, out.error
    assert [t.service for t in world.builder.built] == ["prediction-worker"]
    built = world.builder.built[0]
    assert built.tag == image_tag("prediction-worker", world.repo.root)
    env = [c for c in world.engine.calls if c[0] == "up"][0][2]
    overrides = json.loads(env["PLATFORM_IMAGE_OVERRIDES"])
    assert overrides["prediction-coordinator"] == f"{coord.repository}@{digest('c')}"
    assert overrides["prediction-worker"].startswith(f"{built.repository}@sha256:")
    (record,) = world.records()
    assert record.images == overrides and record.builder == "cloudbuild"


def test_rollback_redeploys_the_recorded_digests_and_commit(world):
    first = world.deploy()
    assert first.exit_code == ExitCode.OK
    old = first.deployment
    new_head = world.repo.commit("worker v2", services__worker__main__py="app = 2\n")
    world.head = new_head
    world.served["prediction-worker"] = digest("2")
    assert world.deploy().exit_code == ExitCode.OK

    from scripts.deploy import select_rollback

    target = select_rollback(DeploymentHistory(world.db), "prod", "previous")
    assert target.id == old.id
    world.served = {s: ref.rpartition("@")[2] for s, ref in old.images.items()}
    out = world.deploy(rollback_to=target)
    assert out.exit_code == ExitCode.OK, out.error
    env = [c for c in world.engine.calls if c[0] == "up"][-1][2]
    assert env["PLATFORM_GIT_COMMIT"] == old.commit != new_head
    assert json.loads(env["PLATFORM_IMAGE_OVERRIDES"]) == old.images
    latest = world.records()[0]
    assert latest.kind == "rollback" and latest.rollback_of == old.id
    assert latest.images == old.images and latest.commit == old.commit


def test_rollback_refuses_naming_services_that_no_longer_exist(world):
    first = world.deploy()
    world.info = _info(world.repo.root, services=("prediction-coordinator",))
    out = world.deploy(rollback_to=first.deployment)
    assert out.exit_code == ExitCode.ERROR
    assert "no longer exist" in out.error and "prediction-worker" in out.error
    assert len(world.records()) == 1


def test_dry_run_previews_without_lock_or_record_and_exits_2_on_changes(world):
    out = world.deploy(dry_run=True)
    assert out.exit_code == ExitCode.CHANGES, out.error
    assert [c[0] for c in world.engine.calls] == ["preview"]
    assert not world.lock().status().exists and world.records() == []
    world.engine.summary = {"same": 12}
    assert world.deploy(dry_run=True).exit_code == ExitCode.OK


def test_dry_run_with_tooling_missing_stops_at_step_2(world):
    world.tooling._missing = [MissingTool("pulumi CLI", "install it")]
    out = world.deploy(dry_run=True)
    assert out.exit_code == ExitCode.ERROR
    assert [(s.name, s.status) for s in out.steps][:2] == [
        ("preflight", "ok"),
        ("tooling", "failed"),
    ]
    assert world.engine.calls == []


class _FencedLocker(DeployLockLocker):
    """The real locker, logging each lease verify into ``log`` (beside the mutations)."""

    def __init__(self, log: list[str], **kw) -> None:
        super().__init__(**kw)
        self.log = log

    def verify(self, lease):
        self.log.append("verify")
        return super().verify(lease)


def _deploy_with_log(world, log: list[str]):
    from scripts.deploy._git import GitRepo

    real_build, real_on_up = world.builder.build, world.engine.on_up

    def build(target, **kwargs):
        log.append("push")
        return real_build(target, **kwargs)

    def on_up():
        log.append("up")
        real_on_up()

    world.builder.build, world.engine.on_up = build, on_up
    return run_deploy(
        DeployRequest(stack="prod", interrupt_grace=2.0, builder="cloudbuild"),
        target=world.target,
        preflight=world.preflight,
        locker=_FencedLocker(log, ttl=timedelta(minutes=1), who="tester"),
        repo=GitRepo(world.repo.root),
        reporter=world.reporter,
        builder=world.builder,
        image_tags=default_image_tags(world.repo.root),
        notifier=world.notifier,
    )


def test_every_step_that_changes_the_world_re_verifies_the_lease_first(world):
    log: list[str] = []
    world.engine.on_up = lambda: [
        world.inspector.serve(s, ref.rpartition("@")[2])
        for s, ref in json.loads(
            [c for c in world.engine.calls if c[0] == "up"][-1][2]["PLATFORM_IMAGE_OVERRIDES"]
        ).items()
    ]
    out = _deploy_with_log(world, log)
    assert out.exit_code == ExitCode.OK, out.error
    # The record's creation, the image pushes, pulumi up, and the final record: each after a
    # verify (traffic steps, when there are any, verify in the rollout's fence).
    assert log[0] == "verify" and log[-1] == "verify", log
    assert log[1:4] == ["verify", "push", "push"], log
    assert log[log.index("up") - 1] == "verify", log
    assert log.count("verify") >= 4, log


def test_a_superseded_deploy_stops_before_its_next_mutation_and_its_record_says_so(world):
    def build_then_lose_the_lock(target, **kwargs):
        if not world.builder.built:  # someone takes the lock while the images build
            world.lock().force_release(reason="hotfix first", by=HolderInfo.detect(who="ops"))
        return FakeBuilder.build(world.builder, target, **kwargs)

    world.builder.build = build_then_lose_the_lock
    out = world.deploy(builder="cloudbuild")
    assert out.exit_code == ExitCode.LOCK_HELD, out.error
    assert "superseded" in out.error and "hotfix first" in out.error
    assert not [c for c in world.engine.calls if c[0] == "up"], "pulumi up ran after losing"
    assert "pulumi cancel" not in out.error, "no apply ran: no recovery to do"
    (record,) = world.records()
    assert record.result == Result.INTERRUPTED
    assert "superseded" in record.error and record.instructions is None
    assert world.reporter.status_of("apply") == "failed"
    # The deploy released the revoked lease once it stopped: the lock is free at once.
    assert not world.lock().status().exists
