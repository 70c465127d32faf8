"""The program under Pulumi's mocks (preview=False, so every apply runs), prod and dev stacks.

Graph checks are the preflight rules (``policy/rules/``), run here on the plans: written
once, reused by ``platform plan``, the deploy pipeline and the policy pack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import limits
from infra.build_context import image_tag
from infra.config import ConfigError
from infra.naming import service_account_email, service_account_member
from infra.paths import PROGRAM_DIR, REPO_ROOT
from policy.graph import SECRET, Resource, T
from policy.rules import RULES, run_rules
from scripts.plan import Plan, PlanError, evaluate_stack

PLATFORM = "prediction-platform:platform"
DIGEST = "us-west2-docker.pkg.dev/nba-props-platform/platform-images/prediction-worker@sha256:" + (
    "ab" * 32
)

# Resource types and counts of the prod stack: a resource silently added or lost fails here.
PROD_INVENTORY = {
    "docker-build:index:Image": 2,
    "gcp:artifactregistry/repository:Repository": 1,
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": 2,  # deployer, builder
    "gcp:cloudrunv2/service:Service": 2,
    # push x2, scheduler x1, and one per operator (prod: one group)
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": 4,
    "gcp:cloudscheduler/job:Job": 2,
    "gcp:firestore/database:Database": 1,
    "gcp:firestore/index:Index": None,  # one per shared/indexes.py spec, checked below
    "gcp:projects/iAMMember:IAMMember": 1,  # datastore.user, conditioned on the database
    # 7 + logging and monitoring (issue 17: the batch-events metric, alerts, dashboard).
    "gcp:projects/service:Service": 9,
    "gcp:pubsub/subscription:Subscription": 4,
    "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": 2,
    "gcp:pubsub/topic:Topic": 4,
    "gcp:pubsub/topicIAMMember:TopicIAMMember": 4,
    "gcp:secretmanager/secret:Secret": 1,
    "gcp:secretmanager/secretIamMember:SecretIamMember": 1,
    "gcp:secretmanager/secretVersion:SecretVersion": 1,
    "gcp:serviceaccount/account:Account": 5,
    # the deployer acts as each of 5 accounts; Pub/Sub's agent mints tokens for 2 push identities
    "gcp:serviceaccount/iAMMember:IAMMember": 7,
    # Issue 17, derived from the topology: per dead-letter subscription 1 (2), per push
    # subscription 2 (4), per service 2 (4), stuck batches 1, per scheduler job 1 (2) = 13.
    "gcp:monitoring/alertPolicy:AlertPolicy": 13,
    "gcp:monitoring/notificationChannel:NotificationChannel": 1,  # one email in Pulumi.prod.yaml
    "gcp:monitoring/dashboard:Dashboard": 1,
    "gcp:logging/metric:Metric": 1,
}
COMPONENTS = {
    # The former Platform, one component per concept (issue 15): same resources inside.
    "platform:index:Apis": 1,
    "platform:index:ImageRepository": 1,
    "platform:index:Database": 1,
    "platform:index:Image": 2,
    "platform:index:Service": 2,
    "platform:index:Topic": 2,
    "platform:index:Secret": 1,
    "platform:index:Schedule": 2,
    "platform:index:NotificationChannels": 1,
    "platform:index:BatchEventsMetric": 1,
    "platform:index:Alerts": 1,
    "platform:index:Dashboard": 1,
}


def one(plan: Plan, typ: str, name: str) -> Resource:
    found = [r for r in plan.resources if r.type == typ and r.name == name]
    assert len(found) == 1, f"expected one {typ} named {name}, got {len(found)}"
    return found[0]


def envs(svc: Resource) -> dict[str, Any]:
    return {e["name"]: e for e in svc.get("template.containers[0].envs")}


@pytest.fixture(params=["prod", "dev"])
def plan(request: pytest.FixtureRequest, prod_plan: Plan, dev_plan: Plan) -> Plan:
    return {"prod": prod_plan, "dev": dev_plan}[request.param]


# --- Inventory and structure ------------------------------------------------------------------


def test_prod_inventory(prod_plan: Plan) -> None:
    from shared.indexes import REQUIRED_INDEXES

    expected = dict(PROD_INVENTORY, **{"gcp:firestore/index:Index": len(REQUIRED_INDEXES)})
    assert prod_plan.counts() == expected
    components: dict[str, int] = {}
    for r in prod_plan.resources:
        if not r.custom:
            components[r.type] = components.get(r.type, 0) + 1
    assert components == COMPONENTS


def test_every_resource_belongs_to_a_component(plan: Plan) -> None:
    graph = plan.graph
    for r in plan.custom():
        component = graph.component_of(r)
        assert component is not None and component.type.startswith("platform:index:"), r.urn


def test_components_wait_for_the_apis(prod_plan: Plan) -> None:
    apis = {r.urn for r in prod_plan.of_type(T.PROJECT_SERVICE)}
    for typ in (T.TOPIC, T.CLOUD_RUN, T.SCHEDULER_JOB, T.SECRET, T.SERVICE_ACCOUNT):
        for r in prod_plan.of_type(typ):
            assert apis <= set(r.dependencies), f"{r.urn} does not wait for the APIs"


def test_stack_outputs(prod_plan: Plan) -> None:
    out = prod_plan.outputs
    assert set(out["service_urls"]) == {"prediction-coordinator", "prediction-worker"}
    assert all(u.startswith("https://") for u in out["service_urls"].values())
    assert out["topic_names"] == {
        "prediction-request": "prediction-request-prod",
        "prediction-ready": "prediction-ready-prod",
    }
    assert out["dead_letter_subscriptions"] == {
        "prediction-request": "prediction-request-prod-dead-letter-sub",
        "prediction-ready": "prediction-ready-prod-dead-letter-sub",
    }


def test_physical_names_carry_the_stack_where_they_must(dev_plan: Plan, prod_plan: Plan) -> None:
    def names(plan: Plan, typ: str) -> set[str]:
        return {r.get("name") for r in plan.of_type(typ)}

    prod_topics = names(prod_plan, T.TOPIC)
    assert names(dev_plan, T.TOPIC) == {n.replace("-prod", "-dev") for n in prod_topics}
    assert all(n.endswith(("-dev", "-dev-dead-letter")) for n in names(dev_plan, T.TOPIC))
    assert names(dev_plan, T.CLOUD_RUN) == names(prod_plan, T.CLOUD_RUN)
    assert {r.get("project") for r in dev_plan.of_type(T.CLOUD_RUN)} == {"nba-props-platform-dev"}


def test_the_service_account_email_is_the_one_google_documents(prod_plan: Plan) -> None:
    email = service_account_email("run-coordinator", "nba-props-platform")
    assert email == "run-coordinator@nba-props-platform.iam.gserviceaccount.com"
    assert limits.SERVICE_ACCOUNT_EMAIL_RE.fullmatch(email), email
    assert service_account_member(email) == f"serviceAccount:{email}"
    # What the mocks return for each account of the stack is the same address.
    for account in prod_plan.of_type(T.SERVICE_ACCOUNT):
        expected = service_account_email(account.get("accountId"), account.get("project"))
        assert account.out("email") == expected, account.urn


# --- Graph checks: the preflight rules, on both stacks -----------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_the_stack_passes_every_rule(plan: Plan, rule) -> None:
    findings = [f for f in run_rules(plan.resources, [rule]) if f.blocks]
    assert not findings, "\n".join(map(str, findings))


def test_every_push_identity_invokes_exactly_its_target(prod_plan: Plan) -> None:
    graph = prod_plan.graph
    for sub in prod_plan.of_type(T.SUBSCRIPTION):
        if not sub.get("pushConfig"):
            continue
        email = sub.get("pushConfig.oidcToken.serviceAccountEmail")
        grants = [
            g
            for g in prod_plan.of_type(T.RUN_INVOKER_MEMBER)
            if g.get("member") == f"serviceAccount:{email}"
        ]
        targets = {g.get("name") for g in grants}
        svc = [
            s
            for s in graph.of_type(T.CLOUD_RUN)
            if sub.get("pushConfig.pushEndpoint").startswith(s.out("uri"))
        ]
        assert targets == {svc[0].get("name")}, f"{sub.urn}: invoker on {targets}"
        assert sub.get("pushConfig.oidcToken.audience") == svc[0].out("uri")


def test_no_service_runs_as_the_default_compute_account(plan: Plan) -> None:
    for svc in plan.of_type(T.CLOUD_RUN):
        sa = svc.get("template.serviceAccount")
        assert sa and "compute@developer" not in sa, svc.urn


def test_no_all_users_anywhere(plan: Plan) -> None:
    for r in plan.custom():
        assert "allUsers" not in json.dumps(r.inputs, default=str), r.urn


def test_runtime_roles_derive_from_the_config(prod_plan: Plan) -> None:
    def member(sa: str) -> str:
        return f"serviceAccount:{sa}@nba-props-platform.iam.gserviceaccount.com"

    publishers = {
        (r.get("topic"), r.get("member"))
        for r in prod_plan.of_type(T.TOPIC_IAM_MEMBER)
        if r.get("role") == "roles/pubsub.publisher" and "gcp-sa-pubsub" not in r.get("member")
    }
    assert publishers == {
        ("prediction-request-prod", member("run-coordinator")),
        ("prediction-ready-prod", member("run-worker")),
    }
    accessors = {(r.get("member")) for r in prod_plan.of_type(T.SECRET_IAM_MEMBER)}
    assert accessors == {member("run-coordinator")}
    project_roles = {
        (r.get("role"), r.get("member")) for r in prod_plan.of_type(T.PROJECT_IAM_MEMBER)
    }
    # The worker's code never touches Firestore (shared/contract.py): no grant for it.
    assert project_roles == {("roles/datastore.user", member("run-coordinator"))}


def test_firestore_access_is_scoped_to_the_stacks_own_database(plan: Plan) -> None:
    """No runtime identity may touch the bootstrap's deploy-lock database (same project)."""
    database = f"projects/{plan.config.project}/databases/{plan.config.platform.firestore.database}"
    grants = [r for r in plan.of_type(T.PROJECT_IAM_MEMBER) if "datastore" in r.get("role")]
    assert grants
    for grant in grants:
        condition = grant.get("condition") or {}
        assert condition.get("expression") == f'resource.name == "{database}"', grant.urn
        assert condition.get("title"), grant.urn
        assert "deploy-lock" not in json.dumps(dict(condition)), grant.urn


def test_the_worker_is_internal_only_and_the_coordinator_reaches_its_operators(
    plan: Plan,
) -> None:
    ingress = {r.get("name"): r.get("ingress") for r in plan.of_type(T.CLOUD_RUN)}
    assert ingress == {
        "prediction-worker": "INGRESS_TRAFFIC_INTERNAL_ONLY",
        "prediction-coordinator": "INGRESS_TRAFFIC_ALL",
    }
    operators = plan.config.platform.services["prediction-coordinator"].operators
    assert operators
    grants = [
        r
        for r in plan.of_type(T.RUN_INVOKER_MEMBER)
        if r.get("member").startswith(("group:", "user:"))
    ]
    # One member resource per operator, invoker on the coordinator only.
    assert sorted(g.get("member") for g in grants) == sorted(operators)
    for g in grants:
        assert (g.get("role"), g.get("name")) == ("roles/run.invoker", "prediction-coordinator")


def test_pubsubs_agent_mints_tokens_for_exactly_each_push_identity(prod_plan: Plan) -> None:
    agent = "serviceAccount:service-386078378331@gcp-sa-pubsub.iam.gserviceaccount.com"
    by_name = {a.out("name"): a.get("accountId") for a in prod_plan.of_type(T.SERVICE_ACCOUNT)}
    grants = [
        g
        for g in prod_plan.of_type(T.SERVICE_ACCOUNT_IAM_MEMBER)
        if g.get("role") == "roles/iam.serviceAccountTokenCreator"
    ]
    assert {g.get("member") for g in grants} == {agent}
    assert sorted(by_name[g.get("serviceAccountId")] for g in grants) == [
        "push-coordinator",
        "push-worker",
    ]
    # A push subscription is created only once the agent may sign as its identity.
    for sub in prod_plan.of_type(T.SUBSCRIPTION):
        if sub.get("pushConfig"):
            assert any(g.urn in sub.dependencies for g in grants), sub.urn


# --- The deploy identity: the bootstrap's, named in config, granted only on owned resources ---

DEPLOYER = "serviceAccount:ci-deployer@nba-props-platform.iam.gserviceaccount.com"


def test_the_stack_creates_no_deploy_identity(plan: Plan) -> None:
    deployer = plan.config.platform.deploy.service_account
    for account in plan.of_type(T.SERVICE_ACCOUNT):
        email = f"{account.get('accountId')}@{plan.config.project}.iam.gserviceaccount.com"
        assert email != deployer, f"{account.urn}: the bootstrap creates the deploy identity"
        assert "deploy" not in account.get("accountId"), account.urn
    for grant in plan.of_type(T.PROJECT_IAM_MEMBER):
        assert grant.get("member") != f"serviceAccount:{deployer}", (
            f"{grant.urn}: the deploy identity's project roles are the bootstrap's"
        )


def test_the_deployer_acts_as_exactly_each_account_the_stack_creates(prod_plan: Plan) -> None:
    accounts = {a.out("name"): a for a in prod_plan.of_type(T.SERVICE_ACCOUNT)}
    grants = [
        g for g in prod_plan.of_type(T.SERVICE_ACCOUNT_IAM_MEMBER) if g.get("member") == DEPLOYER
    ]
    for g in grants:
        assert g.get("role") == "roles/iam.serviceAccountUser", g.urn
    # One member resource per grant, one grant per account: runtime, push and scheduler.
    on = [g.get("serviceAccountId") for g in grants]
    assert sorted(on) == sorted(accounts), on
    assert {accounts[a].get("accountId") for a in on} == {
        "run-coordinator",
        "run-worker",
        "push-coordinator",
        "push-worker",
        "sched-coordinator",
    }


def test_the_deployer_pushes_to_exactly_its_repository(prod_plan: Plan) -> None:
    grants = prod_plan.of_type(T.REPOSITORY_IAM_MEMBER)
    (grant,) = [g for g in grants if g.get("member") == DEPLOYER]
    assert grant.get("role") == "roles/artifactregistry.writer", grant.urn
    assert grant.get("repository") == "platform-images", grant.urn


def test_old_images_are_cleaned_up_but_recent_ones_kept_for_rollback(prod_plan: Plan) -> None:
    (repo,) = prod_plan.of_type(T.REPOSITORY)
    policies = {p["action"]: p for p in repo.get("cleanupPolicies")}
    assert repo.get("cleanupPolicyDryRun") is False, repo.urn
    # Every image is tagged (content hash): a DELETE limited to untagged versions would never act.
    assert policies["DELETE"]["condition"] == {"tagState": "ANY", "olderThan": "7776000s"}
    assert policies["KEEP"]["mostRecentVersions"]["keepCount"] >= 10, repo.urn


def test_what_runs_or_signs_as_an_account_waits_for_the_deployers_act_as(prod_plan: Plan) -> None:
    acts_as = {
        g.get("serviceAccountId"): g.urn
        for g in prod_plan.of_type(T.SERVICE_ACCOUNT_IAM_MEMBER)
        if g.get("member") == DEPLOYER
    }
    by_email = {a.out("email"): a.out("name") for a in prod_plan.of_type(T.SERVICE_ACCOUNT)}
    users = (
        [(svc, svc.get("template.serviceAccount")) for svc in prod_plan.of_type(T.CLOUD_RUN)]
        + [
            (sub, sub.get("pushConfig.oidcToken.serviceAccountEmail"))
            for sub in prod_plan.of_type(T.SUBSCRIPTION)
            if sub.get("pushConfig")
        ]
        + [
            (job, job.get("httpTarget.oidcToken.serviceAccountEmail"))
            for job in prod_plan.of_type(T.SCHEDULER_JOB)
        ]
    )
    assert len(users) == 2 + 2 + 2
    for resource, email in users:
        grant = acts_as[by_email[email]]
        assert grant in resource.dependencies, f"{resource.urn} does not wait for {grant}"


def test_topic_names_reach_the_services_as_env(prod_plan: Plan) -> None:
    coord = envs(one(prod_plan, T.CLOUD_RUN, "prediction-coordinator"))
    worker = envs(one(prod_plan, T.CLOUD_RUN, "prediction-worker"))
    assert coord["REQUEST_TOPIC"]["value"] == "prediction-request-prod"
    assert worker["READY_TOPIC"]["value"] == "prediction-ready-prod"
    assert coord["GCP_PROJECT_ID"]["value"] == "nba-props-platform"


def test_secret_env_is_pinned_to_the_created_version(prod_plan: Plan) -> None:
    coord = one(prod_plan, T.CLOUD_RUN, "prediction-coordinator")
    version = one(prod_plan, T.SECRET_VERSION, "coordinator-api-key-version")
    ref = envs(coord)["COORDINATOR_API_KEY"]["valueSource"]["secretKeyRef"]
    assert ref["version"] == version.out("version") == "1"
    assert ref["secret"] == "coordinator-api-key"
    assert version.urn in coord.dependencies
    assert version.get("secretData") == SECRET, "config secrets are never in the plan"


def test_coordinator_settings(prod_plan: Plan) -> None:
    coord = one(prod_plan, T.CLOUD_RUN, "prediction-coordinator")
    container = coord.get("template.containers[0]")
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert container["resources"]["cpuIdle"] is False
    assert coord.get("template.timeout") == "3600s"
    assert coord.get("deletionProtection") is True
    assert coord.get("ingress") == "INGRESS_TRAFFIC_ALL"


def test_push_subscriptions(prod_plan: Plan) -> None:
    sub = one(prod_plan, T.SUBSCRIPTION, "prediction-ready-coordinator")
    assert sub.get("ackDeadlineSeconds") == 600
    assert sub.get("pushConfig.pushEndpoint").endswith(".a.run.app/complete")
    assert sub.get("retryPolicy") == {"minimumBackoff": "10s", "maximumBackoff": "600s"}
    assert sub.get("deadLetterPolicy.maxDeliveryAttempts") == 5
    assert sub.get("deadLetterPolicy.deadLetterTopic").endswith("prediction-ready-prod-dead-letter")
    assert sub.get("expirationPolicy.ttl") == ""
    invoker = one(prod_plan, T.RUN_INVOKER_MEMBER, "prediction-coordinator-pushes-invoker")
    assert invoker.urn in sub.dependencies, "created only once its identity may invoke"


def test_dead_letters_are_kept(prod_plan: Plan) -> None:
    for sub in prod_plan.of_type(T.SUBSCRIPTION):
        if sub.name.endswith("-dead-letter"):
            assert not sub.get("pushConfig")
            assert sub.get("messageRetentionDuration") == "604800s"


def test_scheduler_jobs(prod_plan: Plan) -> None:
    job = one(prod_plan, T.SCHEDULER_JOB, "check-stalled")
    url = prod_plan.outputs["service_urls"]["prediction-coordinator"]
    assert job.get("httpTarget.uri") == f"{url}/check-stalled"
    assert job.get("httpTarget.oidcToken") == {
        "serviceAccountEmail": "sched-coordinator@nba-props-platform.iam.gserviceaccount.com",
        "audience": url,
    }
    assert job.get("schedule") == "*/15 * * * *"
    assert job.get("name") == "check-stalled-prod"


def test_image_is_built_from_the_repo_root_and_deployed_by_digest(prod_plan: Plan) -> None:
    image = one(prod_plan, T.IMAGE, "prediction-worker-image")
    assert image.get("buildOnPreview") is False
    assert image.get("push") is True
    assert (PROGRAM_DIR / image.get("context.location")).resolve() == REPO_ROOT
    assert image.get("dockerfile.location").endswith("images/worker.Dockerfile")
    assert image.get("tags")[0].endswith(f"/prediction-worker:{image_tag('prediction-worker')}")
    worker = one(prod_plan, T.CLOUD_RUN, "prediction-worker")
    assert worker.get("template.containers[0].image") == image.out("ref")
    assert "@sha256:" in image.out("ref")
    assert image.urn in worker.dependencies


def test_deploy_labels_are_on_the_service_not_the_revision() -> None:
    plan = evaluate_stack(
        "prod", env={"PLATFORM_GIT_COMMIT": "0123abc", "PLATFORM_LOCK_TOKEN": "Tok:42"}
    )
    for svc in plan.of_type(T.CLOUD_RUN):
        assert svc.get("labels")["git-commit"] == "0123abc"
        assert svc.get("labels")["deploy-lock-token"] == "tok-42"
        assert "labels" not in svc.get("template"), svc.urn


# --- Variants ---------------------------------------------------------------------------------


def test_image_override_from_env_replaces_the_build() -> None:
    plan = evaluate_stack(
        "prod", env={"PLATFORM_IMAGE_OVERRIDES": json.dumps({"prediction-worker": DIGEST})}
    )
    assert [r.name for r in plan.of_type(T.IMAGE)] == ["prediction-coordinator-image"]
    assert one(plan, T.CLOUD_RUN, "prediction-worker").get("template.containers[0].image") == DIGEST


def test_image_override_from_config_replaces_the_build(prod_config: dict[str, Any]) -> None:
    prod_config[PLATFORM]["services"]["prediction-worker"]["image"] = DIGEST
    plan = evaluate_stack("prod", config=prod_config, env={})
    assert [r.name for r in plan.of_type(T.IMAGE)] == ["prediction-coordinator-image"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"prediction-wrker": DIGEST}, "IMAGE_OVERRIDES.prediction-wrker: unknown service"),
        ({"prediction-worker": "repo/worker:v1"}, "not a digest ref"),
    ],
)
def test_bad_image_overrides_are_config_errors(overrides: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        evaluate_stack("prod", env={"PLATFORM_IMAGE_OVERRIDES": json.dumps(overrides)})
    assert fragment in str(info.value)


def test_a_service_missing_a_contract_variable_fails_the_plan(prod_config: dict[str, Any]) -> None:
    del prod_config[PLATFORM]["services"]["prediction-worker"]["env"]["GCP_PROJECT_ID"]
    with pytest.raises(ConfigError) as info:
        evaluate_stack("prod", config=prod_config, env={})
    assert "platform.services.prediction-worker.env: missing GCP_PROJECT_ID" in str(info.value)


def test_a_public_service_gets_all_users(prod_config: dict[str, Any]) -> None:
    prod_config[PLATFORM]["services"]["prediction-coordinator"]["public"] = True
    plan = evaluate_stack("prod", config=prod_config, env={})
    public = one(plan, T.RUN_INVOKER_MEMBER, "prediction-coordinator-public")
    assert public.get("member") == "allUsers"
    assert not [f for f in run_rules(plan.resources) if f.blocks]


def test_a_missing_dockerfile_is_a_clear_error(checkout: Path) -> None:
    (checkout / "images" / "worker.Dockerfile").unlink()
    with pytest.raises(PlanError) as info:
        evaluate_stack("prod", root=checkout, env={})
    assert "prediction-worker: cannot compute the image tag from images/worker.Dockerfile" in str(
        info.value
    )


def test_the_program_builds_from_the_given_checkout(checkout: Path) -> None:
    plan = evaluate_stack("dev", root=checkout, env={})
    image = one(plan, T.IMAGE, "prediction-worker-image")
    assert (PROGRAM_DIR / image.get("context.location")).resolve() == checkout.resolve()


def test_a_missing_config_secret_names_the_command(prod_config: dict[str, Any]) -> None:
    """Outside the offline plan (which fills in [secret]), a missing secret is a clear error."""
    import runpy

    import pulumi

    from infra.paths import PROGRAM
    from scripts.plan import PlanMocks, run_program

    engine_config = {
        "gcp:project": prod_config["gcp:project"],
        "gcp:region": prod_config["gcp:region"],
        PLATFORM: json.dumps(prod_config[PLATFORM]),
    }
    with pytest.raises(pulumi.RunError) as info:
        run_program(
            lambda: runpy.run_path(str(PROGRAM), run_name="__main__"),
            project="prediction-platform",
            stack="prod",
            mocks=PlanMocks("nba-props-platform", "us-west2"),
            engine_config=engine_config,
        )
    assert "pulumi config set --secret coordinator-api-key VALUE --stack prod" in str(info.value)


def test_services_start_on_latest_and_leave_traffic_to_the_rollout(plan: Plan) -> None:
    # `pulumi up` only creates revisions; the progressive rollout (scripts/rollout) owns the
    # split after creation, so the two never fight over the traffic block.
    for svc in plan.graph.of_type(T.CLOUD_RUN):
        assert "traffics" in svc.ignore_changes, f"{svc.urn}: traffic not left to the rollout"
        traffic = [dict(t) for t in svc.get("traffics")]
        assert traffic == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}], (
            f"{svc.urn}: {traffic}"
        )
