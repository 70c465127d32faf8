"""The bootstrap program, evaluated offline under Pulumi's mocks (as `make plan` can)."""

from __future__ import annotations

import copy
import re

import pytest

from infra.bootstrap.components import (
    BUILDER_PROJECT_ROLES,
    DEPLOYER_PROJECT_ROLES,
    DEPLOYER_ROLE_CONDITIONS,
)
from infra.bootstrap.config import NAMESPACE, BootstrapConfigError
from scripts.plan import bootstrap_stack_config, evaluate_bootstrap, load_stack_file, parse_config


@pytest.fixture(scope="module")
def plan():
    return evaluate_bootstrap("prod")


def _one(plan, typ, name=None):
    found = [r for r in plan.resources if r.type == typ and (name is None or r.name == name)]
    assert len(found) == 1, f"expected one {typ} {name or ''}, got {[r.urn for r in found]}"
    return found[0]


def test_inventory(plan):
    counts = plan.counts()
    assert counts["gcp:storage/bucket:Bucket"] == 2  # state, build sources
    assert counts["gcp:kms/cryptoKey:CryptoKey"] == 1
    assert counts["gcp:serviceaccount/account:Account"] == 2  # deployer, builder
    assert counts["gcp:iam/workloadIdentityPool:WorkloadIdentityPool"] == 1
    assert counts["gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"] == 1
    assert counts["gcp:firestore/database:Database"] == 1
    assert counts["gcp:firestore/index:Index"] == 1
    assert "gcp:serviceaccount/key:Key" not in counts, "no long-lived service account keys"
    assert set(plan.outputs) == {
        "state_bucket_url",
        "secrets_provider",
        "deployer_email",
        "workload_identity_provider",
        "lock_database",
        "builder_email",
        "build_source_bucket",
    }


def test_state_bucket_is_versioned_and_private(plan):
    bucket = _one(plan, "gcp:storage/bucket:Bucket", "state")
    assert bucket.inputs["versioning"]["enabled"] is True, bucket.urn
    assert bucket.inputs["publicAccessPrevention"] == "enforced", bucket.urn
    assert bucket.inputs["uniformBucketLevelAccess"] is True, bucket.urn
    assert plan.outputs["state_bucket_url"] == "gs://nba-props-platform-pulumi-state"


def test_federation_admits_only_the_repository_main_branch(plan):
    provider = _one(plan, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
    cond = provider.inputs["attributeCondition"]
    assert "assertion.repository == 'nba-props/prediction-platform'" in cond, provider.urn
    assert "assertion.ref == 'refs/heads/main'" in cond, provider.urn
    assert provider.inputs["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
    binding = _one(plan, "gcp:serviceaccount/iAMMember:IAMMember", "deployer-federated")
    assert binding.inputs["role"] == "roles/iam.workloadIdentityUser"
    assert binding.inputs["member"].startswith("principalSet://"), binding.urn


def _project_roles(plan, member: str) -> set[str]:
    return {
        r.inputs["role"]
        for r in plan.resources
        if r.type == "gcp:projects/iAMMember:IAMMember" and r.inputs["member"] == member
    }


def test_deployer_is_never_owner_or_editor(plan):
    roles = _project_roles(plan, f"serviceAccount:{plan.outputs['deployer_email']}")
    assert not roles & {"roles/owner", "roles/editor"}, roles
    # actAs on every account of the project is not needed: the platform stack grants
    # serviceAccountUser on exactly each account it creates (tests/infra/test_program.py).
    assert "roles/iam.serviceAccountUser" not in roles, roles
    assert roles == set(DEPLOYER_PROJECT_ROLES), roles
    key_grant = _one(plan, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
    assert key_grant.inputs["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"


def test_the_platform_stack_deploys_as_the_bootstraps_deployer(plan):
    # One deploy identity: the prod platform stack names the account this bootstrap creates
    # in its project, and creates none of its own.
    platform = parse_config("prod", load_stack_file("prod"), "prediction-platform")
    assert platform.project == bootstrap_stack_config("prod")["gcp:project"]
    assert platform.platform.deploy.service_account == plan.outputs["deployer_email"]


def test_lock_database_is_its_own_protected_database_with_the_history_index(plan):
    db = _one(plan, "gcp:firestore/database:Database")
    assert db.inputs["name"] == "deploy-lock" != "(default)", db.urn
    assert db.inputs["deleteProtectionState"] == "DELETE_PROTECTION_ENABLED", db.urn
    index = _one(plan, "gcp:firestore/index:Index")
    assert index.inputs["collection"] == "deployments"
    fields = [(f["fieldPath"], f["order"]) for f in index.inputs["fields"]]
    assert fields == [("stack", "ASCENDING"), ("started_at", "DESCENDING")]


def test_bad_config_names_every_key():
    raw = copy.deepcopy(bootstrap_stack_config("prod"))
    boot = raw[f"{NAMESPACE}:bootstrap"]
    boot["state_bucket"] = "Bad_Bucket!"
    boot["github_repository"] = "no-slash"
    boot["colour"] = "blue"
    with pytest.raises(BootstrapConfigError) as info:
        evaluate_bootstrap("prod", config=raw)
    text = str(info.value)
    for key in ("state_bucket", "github_repository", "colour: unknown key"):
        assert key in text, text


IAM_ADMIN = "roles/resourcemanager.projectIamAdmin"


def test_the_deployer_may_grant_only_the_platforms_project_roles(plan, prod_plan):
    """projectIamAdmin is conditioned on exactly the roles the platform program grants on the
    project: a leaked CI token cannot grant itself Owner."""
    grants = {
        r.inputs["role"]: r for r in plan.resources if r.type == "gcp:projects/iAMMember:IAMMember"
    }
    condition = grants[IAM_ADMIN].inputs["condition"]
    granted = sorted({r.get("role") for r in prod_plan.of_type("gcp:projects/iAMMember:IAMMember")})
    assert granted == ["roles/datastore.user"]
    assert condition["expression"] == (
        "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
        ".hasOnly(['roles/datastore.user'])"
    ), grants[IAM_ADMIN].urn
    assert condition["title"], grants[IAM_ADMIN].urn
    # Every conditioned role carries its condition; no other role is conditioned by accident.
    conditioned = {role for role, g in grants.items() if g.inputs.get("condition")}
    assert conditioned == set(DEPLOYER_ROLE_CONDITIONS) == {IAM_ADMIN}


def test_the_bootstrap_readme_lists_each_deployer_role_and_why():
    from infra.paths import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Bootstrap (one-time)", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(roles/[\w.]+)` \| (.+?) \|$", section, flags=re.MULTILINE))
    assert sorted(rows) == sorted(DEPLOYER_PROJECT_ROLES), rows
    assert all(len(why) > 20 for why in rows.values()), rows


def _grants_on(plan, typ: str, member: str) -> list:
    return [r for r in plan.resources if r.type == typ and r.inputs.get("member") == member]


def test_cloudbuild_gets_its_source_bucket_and_a_least_privileged_identity(plan):
    # `deploy --builder cloudbuild` uploads to this bucket and builds as this identity: both
    # created here, named by the platform stack (never Cloud Build's defaults).
    bucket = _one(plan, "gcp:storage/bucket:Bucket", "build-sources")
    assert bucket.inputs["name"] == plan.outputs["build_source_bucket"], bucket.urn
    assert bucket.inputs["publicAccessPrevention"] == "enforced", bucket.urn
    assert bucket.inputs["uniformBucketLevelAccess"] is True, bucket.urn
    builder = f"serviceAccount:{plan.outputs['builder_email']}"
    deployer = f"serviceAccount:{plan.outputs['deployer_email']}"
    # The builder: its build logs on the project, reading sources on exactly the bucket;
    # pushing is granted by the platform stack on exactly its repository.
    assert (
        _project_roles(plan, builder) == set(BUILDER_PROJECT_ROLES) == {"roles/logging.logWriter"}
    )
    (reads,) = _grants_on(plan, "gcp:storage/bucketIAMMember:BucketIAMMember", builder)
    assert reads.inputs["role"] == "roles/storage.objectViewer", reads.urn
    assert reads.inputs["bucket"] == bucket.inputs["name"], reads.urn
    # The deployer: uploads there, may start builds that run as the builder, and its own
    # cloudbuild.yaml build may log.
    uploads = [
        g
        for g in _grants_on(plan, "gcp:storage/bucketIAMMember:BucketIAMMember", deployer)
        if g.inputs["bucket"] == bucket.inputs["name"]
    ]
    assert [g.inputs["role"] for g in uploads] == ["roles/storage.objectAdmin"]
    acts_as = _one(plan, "gcp:serviceaccount/iAMMember:IAMMember", "deployer-acts-as-builder")
    assert acts_as.inputs["role"] == "roles/iam.serviceAccountUser"
    assert acts_as.inputs["member"] == deployer
    builder_account = _one(plan, "gcp:serviceaccount/account:Account", "builder")
    assert builder_account.urn in acts_as.dependencies
    assert {"roles/cloudbuild.builds.editor", "roles/logging.logWriter"} <= _project_roles(
        plan, deployer
    )
    apis = {r.inputs["service"] for r in plan.resources if r.type == "gcp:projects/service:Service"}
    assert "cloudbuild.googleapis.com" in apis


def test_the_platform_stack_builds_with_the_bootstraps_builder_and_bucket(plan, prod_plan):
    platform = parse_config("prod", load_stack_file("prod"), "prediction-platform")
    cloudbuild = platform.platform.deploy.cloudbuild
    assert cloudbuild is not None, "Pulumi.prod.yaml: platform.deploy.cloudbuild"
    assert cloudbuild.service_account == plan.outputs["builder_email"]
    assert cloudbuild.source_bucket == plan.outputs["build_source_bucket"]
    # ...and the platform stack lets exactly that identity push to its repository.
    (grant,) = [
        r
        for r in prod_plan.resources
        if r.type == "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
        and r.inputs["member"] == f"serviceAccount:{cloudbuild.service_account}"
    ]
    assert grant.inputs["role"] == "roles/artifactregistry.writer", grant.urn
