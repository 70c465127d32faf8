"""Deployment records on Google's Firestore emulator, and rollback's choice among them."""

from __future__ import annotations

import pytest

from scripts.deploy import (
    DeployError,
    Deployment,
    DeploymentHistory,
    Result,
    RollbackRefused,
    new_deployment_id,
    select_rollback,
)
from tests.deploy.doubles import digest

pytestmark = pytest.mark.emulator

IMG = "us-west2-docker.pkg.dev/p/platform"


def _record(history, stack, commit, result, images=None):
    dep = history.start(
        Deployment(
            id=new_deployment_id(stack), stack=stack, commit=commit, who="alice", lock_token=7
        )
    )
    return history.finish(dep.id, result, images=images or {}, summary={"update": 1})


def test_a_record_is_created_running_and_finished_once_with_server_times(firestore_db):
    history = DeploymentHistory(firestore_db)
    dep = history.start(
        Deployment(id=new_deployment_id("prod"), stack="prod", commit="a" * 40, who="ci")
    )
    assert dep.result == Result.RUNNING and dep.started_at is not None and dep.ended_at is None
    done = history.finish(
        dep.id, Result.SUCCEEDED, images={"prediction-worker": f"{IMG}/w@{digest('1')}"}
    )
    assert done.result == Result.SUCCEEDED and done.ended_at >= done.started_at
    assert done.digests == {"prediction-worker": digest("1")}
    assert history.get(dep.id) == done
    with pytest.raises(DeployError, match="already exists"):
        history.start(Deployment(id=dep.id, stack="prod", commit="b", who="x"))
    with pytest.raises(DeployError, match="no deployment record"):
        history.finish("prod-nope", Result.FAILED)


def test_list_is_per_stack_newest_first(firestore_db):
    history = DeploymentHistory(firestore_db)
    ids = [_record(history, "prod", c * 40, Result.SUCCEEDED).id for c in "abc"]
    _record(history, "dev", "d" * 40, Result.SUCCEEDED)
    listed = history.list("prod")
    assert [d.id for d in listed] == ids[::-1]
    assert history.list("prod", limit=1)[0].commit == "c" * 40


def test_rollback_previous_skips_failed_records_and_picks_their_digests(firestore_db):
    history = DeploymentHistory(firestore_db)
    first = _record(history, "prod", "a" * 40, Result.SUCCEEDED, {"w": f"{IMG}/w@{digest('a')}"})
    _record(history, "prod", "b" * 40, Result.FAILED, {"w": f"{IMG}/w@{digest('b')}"})
    _record(history, "prod", "c" * 40, Result.SUCCEEDED, {"w": f"{IMG}/w@{digest('c')}"})

    target = select_rollback(history, "prod", "previous")
    assert target.id == first.id and target.images == {"w": f"{IMG}/w@{digest('a')}"}
    assert select_rollback(history, "prod", first.id).commit == "a" * 40


def test_rollback_refuses_failed_foreign_and_missing_targets(firestore_db):
    history = DeploymentHistory(firestore_db)
    failed = _record(history, "prod", "b" * 40, Result.FAILED, {"w": "x@" + digest("b")})
    with pytest.raises(RollbackRefused, match="no previous one"):
        select_rollback(history, "prod", "previous")
    with pytest.raises(RollbackRefused, match="did not succeed"):
        select_rollback(history, "prod", failed.id)
    dev = _record(history, "dev", "d" * 40, Result.SUCCEEDED, {"w": "x@" + digest("d")})
    with pytest.raises(RollbackRefused, match="belongs to stack 'dev'"):
        select_rollback(history, "prod", dev.id)
    with pytest.raises(DeployError, match="no deployment record"):
        select_rollback(history, "prod", "prod-20990101T000000-ffff")
