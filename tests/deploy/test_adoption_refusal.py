"""The pipeline refuses a ``pulumi up`` whose preview would create a resource that exists
already, naming ``platform adopt`` as the fix (the optional ``adoption`` check)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scripts.adopt import absent, existing_among, exists
from scripts.deploy import DeployLockLocker, DeployRequest, run_deploy
from scripts.deploy._git import GitRepo
from scripts.deploy._images import default_image_tags
from scripts.deploy._pulumi import ResourceChange
from tests.deploy.test_pipeline import World, _assert_released

TOPIC = "gcp:pubsub/topic:Topic"


@pytest.fixture
def world(firestore_db, tmp_path):
    return World(firestore_db, tmp_path)


def _deploy(world, adoption):
    return run_deploy(
        DeployRequest(stack="prod", interrupt_grace=2.0),
        target=world.target,
        preflight=world.preflight,
        locker=DeployLockLocker(ttl=timedelta(minutes=1), who="tester"),
        repo=GitRepo(world.repo.root),
        reporter=world.reporter,
        builder=world.builder,
        image_tags=default_image_tags(world.repo.root),
        notifier=world.notifier,
        adoption=adoption,
    )


def _topic(plan, name):
    return next(r for r in plan.resources if r.type == TOPIC and r.name == name)


def _adoption(prod_plan, found):
    lookups = {TOPIC: lambda r, rid: exists() if r.name in found else absent()}

    def check(changes, _plan):
        return [d.import_id for d in existing_among(changes, prod_plan.resources, lookups)]

    return check


def test_a_create_of_an_existing_resource_is_refused_before_up(world, prod_plan):
    world.engine.changes = [
        ResourceChange(_topic(prod_plan, "prediction-request").urn, TOPIC, "create"),
        ResourceChange(_topic(prod_plan, "prediction-ready").urn, TOPIC, "create"),
    ]
    out = _deploy(world, _adoption(prod_plan, {"prediction-request"}))
    assert out.exit_code == 1, out.error
    assert "projects/nba-props-platform/topics/prediction-request-prod" in out.error
    assert "prediction-ready-prod" not in out.error
    assert "platform adopt --stack prod" in out.error
    assert [c[0] for c in world.engine.calls if c[0] == "up"] == []
    _assert_released(world)


def test_creates_of_absent_resources_go_ahead(world, prod_plan):
    world.engine.changes = [
        ResourceChange(_topic(prod_plan, "prediction-ready").urn, TOPIC, "create"),
        # An update of an existing resource is never a conflict, whatever the lookup says.
        ResourceChange(_topic(prod_plan, "prediction-request").urn, TOPIC, "update"),
    ]
    out = _deploy(world, _adoption(prod_plan, {"prediction-request"}))
    assert out.exit_code == 0, out.error
    assert [c[0] for c in world.engine.calls].count("up") == 1
