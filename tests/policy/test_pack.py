"""The policy pack, started the way the Pulumi CLI starts it, spoken to over gRPC.

Constructing the ``PolicyPack`` starts the analyzer's gRPC server and prints its port on the
first line of stdout: the test spawns ``python policy/__main__.py``, reads the port and calls
``GetAnalyzerInfo`` and ``AnalyzeStack`` through ``pulumi.runtime.proto`` (no Pulumi CLI).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from infra.paths import REPO_ROOT
from policy.graph import UNKNOWN, Resource, T
from policy.rules import RULES
from scripts.plan import Plan

UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def plain(value: Any) -> Any:
    if value is UNKNOWN:
        return UNKNOWN_STRING
    if isinstance(value, MappingProxyType | dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def analyzer_resource(r: Resource) -> analyzer_pb2.AnalyzerResource:
    props = struct_pb2.Struct()
    props.update(plain({**r.inputs, **r.outputs}))
    return analyzer_pb2.AnalyzerResource(
        type=r.type,
        properties=props,
        urn=r.urn,
        name=r.name,
        parent=r.parent or "",
        dependencies=list(r.dependencies),
    )


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "policy" / "__main__.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT / "infra",  # where the Pulumi CLI runs the program (`main: infra/`)
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.isdigit(), f"no port on stdout: {line!r}; stderr: {proc.stderr.read()}"  # type: ignore[union-attr]
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


#: The pack does not run the offline image check (operator tooling above the rules): PF10 says
#: so for each image, advisory. `make plan` and the deploy preflight run it.
IMAGE_CHECK_NOT_RUN = "image check did not run here"


def analyze(
    stub: analyzer_pb2_grpc.AnalyzerStub, resources: list[Resource], *, image_notes: bool = False
):
    """The pack's diagnostics; without PF10's "image check did not run here" notes unless
    ``image_notes`` (test_the_prod_stack_has_no_violation checks those)."""
    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[analyzer_resource(r) for r in resources if r.custom]
    )
    diagnostics = list(stub.AnalyzeStack(request, timeout=120).diagnostics)
    return [d for d in diagnostics if image_notes or IMAGE_CHECK_NOT_RUN not in d.message]


def test_the_pack_lists_the_fifteen_rules(analyzer) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "prediction-platform-preflight"
    *rules, unverifiable = info.policies
    names = [p.name for p in rules]
    assert names == [r.policy_name for r in RULES]
    assert [n.split("-")[0] for n in names] == [f"PF{i:02d}" for i in range(1, 16)]
    mandatory = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
    assert all(p.enforcementLevel == mandatory for p in rules)
    # Undecidable checks are reported, but must not block a correct program's first preview.
    assert unverifiable.name == "preflight-unverifiable"
    assert unverifiable.enforcementLevel == analyzer_pb2.EnforcementLevel.Value("ADVISORY")


def test_the_prod_stack_has_no_violation(analyzer, prod_plan: Plan) -> None:
    diagnostics = analyze(analyzer, prod_plan.resources, image_notes=True)
    # No violation; only the note, advisory, for each image that its check did not run here.
    advisory = analyzer_pb2.EnforcementLevel.Value("ADVISORY")
    assert sorted((d.policyName, d.enforcementLevel, d.urn) for d in diagnostics) == sorted(
        ("preflight-unverifiable", advisory, r.urn)
        for r in prod_plan.resources
        if r.type == T.IMAGE
    ), [d.message for d in diagnostics]
    assert all("PF10 unverifiable: " in d.message for d in diagnostics)
    assert all(IMAGE_CHECK_NOT_RUN in d.message for d in diagnostics)


def test_a_broken_resource_comes_back_as_the_rules_violation(analyzer, prod_plan: Plan) -> None:
    broken = [
        r
        for r in prod_plan.resources
        if not (r.type == T.RUN_INVOKER_MEMBER and r.name == "prediction-worker-pushes-invoker")
    ]
    sub = next(r for r in broken if r.name == "prediction-request-worker")
    diagnostics = analyze(analyzer, broken)
    assert [(d.policyName, d.urn) for d in diagnostics] == [
        ("PF01-push-identity-can-invoke", sub.urn)
    ], [d.message for d in diagnostics]
    assert "has no roles/run.invoker on Service 'prediction-worker'" in diagnostics[0].message
    assert diagnostics[0].enforcementLevel == analyzer_pb2.EnforcementLevel.Value("MANDATORY")


def _public_grant(prod_plan: Plan, service: str) -> Resource:
    src = next(r for r in prod_plan.resources if r.name == "prediction-worker-pushes-invoker")
    inputs = {**plain(src.inputs), "member": "allUsers", "name": service}
    return dataclasses.replace(
        src,
        name="anyone",
        urn=f"{src.urn}-anyone",
        inputs=inputs,
        outputs={**plain(src.outputs), **inputs},
        dependencies=(),
    )


@pytest.mark.parametrize("with_service", [True, False], ids=["service-in-request", "grant-alone"])
def test_a_public_invoker_grant_is_rejected_with_or_without_its_service(
    analyzer, prod_plan: Plan, with_service: bool
) -> None:
    grant = _public_grant(prod_plan, "prediction-worker")
    resources = [*prod_plan.resources, grant] if with_service else [grant]
    diagnostics = analyze(analyzer, resources)
    mandatory = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
    pf09 = [d for d in diagnostics if d.policyName == "PF09-no-public-invoker"]
    assert [(d.urn, d.enforcementLevel) for d in pf09] == [(grant.urn, mandatory)], [
        (d.policyName, d.message) for d in diagnostics
    ]
    assert "allUsers may invoke" in pf09[0].message
    assert not [d for d in diagnostics if "PF09 unverifiable" in d.message]


def test_an_uncovered_subscription_violates_pf15(analyzer, prod_plan: Plan) -> None:
    broken = [
        r
        for r in prod_plan.resources
        if not (r.type == T.ALERT_POLICY and r.name.startswith("alert-dead-letters-"))
    ]
    diagnostics = analyze(analyzer, broken)
    assert {d.policyName for d in diagnostics} == {"PF15-alert-coverage"}, [
        d.message for d in diagnostics
    ]
    dead_letter_subs = {
        r.urn for r in broken if r.type == T.SUBSCRIPTION and not r.get("pushConfig")
    }
    assert {d.urn for d in diagnostics} == dead_letter_subs
    mandatory = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
    assert all(d.enforcementLevel == mandatory for d in diagnostics)


def test_a_tagged_image_violates_pf10(analyzer, prod_plan: Plan) -> None:
    def tagged(r: Resource) -> Resource:
        if r.type != T.CLOUD_RUN or r.name != "prediction-worker":
            return r
        template = plain(r.inputs["template"])
        template["containers"][0]["image"] = "us-west2-docker.pkg.dev/p/r/prediction-worker:v1"
        inputs = {**plain(r.inputs), "template": template}
        return dataclasses.replace(r, inputs=inputs, outputs={**plain(r.outputs), **inputs})

    diagnostics = analyze(analyzer, [tagged(r) for r in prod_plan.resources])
    assert [d.policyName for d in diagnostics] == ["PF10-image-by-digest-from-repo-root"]


def test_undecidable_checks_are_reported_unverifiable(analyzer, prod_plan: Plan) -> None:
    """Unknown values (a preview of new resources) and no dependency to join by."""

    def unknown_push(r: Resource) -> Resource:
        if r.type != T.SUBSCRIPTION or not r.get("pushConfig"):
            return r
        inputs = plain(r.inputs)
        inputs["pushConfig"]["oidcToken"]["serviceAccountEmail"] = UNKNOWN_STRING
        inputs["pushConfig"]["pushEndpoint"] = UNKNOWN_STRING
        return dataclasses.replace(r, inputs=inputs, outputs=inputs, dependencies=())

    diagnostics = analyze(analyzer, [unknown_push(r) for r in prod_plan.resources])
    # pulumi-policy puts the policy's description on the first line, the violation after it.
    pf01 = [d for d in diagnostics if d.message.split("\n", 1)[1].startswith("PF01 ")]
    assert len(pf01) == 2, [d.message for d in diagnostics]
    assert all(d.policyName == "preflight-unverifiable" for d in pf01), pf01
    assert all("PF01 unverifiable: " in d.message for d in pf01), [d.message for d in pf01]
    advisory = analyzer_pb2.EnforcementLevel.Value("ADVISORY")
    assert all(d.enforcementLevel == advisory for d in pf01)
    assert not [d for d in diagnostics if d.policyName.startswith("PF01")], "not as mandatory"


def test_a_first_preview_is_not_blocked_by_what_it_cannot_know_yet(
    analyzer, prod_plan: Plan
) -> None:
    """A fresh stack's preview: every new resource's URL, email and digest unknown."""
    from tests.policy.test_rules import _as_preview

    diagnostics = analyze(analyzer, _as_preview(prod_plan.resources))
    mandatory = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
    assert not [d.message for d in diagnostics if d.enforcementLevel == mandatory]
    # Still said, not passed: the job's URL is unknown until the coordinator exists.
    assert any("PF11 unverifiable: " in d.message for d in diagnostics), diagnostics
