"""Every preflight rule: the real stacks pass, and a broken variant fails with the rule's id.

Broken variants are either a broken config (evaluated through the real program) or a broken
program (the prod graph with a resource removed or changed, as someone editing the program or
adding a resource by hand would leave it).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from infra.paths import REPO_ROOT
from policy.findings import Facts
from policy.graph import UNKNOWN, Graph, Resource, T, normalise, thaw
from policy.rules import RULES, Finding, rule, rule_results, run_rules
from scripts.plan import Plan, evaluate_stack, plan_facts, preflight

PLATFORM = "prediction-platform:platform"


def with_inputs(r: Resource, fn: Callable[[dict], Any], **changes: Any) -> Resource:
    """``r`` with ``fn`` applied to its inputs (the mock echoes inputs into outputs: both)."""
    inputs = thaw(r.inputs)
    fn(inputs)
    computed = {k: v for k, v in r.outputs.items() if k not in r.inputs}
    return dataclasses.replace(
        r, inputs=normalise(inputs), outputs=normalise({**inputs, **thaw(computed)}), **changes
    )


def edit(resources: list[Resource], name: str, typ: str, fn: Callable[[dict], Any]) -> list:
    """The graph with ``fn`` applied to the inputs of the one resource ``typ``/``name``."""
    out, hits = [], 0
    for r in resources:
        if r.name == name and r.type == typ:
            r = with_inputs(r, fn)
            hits += 1
        out.append(r)
    assert hits == 1, f"{typ} {name}"
    return out


def drop(resources: list[Resource], name: str, typ: str) -> list[Resource]:
    out = [r for r in resources if not (r.name == name and r.type == typ)]
    assert len(out) == len(resources) - 1, f"{typ} {name}"
    return out


def add_copy(resources: list[Resource], name: str, typ: str, new: str, fn: Callable) -> list:
    src = next(r for r in resources if r.name == name and r.type == typ)
    return [*resources, with_inputs(src, fn, name=new, urn=f"{src.urn}-{new}")]


def failing(resources: list[Resource], rule_id: str, facts: Facts | None = None) -> list[Finding]:
    rule = next(r for r in RULES if r.id == rule_id)
    return [f for f in run_rules(resources, [rule], facts=facts) if f.blocks]


def assert_fails(resources: list[Resource], rule_id: str, resource: str, fragment: str) -> None:
    found = failing(resources, rule_id)
    assert any(f.resource == resource and fragment in f.message for f in found), (
        "\n".join(map(str, found)) or "no finding"
    )
    assert all(f.rule == rule_id for f in found)


def config_plan(prod_config: dict, fn: Callable[[dict], Any]) -> Plan:
    fn(prod_config[PLATFORM])
    return evaluate_stack("prod", config=prod_config, env={})


# --- The real stacks --------------------------------------------------------------------------


def test_there_are_fifteen_rules_with_unique_ids() -> None:
    assert [r.id for r in RULES] == [f"PF{i:02d}" for i in range(1, 16)]
    assert len({r.policy_name for r in RULES}) == 15


def test_a_rule_needs_a_free_id_and_its_docstring_title() -> None:
    def check(graph: Graph, rule: object) -> list[Finding]:
        """Flags nothing"""
        return []

    with pytest.raises(ValueError, match="PF01 registered twice"):
        rule("PF01")(check)
    check.__doc__ = None
    with pytest.raises(ValueError, match="PF99 .*no docstring"):
        rule("PF99")(check)
    assert [r.id for r in RULES] == [f"PF{i:02d}" for i in range(1, 16)]


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_the_stacks_pass_every_rule(stack: str, prod_plan: Plan, dev_plan: Plan) -> None:
    plan = {"prod": prod_plan, "dev": dev_plan}[stack]
    results = preflight(plan.resources)
    assert [r.status for r in results] == ["pass"] * 15, [
        str(f) for r in results for f in r.findings
    ]


# --- A broken variant per rule ----------------------------------------------------------------


def test_pf01_push_identity_without_invoker(prod_plan: Plan) -> None:
    broken = drop(prod_plan.resources, "prediction-worker-pushes-invoker", T.RUN_INVOKER_MEMBER)
    assert_fails(
        broken,
        "PF01",
        "Subscription 'prediction-request-worker'",
        "push identity push-worker@nba-props-platform.iam.gserviceaccount.com has no "
        "roles/run.invoker on Service 'prediction-worker'",
    )


def test_pf01_invoker_on_the_wrong_service(prod_plan: Plan) -> None:
    def to_coordinator(i: dict) -> None:
        i["name"] = "prediction-coordinator"

    broken = drop(prod_plan.resources, "prediction-worker-pushes-invoker", T.RUN_INVOKER_MEMBER)
    broken = add_copy(
        prod_plan.resources,
        "prediction-worker-pushes-invoker",
        T.RUN_INVOKER_MEMBER,
        "wrong",
        to_coordinator,
    )
    broken = [r for r in broken if r.name != "prediction-worker-pushes-invoker"]
    broken = [dataclasses.replace(r, dependencies=()) if r.name == "wrong" else r for r in broken]
    assert failing(broken, "PF01")


def test_pf02_dead_letter_topic_without_subscription(prod_plan: Plan) -> None:
    broken = drop(prod_plan.resources, "prediction-request-dead-letter", T.SUBSCRIPTION)
    assert_fails(
        broken,
        "PF02",
        "Topic 'prediction-request-dead-letter'",
        "dead-letter topic with no subscription",
    )


def test_pf02_topic_without_subscription(prod_plan: Plan) -> None:
    broken = drop(prod_plan.resources, "prediction-ready-coordinator", T.SUBSCRIPTION)
    assert_fails(broken, "PF02", "Topic 'prediction-ready'", "topic with no subscription")


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda i: i.pop("deadLetterPolicy"), "no dead_letter_policy"),
        (lambda i: i.pop("retryPolicy"), "no retry_policy"),
        (lambda i: i["deadLetterPolicy"].update(maxDeliveryAttempts=200), "outside 5-100"),
    ],
)
def test_pf03_push_subscription_policies(prod_plan: Plan, mutate, fragment: str) -> None:
    broken = edit(prod_plan.resources, "prediction-request-worker", T.SUBSCRIPTION, mutate)
    assert_fails(broken, "PF03", "Subscription 'prediction-request-worker'", fragment)


@pytest.mark.parametrize(
    ("name", "typ", "fragment"),
    [
        (
            "prediction-request-dead-letter-agent-publisher",
            T.TOPIC_IAM_MEMBER,
            "publisher on the dead-letter topic",
        ),
        (
            "prediction-request-worker-agent-subscriber",
            T.SUBSCRIPTION_IAM_MEMBER,
            "subscriber on this subscription",
        ),
    ],
)
def test_pf03_dead_letter_iam(prod_plan: Plan, name: str, typ: str, fragment: str) -> None:
    broken = drop(prod_plan.resources, name, typ)
    assert_fails(broken, "PF03", "Subscription 'prediction-request-worker'", fragment)


def test_pf04_ack_deadline_below_the_target_timeout(prod_config: dict) -> None:
    plan = config_plan(
        prod_config,
        lambda p: p["topics"]["prediction-request"]["subscriptions"][0].update(
            ack_deadline_seconds=60
        ),
    )
    assert_fails(
        plan.resources,
        "PF04",
        "Subscription 'prediction-request-worker'",
        "ack deadline 60s is below 600s",
    )


def _coordinator_key_ref(i: dict) -> dict:
    env = next(
        e for e in i["template"]["containers"][0]["envs"] if e["name"] == "COORDINATOR_API_KEY"
    )
    return env["valueSource"]["secretKeyRef"]


def test_pf05_secret_without_version(prod_plan: Plan) -> None:
    broken = drop(prod_plan.resources, "coordinator-api-key-version", T.SECRET_VERSION)
    assert_fails(broken, "PF05", "Service 'prediction-coordinator'", "has no SecretVersion")


def test_pf05_service_not_depending_on_the_version(prod_plan: Plan) -> None:
    version = next(r for r in prod_plan.resources if r.type == T.SECRET_VERSION)
    broken = [
        dataclasses.replace(r, dependencies=tuple(d for d in r.dependencies if d != version.urn))
        if r.type == T.CLOUD_RUN
        else r
        for r in prod_plan.resources
    ]
    assert_fails(broken, "PF05", "Service 'prediction-coordinator'", "does not depend on")


def test_pf07_contract_variable_missing(prod_plan: Plan) -> None:
    def drop_ready(i: dict) -> None:
        c = i["template"]["containers"][0]
        c["envs"] = [e for e in c["envs"] if e["name"] != "READY_TOPIC"]

    broken = edit(prod_plan.resources, "prediction-worker", T.CLOUD_RUN, drop_ready)
    assert_fails(broken, "PF07", "Service 'prediction-worker'", "missing READY_TOPIC")


def test_pf08_project_editor(prod_plan: Plan) -> None:
    broken = add_copy(
        prod_plan.resources,
        "prediction-coordinator-firestore-user",
        T.PROJECT_IAM_MEMBER,
        "worker-editor",
        lambda i: i.update(role="roles/editor"),
    )
    assert_fails(broken, "PF08", "IAMMember 'worker-editor'", "grants roles/editor on the project")


def test_pf09_all_users_on_a_private_service(prod_plan: Plan) -> None:
    broken = add_copy(
        prod_plan.resources,
        "prediction-worker-pushes-invoker",
        T.RUN_INVOKER_MEMBER,
        "worker-public",
        lambda i: i.update(member="allUsers"),
    )
    assert_fails(
        broken,
        "PF09",
        "ServiceIamMember 'worker-public'",
        "allUsers may invoke Service 'prediction-worker', which is not declared public",
    )


def test_pf09_fails_closed_on_a_public_grant_whose_service_is_not_in_the_stack(
    prod_plan: Plan,
) -> None:
    def elsewhere(i: dict) -> None:
        i.update(member="allAuthenticatedUsers", name="legacy-dashboard")

    grant = next(r for r in prod_plan.resources if r.name == "prediction-worker-pushes-invoker")
    broken = add_copy(
        prod_plan.resources, grant.name, T.RUN_INVOKER_MEMBER, "legacy-public", elsewhere
    )
    broken = [
        dataclasses.replace(r, dependencies=()) if r.name == "legacy-public" else r for r in broken
    ]
    assert_fails(
        broken,
        "PF09",
        "ServiceIamMember 'legacy-public'",
        "allAuthenticatedUsers may invoke service 'legacy-dashboard', which this stack does not "
        "declare public",
    )
    # The same grant alone (nothing else in the request): still a violation, not advisory.
    alone = [r for r in broken if r.name == "legacy-public"]
    assert failing(alone, "PF09") and not [f for f in run_rules(alone) if f.unverifiable]


def test_pf09_a_whole_iam_policy_with_all_users(prod_plan: Plan) -> None:
    policy = Resource.make(
        T.RUN_IAM_POLICY,
        "worker-policy",
        "urn:pulumi:prod::prediction-platform::gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy::worker-policy",
        inputs={
            "name": "prediction-worker",
            "policyData": '{"bindings":[{"role":"roles/run.invoker","members":["allUsers"]}]}',
        },
    )
    assert_fails(
        [*prod_plan.resources, policy],
        "PF09",
        "ServiceIamPolicy 'worker-policy'",
        "a whole IAM policy granting allUsers on service 'prediction-worker'",
    )


def test_pf08_fails_closed_on_an_account_it_cannot_place(prod_plan: Plan) -> None:
    broken = edit(
        prod_plan.resources,
        "prediction-worker",
        T.CLOUD_RUN,
        lambda i: i["template"].update(serviceAccount=UNKNOWN),
    )
    broken = [
        dataclasses.replace(r, dependencies=())
        if r.type == T.CLOUD_RUN and r.name == "prediction-worker"
        else r
        for r in broken
    ]
    assert_fails(broken, "PF08", "Service 'prediction-worker'", "cannot place")


FIRESTORE_GRANT = "prediction-coordinator-firestore-user"


def test_pf13_conditioned_on_the_deploy_lock_database(prod_plan: Plan) -> None:
    def to_lock(i: dict) -> None:
        i["condition"]["expression"] = (
            'resource.name == "projects/nba-props-platform/databases/deploy-lock"'
        )

    broken = edit(prod_plan.resources, FIRESTORE_GRANT, T.PROJECT_IAM_MEMBER, to_lock)
    assert_fails(
        broken,
        "PF13",
        f"IAMMember '{FIRESTORE_GRANT}'",
        "conditioned on database 'deploy-lock', which this stack does not declare",
    )


def test_pf13_a_condition_that_is_not_a_database_restriction(prod_plan: Plan) -> None:
    def loose(i: dict) -> None:
        i["condition"]["expression"] = 'resource.name.startsWith("projects/")'

    broken = edit(prod_plan.resources, FIRESTORE_GRANT, T.PROJECT_IAM_MEMBER, loose)
    assert_fails(broken, "PF13", f"IAMMember '{FIRESTORE_GRANT}'", "on the whole project")


def test_pf13_fails_closed_on_a_grant_it_cannot_place(prod_plan: Plan) -> None:
    def unplaced(i: dict) -> None:
        i.pop("condition")
        i["member"] = UNKNOWN

    broken = edit(prod_plan.resources, FIRESTORE_GRANT, T.PROJECT_IAM_MEMBER, unplaced)
    broken = [
        dataclasses.replace(r, dependencies=()) if r.name == FIRESTORE_GRANT else r for r in broken
    ]
    assert_fails(
        broken, "PF13", f"IAMMember '{FIRESTORE_GRANT}'", "an identity this check cannot place"
    )


def test_pf13_ignores_identities_that_run_nothing(prod_plan: Plan) -> None:
    def ops(i: dict) -> None:
        i.pop("condition")
        i["member"] = "group:firestore-admins@example.com"

    grants = add_copy(prod_plan.resources, FIRESTORE_GRANT, T.PROJECT_IAM_MEMBER, "ops-fs", ops)
    grants = [dataclasses.replace(r, dependencies=()) if r.name == "ops-fs" else r for r in grants]
    assert not failing(grants, "PF13")


def test_pf14_a_push_only_service_with_all_ingress(prod_config: dict) -> None:
    plan = config_plan(
        prod_config, lambda p: p["services"]["prediction-worker"].update(ingress="all")
    )
    assert_fails(
        plan.resources,
        "PF14",
        "Service 'prediction-worker'",
        "ingress INGRESS_TRAFFIC_ALL but only Pub/Sub pushes and scheduler jobs of this project "
        "call it",
    )


def test_pf10_image_check_fails(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(
        REPO_ROOT,
        checkout,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", ".tools", "__pycache__", ".*_cache", ".hypothesis", "tests"
        ),
    )
    dockerfile = checkout / "images" / "worker.Dockerfile"
    dockerfile.write_text(re.sub(r"(?m)^USER .*$", "", dockerfile.read_text()))
    plan = evaluate_stack("prod", root=checkout, env={})
    found = failing(plan.resources, "PF10", plan_facts(plan.resources))
    assert [f.resource for f in found] == ["Image 'prediction-worker-image'"], found
    assert found[0].message.startswith("image check failed:")


def test_pf10_reports_the_image_check_it_is_handed(prod_plan: Plan) -> None:
    """The image check's result enters as data: the rule never runs the check itself."""
    images = [r for r in prod_plan.resources if r.type == T.IMAGE]
    worker = next(r for r in images if r.name == "prediction-worker-image")
    facts = Facts(image_checks={r.urn: () for r in images} | {worker.urn: ("runs as root",)})
    found = failing(prod_plan.resources, "PF10", facts)
    assert [(f.resource, f.message) for f in found] == [
        ("Image 'prediction-worker-image'", "image check failed: runs as root")
    ]


def test_pf10_without_the_image_check_is_unverifiable_never_passed(prod_plan: Plan) -> None:
    rule = next(r for r in RULES if r.id == "PF10")
    (result,) = rule_results(prod_plan.resources, [rule])
    assert result.status == "unverifiable"
    assert sorted(f.resource for f in result.findings) == [
        "Image 'prediction-coordinator-image'",
        "Image 'prediction-worker-image'",
    ]
    assert all("image check did not run here" in f.message for f in result.findings)


def test_pf11_job_identity_may_not_invoke(prod_plan: Plan) -> None:
    broken = drop(
        prod_plan.resources, "prediction-coordinator-scheduler-invoker", T.RUN_INVOKER_MEMBER
    )
    assert_fails(broken, "PF11", "Job 'cleanup-stuck'", "has no roles/run.invoker")


def test_pf11_background_work_with_cpu_throttled(prod_config: dict) -> None:
    plan = config_plan(
        prod_config, lambda p: p["services"]["prediction-coordinator"].update(cpu_idle=True)
    )
    assert_fails(plan.resources, "PF11", "Service 'prediction-coordinator'", "set cpu_idle: false")


def test_pf11_coordinator_without_stall_check(prod_config: dict) -> None:
    plan = config_plan(prod_config, lambda p: p["schedules"].pop("check-stalled"))
    assert_fails(
        plan.resources,
        "PF11",
        "Service 'prediction-coordinator'",
        "no scheduled stall check: nothing calls /check-stalled",
    )


def test_pf12_firestore_without_deletion_protection(prod_config: dict) -> None:
    plan = config_plan(prod_config, lambda p: p["firestore"].update(deletion_protection=False))
    assert_fails(plan.resources, "PF12", "Database 'firestore'", "DELETE_PROTECTION_ENABLED")


def test_pf12_production_service_without_deletion_protection(prod_config: dict) -> None:
    plan = config_plan(
        prod_config, lambda p: p["services"]["prediction-worker"].update(deletion_protection=False)
    )
    assert_fails(plan.resources, "PF12", "Service 'prediction-worker'", "deletion_protection")


def test_pf12_does_not_apply_to_dev(dev_plan: Plan) -> None:
    assert not failing(dev_plan.resources, "PF12")


def test_pf15_passes_on_both_stacks(prod_plan: Plan, dev_plan: Plan) -> None:
    assert not failing(prod_plan.resources, "PF15")
    assert not failing(dev_plan.resources, "PF15")


def test_pf15_a_topology_nobody_watches_fails_for_every_subscription(prod_config: dict) -> None:
    plan = config_plan(prod_config, lambda p: p.pop("monitoring"))
    found = failing(plan.resources, "PF15")
    assert {f.resource for f in found} == {
        "Subscription 'prediction-request-worker'",
        "Subscription 'prediction-ready-coordinator'",
        "Subscription 'prediction-request-dead-letter'",
        "Subscription 'prediction-ready-dead-letter'",
    }, "\n".join(map(str, found))


def test_pf15_an_uncovered_push_subscription(prod_plan: Plan) -> None:
    broken = drop(
        prod_plan.resources, "alert-backlog-age-prediction-request-worker-prod", T.ALERT_POLICY
    )
    assert_fails(
        broken,
        "PF15",
        "Subscription 'prediction-request-worker'",
        "no alert on pubsub.googleapis.com/subscription/oldest_unacked_message_age",
    )
    assert len(failing(broken, "PF15")) == 1


# --- Unknown values (a real preview of new resources) -----------------------------------------


def _as_preview(resources: list[Resource]) -> list[Resource]:
    """Every provider-computed value unknown, as in the preview of a stack not yet created."""
    computed = re.compile(r"@|\.run\.app|^projects/|sha256:|^serviceAccount:service-")

    def blank(value: Any) -> Any:
        if isinstance(value, MappingProxyType | dict):
            return {k: blank(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [blank(v) for v in value]
        if isinstance(value, str) and computed.search(value):
            return UNKNOWN
        return value

    return [
        dataclasses.replace(
            r,
            inputs=normalise(blank(r.inputs)),
            outputs=normalise(
                {
                    k: (
                        UNKNOWN
                        if k in ("email", "uri", "id", "version", "ref", "digest", "name", "member")
                        else v
                    )
                    for k, v in blank(r.outputs).items()
                }
            ),
        )
        for r in resources
    ]


def test_rules_decide_from_dependencies_when_values_are_unknown(prod_plan: Plan) -> None:
    preview = _as_preview(prod_plan.resources)
    assert Graph(preview).of_type(T.CLOUD_RUN)[0].out("uri") is UNKNOWN
    blocking = [f for f in run_rules(preview) if f.blocks]
    assert not blocking, "\n".join(map(str, blocking))
    broken = drop(preview, "prediction-worker-pushes-invoker", T.RUN_INVOKER_MEMBER)
    assert failing(broken, "PF01"), "a missing binding is still found by URN"


def test_security_rules_decide_from_dependencies_in_a_preview(prod_plan: Plan) -> None:
    preview = _as_preview(prod_plan.resources)
    broken = edit(preview, FIRESTORE_GRANT, T.PROJECT_IAM_MEMBER, lambda i: i.pop("condition"))
    assert failing(broken, "PF13"), "the runtime identity is placed by URN"
    internal = edit(
        preview,
        "prediction-worker",
        T.CLOUD_RUN,
        lambda i: i.update(ingress="INGRESS_TRAFFIC_ALL"),
    )
    assert failing(internal, "PF14"), "the push identity is placed by URN"


def test_undecidable_is_unverifiable_never_passed(prod_plan: Plan) -> None:
    preview = _as_preview(prod_plan.resources)
    cut = [
        dataclasses.replace(r, dependencies=()) if r.type == T.SUBSCRIPTION else r for r in preview
    ]
    results = {r.rule.id: r for r in rule_results(cut)}
    assert results["PF01"].status == "unverifiable"
    assert all(f.unverifiable for f in results["PF01"].findings)
    assert any("cannot tell" in f.message for f in results["PF01"].findings)


WORKER_TAG = "us-west2-docker.pkg.dev/nba-props-platform/platform-images/prediction-worker:v1"


@pytest.mark.parametrize(
    ("name", "typ", "mutate", "rule", "resource", "fragment"),
    [
        pytest.param(
            "prediction-request-worker",
            T.SUBSCRIPTION,
            lambda i: i["pushConfig"].pop("oidcToken"),
            "PF01",
            "Subscription 'prediction-request-worker'",
            "OIDC",
            id="pf01_push_without_oidc",
        ),
        pytest.param(
            "prediction-ready-dead-letter",
            T.SUBSCRIPTION,
            lambda i: i.pop("expirationPolicy"),
            "PF04",
            "Subscription 'prediction-ready-dead-letter'",
            "31 days (the default)",
            id="pf04_expiring_subscription",
        ),
        pytest.param(
            "prediction-coordinator",
            T.CLOUD_RUN,
            lambda i: _coordinator_key_ref(i).update(version="latest"),
            "PF05",
            "Service 'prediction-coordinator'",
            "version 'latest'",
            id="pf05_secret_referenced_as_latest",
        ),
        pytest.param(
            "prediction-worker",
            T.CLOUD_RUN,
            lambda i: i["template"]["containers"][0]["envs"].append(
                {"name": "STRIPE_API_KEY", "value": "sk_live_123"}
            ),
            "PF06",
            "Service 'prediction-worker'",
            "env STRIPE_API_KEY is a literal",
            id="pf06_credential_as_a_literal",
        ),
        pytest.param(
            "prediction-worker",
            T.CLOUD_RUN,
            lambda i: i["template"].update(
                serviceAccount="123456789012-compute@developer.gserviceaccount.com"
            ),
            "PF08",
            "Service 'prediction-worker'",
            "default compute account",
            id="pf08_default_compute_account",
        ),
        pytest.param(
            "prediction-worker",
            T.CLOUD_RUN,
            lambda i: i["template"].pop("serviceAccount"),
            "PF08",
            "Service 'prediction-worker'",
            "no service account",
            id="pf08_no_service_account",
        ),
        pytest.param(
            FIRESTORE_GRANT,
            T.PROJECT_IAM_MEMBER,
            lambda i: i.pop("condition"),
            "PF13",
            f"IAMMember '{FIRESTORE_GRANT}'",
            "roles/datastore.user on the whole project for a runtime identity: it also reaches "
            "the deploy-lock database",
            id="pf13_unconditioned_project_wide_firestore_role",
        ),
        pytest.param(
            "prediction-coordinator",
            T.CLOUD_RUN,
            lambda i: i.update(ingress="INGRESS_TRAFFIC_INTERNAL_ONLY"),
            "PF14",
            "Service 'prediction-coordinator'",
            "operator callers are granted",
            id="pf14_operators_cannot_reach_an_internal_service",
        ),
        pytest.param(
            "prediction-worker",
            T.CLOUD_RUN,
            lambda i: i.pop("ingress"),
            "PF14",
            "Service 'prediction-worker'",
            "ingress INGRESS_TRAFFIC_ALL",
            id="pf14_an_unset_ingress_is_all",
        ),
        pytest.param(
            "prediction-worker",
            T.CLOUD_RUN,
            lambda i: i["template"]["containers"][0].update(image=WORKER_TAG),
            "PF10",
            "Service 'prediction-worker'",
            "is a tag",
            id="pf10_image_by_tag",
        ),
        pytest.param(
            "prediction-worker-image",
            T.IMAGE,
            lambda i: i.update(context={"location": "services/worker"}),
            "PF10",
            "Image 'prediction-worker-image'",
            "build from the repo root with images/<service>.Dockerfile",
            id="pf10_context_not_the_repo_root",
        ),
        pytest.param(
            "check-stalled",
            T.SCHEDULER_JOB,
            lambda i: i["httpTarget"].pop("oidcToken"),
            "PF11",
            "Job 'check-stalled'",
            "without an OIDC token",
            id="pf11_job_without_oidc",
        ),
        pytest.param(
            "alert-dead-letters-prediction-ready-prod-dead-letter-sub",
            T.ALERT_POLICY,
            lambda i: i.update(enabled=False),
            "PF15",
            "Subscription 'prediction-ready-dead-letter'",
            "dead letters pile up unnoticed",
            id="pf15_an_uncovered_dead_letter_subscription",
        ),
        pytest.param(
            "alert-stuck-batches",
            T.ALERT_POLICY,
            lambda i: i.update(notificationChannels=[]),
            "PF15",
            "AlertPolicy 'alert-stuck-batches'",
            "notifies nobody",
            id="pf15_an_alert_that_notifies_nobody",
        ),
    ],
)
def test_one_edit_fails_its_rule(
    prod_plan: Plan,
    name: str,
    typ: str,
    mutate: Callable[[dict], Any],
    rule: str,
    resource: str,
    fragment: str,
) -> None:
    assert_fails(edit(prod_plan.resources, name, typ, mutate), rule, resource, fragment)
