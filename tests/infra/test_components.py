"""Component boundaries (issue 15): options honoured, outputs after their IAM, moves aliased."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp
import pytest
from pulumi.runtime.proto import resource_pb2

import scripts.plan._mocks as plan_mocks
from infra.options import child_options
from infra.secret import Secret, SecretArgs
from infra.topic import PushTarget, Topic, TopicArgs
from policy.graph import Resource, T
from scripts.plan import Plan, PlanMocks, evaluate_stack, run_program

STACK = "prod"
PROJECT = "prediction-platform"


def _run(program: Any, plan: Plan) -> dict[str, Resource]:
    records, _ = run_program(
        program,
        project=PROJECT,
        stack=STACK,
        mocks=PlanMocks(plan.config.project, plan.config.region),
    )
    return {r.name: r for r in records}


def test_a_component_depending_on_one_resource_passes_it_to_its_children(
    prod_plan: Plan,
) -> None:
    """Pulumi allows ``depends_on=<one resource>``; the children must still wait for it."""

    def program() -> None:
        first = gcp.pubsub.Topic("first", name="first-topic")
        Secret(
            "key",
            SecretArgs(key="key", stack=prod_plan.config, value="v"),
            pulumi.ResourceOptions(depends_on=first),
        )

    records = _run(program, prod_plan)
    first = records["first"].urn
    for child in ("key", "key-version"):
        assert first in records[child].dependencies, f"{records[child].urn} does not wait"


def test_child_options_keep_the_components_and_their_own_dependencies() -> None:
    a, b = object.__new__(pulumi.Resource), object.__new__(pulumi.Resource)
    opts = child_options(a, pulumi.ResourceOptions(depends_on=[a]), depends_on=[b])
    assert opts.parent is a
    assert opts.depends_on == [a, b]
    assert child_options(a, None).depends_on in (None, [])


def test_topic_names_resolve_after_the_grants_that_make_them_usable(prod_plan: Plan) -> None:
    cfg = prod_plan.config
    key = "prediction-request"

    def program() -> None:
        topic = Topic(
            key,
            TopicArgs(
                key=key,
                config=cfg.platform.topics[key],
                stack=cfg,
                targets={
                    sub.service: PushTarget(
                        url="https://w.a.run.app", push_identity_email="p@x.iam.gserviceaccount.com"
                    )
                    for sub in cfg.platform.topics[key].subscriptions
                },
                pubsub_agent_member="serviceAccount:agent@x",
                publishers={"prediction-coordinator": "serviceAccount:run@x"},
            ),
        )
        # Consumers of each output: what they depend on is what the output waited for.
        gcp.pubsub.Topic("uses-topic", name=topic.topic_name)
        gcp.pubsub.Topic("uses-dead-letter", name=topic.dead_letter_topic_name)
        gcp.pubsub.Topic("uses-subscription", name=topic.subscription_names[0])

    records = _run(program, prod_plan)
    expect = {
        "uses-topic": f"{key}-publisher-prediction-coordinator",
        "uses-dead-letter": f"{key}-dead-letter-agent-publisher",
        "uses-subscription": f"{cfg.platform.topics[key].subscriptions[0].logical_name(key)}"
        "-agent-subscriber",
    }
    for consumer, grant in expect.items():
        assert records[grant].urn in records[consumer].dependencies, (
            f"{consumer} does not wait for {grant}"
        )


def test_images_are_pushed_only_once_the_deployer_may_write(prod_plan: Plan) -> None:
    writers = prod_plan.of_type(T.REPOSITORY_IAM_MEMBER)  # the deployer's, Cloud Build's
    assert {w.name for w in writers} == {"deployer-pushes-images", "builder-pushes-images"}
    images = prod_plan.of_type(T.IMAGE)
    assert len(images) == 2
    for image in images:
        for writer in writers:
            assert writer.urn in image.dependencies, f"{image.urn} does not wait for {writer.urn}"


class _AliasRecordingMonitor(plan_mocks.RecordingMonitor):
    """Records the alias URNs the SDK computes (alias specs off, so it computes them itself)."""

    aliases: dict[str, list[str]] = {}

    def GetDeploymentInfo(self, request: Any) -> Any:  # noqa: N802 - the gRPC method's name
        info = super().GetDeploymentInfo(request)
        features = [
            f
            for f in info.supportedFeatures
            if f != resource_pb2.RESOURCE_MONITOR_FEATURE_ALIAS_SPECS
        ]
        return resource_pb2.DeploymentInfo(supportedFeatures=features)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802
        response = super().RegisterResource(request)
        type(self).aliases[response.urn] = list(request.aliasURNs)
        return response


def test_resources_moved_into_new_components_keep_their_former_urns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Splitting Platform and Service must not replace a database or a repository in a stack
    that already has them: each moved resource names its former URN as an alias."""
    _AliasRecordingMonitor.aliases = {}
    monkeypatch.setattr(plan_mocks, "RecordingMonitor", _AliasRecordingMonitor)
    plan = evaluate_stack(STACK, env={})
    base = f"urn:pulumi:{STACK}::{PROJECT}::"
    former = {
        T.FIRESTORE_DATABASE: f"{base}platform:index:Platform${T.FIRESTORE_DATABASE}::firestore",
        T.REPOSITORY: f"{base}platform:index:Platform${T.REPOSITORY}::images",
        T.REPOSITORY_IAM_MEMBER: (
            f"{base}platform:index:Platform${T.REPOSITORY_IAM_MEMBER}::deployer-pushes-images"
        ),
        T.PROJECT_SERVICE: f"{base}platform:index:Platform${T.PROJECT_SERVICE}::api-run",
        T.IMAGE: f"{base}platform:index:Service${T.IMAGE}::prediction-worker-image",
    }
    by_name = {
        T.FIRESTORE_DATABASE: "firestore",
        T.REPOSITORY: "images",
        T.REPOSITORY_IAM_MEMBER: "deployer-pushes-images",
        T.PROJECT_SERVICE: "api-run",
        T.IMAGE: "prediction-worker-image",
    }
    for typ, old in former.items():
        (resource,) = [r for r in plan.of_type(typ) if r.name == by_name[typ]]
        assert old in _AliasRecordingMonitor.aliases[resource.urn], (
            f"{resource.urn}: aliases {_AliasRecordingMonitor.aliases[resource.urn]}"
        )
