"""The bootstrap's resources, one component: what the platform stack needs before it exists."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.database import firestore_database
from infra.iam import Grants, on_account
from infra.naming import service_account_member
from infra.options import enable_apis
from infra.roles import ACT_AS, WORKLOAD_IDENTITY_USER
from infra.service import PLATFORM_PROJECT_ROLES

from .config import BootstrapConfig

__all__ = [
    "Bootstrap",
    "BOOTSTRAP_APIS",
    "BUILDER_PROJECT_ROLES",
    "DEPLOYER_PROJECT_ROLES",
    "DEPLOYER_GRANTABLE_PROJECT_ROLES",
    "DEPLOYER_ROLE_CONDITIONS",
    "GITHUB_OIDC_ISSUER",
]

#: APIs the bootstrap's own resources need (the platform stack enables the rest itself).
BOOTSTRAP_APIS = (
    "cloudbuild.googleapis.com",
    "cloudkms.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "serviceusage.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "storage.googleapis.com",
    "sts.googleapis.com",
)
#: What `pulumi up` of the platform stack creates and grants, and the deploy pipeline reads:
#: role -> why (the bootstrap README lists the same). Project-level because creating the
#: platform stack's resources is a project permission; never editor/owner. Not here:
#: serviceAccountUser (the platform stack grants it on exactly each service account it creates,
#: infra/service.py) and artifactregistry.writer (on exactly its repository, infra/registry.py).
DEPLOYER_PROJECT_ROLES: dict[str, str] = {
    "roles/run.admin": "Cloud Run services and their invoker bindings (run.developer cannot "
    "set IAM on a service)",
    "roles/iam.serviceAccountAdmin": "the platform's runtime, push and scheduler accounts, and "
    "the per-account grants on them (its own actAs, the Pub/Sub agent's token creator)",
    "roles/resourcemanager.projectIamAdmin": "the platform's project-level grants, and only "
    "those: conditioned on the roles the program grants (DEPLOYER_GRANTABLE_PROJECT_ROLES)",
    "roles/pubsub.admin": "topics, subscriptions, and the IAM on them (publishers, the agent)",
    "roles/secretmanager.admin": "secrets, their versions, and each secret's one accessor",
    "roles/cloudscheduler.admin": "the scheduled calls (stall check, cleanup)",
    "roles/artifactregistry.admin": "the image repository, its cleanup policy and its IAM",
    "roles/datastore.owner": "the platform's Firestore database and indexes, and the lock's "
    "documents in deploy-lock",
    "roles/serviceusage.serviceUsageAdmin": "enabling the APIs the program needs",
    "roles/cloudbuild.builds.editor": "deploy --builder cloudbuild",
    # https://cloud.google.com/build/docs/securing-builds/configure-user-specified-service-accounts
    "roles/logging.logWriter": "cloudbuild.yaml's build runs as this identity (a "
    "user-specified service account), and such a build writes its own logs",
}
#: The build identity's only project role: its builds' logs. It reads sources on exactly the
#: source bucket (here) and pushes to exactly the platform's repository (the platform stack).
BUILDER_PROJECT_ROLES = ("roles/logging.logWriter",)
#: Build sources are uploaded per build; nothing reads them after the build.
BUILD_SOURCES_KEPT_DAYS = 7
#: The only project-level roles the deploy identity may grant or revoke: the ones the platform
#: program grants on the project (infra/service.py). projectIamAdmin unconditioned would let a
#: leaked CI token grant itself Owner; with this condition, any other role change is denied.
#: Delegated roles must not hold resourcemanager.projects.setIamPolicy (datastore.user does not).
#: https://cloud.google.com/iam/docs/setting-limits-on-granting-roles
DEPLOYER_GRANTABLE_PROJECT_ROLES = PLATFORM_PROJECT_ROLES
#: Role -> the IAM condition its grant carries.
DEPLOYER_ROLE_CONDITIONS: dict[str, tuple[str, str]] = {
    "roles/resourcemanager.projectIamAdmin": (
        "only-the-platforms-project-roles",
        "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly(["
        + ", ".join(f"'{r}'" for r in DEPLOYER_GRANTABLE_PROJECT_ROLES)
        + "])",
    ),
}
GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
#: Noncurrent state versions kept: enough to recover from a bad `pulumi stack import`.
STATE_VERSIONS_KEPT = 20
#: https://cloud.google.com/kms/docs/key-rotation: yearly rotation at most; 90 days here.
KMS_ROTATION_PERIOD = "7776000s"


def _private_bucket(
    name: str,
    bucket_name: str,
    cfg: BootstrapConfig,
    delete_when: gcp.storage.BucketLifecycleRuleConditionArgs,
    opts: pulumi.ResourceOptions,
    **extra: object,
) -> gcp.storage.Bucket:
    """A bucket in the region with uniform access, never public, whose objects are deleted
    once ``delete_when`` holds."""
    return gcp.storage.Bucket(
        name,
        name=bucket_name,
        project=cfg.project,
        location=cfg.region.upper(),
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        lifecycle_rules=[
            gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=delete_when,
            )
        ],
        opts=opts,
        **extra,
    )


def _account(
    name: str, cfg: BootstrapConfig, account_id: str, purpose: str, opts: pulumi.ResourceOptions
) -> tuple[gcp.serviceaccount.Account, pulumi.Output[str]]:
    """A service account of the project and its IAM member string."""
    account = gcp.serviceaccount.Account(
        name, project=cfg.project, account_id=account_id, display_name=purpose, opts=opts
    )
    return account, account.email.apply(service_account_member)


def _project_roles(
    prefix: str,
    cfg: BootstrapConfig,
    roles: tuple[str, ...] | list[str],
    member: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    conditions: dict[str, tuple[str, str]] | None = None,
) -> None:
    """Each of ``roles`` for ``member`` on the project, with its IAM condition if it has one."""
    on_project = Grants(gcp.projects.IAMMember, opts, project=cfg.project)
    for role in roles:
        condition = None
        if conditions and role in conditions:
            title, expression = conditions[role]
            condition = gcp.projects.IAMMemberConditionArgs(title=title, expression=expression)
        resource_name = f"{prefix}-{role.removeprefix('roles/').replace('.', '-')}"
        on_project.grant(resource_name, role, member, condition=condition)


class Bootstrap(pulumi.ComponentResource):
    """State bucket, KMS key, the deploy identity, GitHub federation, deploy-lock database.

    The deploy identity is the only one: the platform stack names it in
    ``platform.deploy.service_account`` and creates no deployer of its own (its first
    `pulumi up` already runs as this one).
    """

    state_bucket_url: pulumi.Output[str]
    secrets_provider: pulumi.Output[str]
    deployer_email: pulumi.Output[str]
    workload_identity_provider: pulumi.Output[str]
    lock_database: pulumi.Output[str]
    builder_email: pulumi.Output[str]
    build_source_bucket: pulumi.Output[str]

    def __init__(
        self, name: str, cfg: BootstrapConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:bootstrap:Bootstrap", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Everything here outlives any single deploy: deleting it strands the platform stack.
        keep = pulumi.ResourceOptions(parent=self, protect=True)

        apis = enable_apis(cfg.project, BOOTSTRAP_APIS, child)
        after_apis = pulumi.ResourceOptions(parent=self, protect=True, depends_on=apis)

        bucket = _private_bucket(
            "state",
            cfg.state_bucket,
            cfg,
            gcp.storage.BucketLifecycleRuleConditionArgs(
                num_newer_versions=STATE_VERSIONS_KEPT, with_state="ARCHIVED"
            ),
            after_apis,
            # Every state write is a new object version: a corrupted checkpoint can be restored.
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
        )

        ring = gcp.kms.KeyRing(
            "secrets",
            name=cfg.kms_key_ring,
            project=cfg.project,
            location=cfg.region,
            opts=after_apis,
        )
        key = gcp.kms.CryptoKey(
            "secrets",
            name=cfg.kms_key,
            key_ring=ring.id,
            purpose="ENCRYPT_DECRYPT",
            rotation_period=KMS_ROTATION_PERIOD,
            opts=keep,
        )

        deployer, member = _account(
            "deployer",
            cfg,
            cfg.deployer_account_id,
            "CI: deploys the platform stack (pulumi up through `deploy`)",
            after_apis,
        )
        _project_roles(
            "deployer", cfg, DEPLOYER_PROJECT_ROLES, member, child, DEPLOYER_ROLE_CONDITIONS
        )
        # State and secrets: on exactly the bucket and the key, not project-wide.
        on_state = Grants(gcp.storage.BucketIAMMember, child, bucket=bucket.name)
        on_state.grant("deployer-state", "roles/storage.objectAdmin", member)
        on_key = Grants(gcp.kms.CryptoKeyIAMMember, child, crypto_key_id=key.id)
        on_key.grant("deployer-secrets", "roles/cloudkms.cryptoKeyEncrypterDecrypter", member)

        # `deploy --builder cloudbuild`: image builds run as their own identity, never as the
        # deployer, so a Dockerfile's RUN step never holds the deploy rights.
        builder, builder_member = _account(
            "builder",
            cfg,
            cfg.builder_account_id,
            "Cloud Build: builds and pushes the platform's images",
            after_apis,
        )
        _project_roles("builder", cfg, BUILDER_PROJECT_ROLES, builder_member, child)
        sources = _private_bucket(
            "build-sources",
            cfg.build_source_bucket,
            cfg,
            gcp.storage.BucketLifecycleRuleConditionArgs(age=BUILD_SOURCES_KEPT_DAYS),
            after_apis,
        )
        # The deployer uploads each build context (and may replace one of the same tag)...
        on_sources = Grants(gcp.storage.BucketIAMMember, child, bucket=sources.name)
        on_sources.grant("deployer-build-sources", "roles/storage.objectAdmin", member)
        # ...which the build, running as the builder, reads.
        on_sources.grant("builder-reads-sources", "roles/storage.objectViewer", builder_member)
        # Creating a build that runs as the builder needs actAs on exactly that account.
        # https://cloud.google.com/build/docs/securing-builds/configure-user-specified-service-accounts
        on_account(builder, child).grant("deployer-acts-as-builder", ACT_AS, member)

        pool = gcp.iam.WorkloadIdentityPool(
            "github",
            project=cfg.project,
            workload_identity_pool_id="github",
            display_name="GitHub Actions",
            opts=after_apis,
        )
        provider = gcp.iam.WorkloadIdentityPoolProvider(
            "github",
            project=cfg.project,
            workload_identity_pool_id=pool.workload_identity_pool_id,
            workload_identity_pool_provider_id="github-actions",
            attribute_mapping={
                "google.subject": "assertion.sub",
                "attribute.repository": "assertion.repository",
                "attribute.ref": "assertion.ref",
            },
            # Only this repository's main branch may mint deployer tokens:
            # https://cloud.google.com/iam/docs/workload-identity-federation-with-deployment-pipelines
            attribute_condition=(
                f"assertion.repository == '{cfg.github_repository}' && "
                f"assertion.ref == '{cfg.github_ref}'"
            ),
            oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_OIDC_ISSUER),
            opts=child,
        )
        repository_principals = pool.name.apply(
            lambda n: (
                f"principalSet://iam.googleapis.com/{n}/attribute.repository/"
                f"{cfg.github_repository}"
            )
        )
        on_account(deployer, child).grant(
            "deployer-federated", WORKLOAD_IDENTITY_USER, repository_principals
        )

        # The deploy lock cannot live in the stack it protects: its own database, here.
        database = firestore_database(
            "deploy-lock",
            cfg.project,
            cfg.lock_database,
            cfg.region,
            protected=True,
            opts=after_apis,
        )
        # `deploy history` lists a stack's records newest first: stack ASC, started_at DESC.
        gcp.firestore.Index(
            "deployments-by-stack-started",
            project=cfg.project,
            database=database.name,
            collection="deployments",
            query_scope="COLLECTION",
            fields=[
                gcp.firestore.IndexFieldArgs(field_path="stack", order="ASCENDING"),
                gcp.firestore.IndexFieldArgs(field_path="started_at", order="DESCENDING"),
            ],
            opts=child,
        )
        self.state_bucket_url = bucket.name.apply(lambda n: f"gs://{n}")
        self.secrets_provider = key.id.apply(lambda i: f"gcpkms://{i}")
        self.deployer_email = deployer.email
        self.workload_identity_provider = provider.name
        self.lock_database = database.name
        self.builder_email = builder.email
        self.build_source_bucket = sources.name
        self.register_outputs(
            {
                "builder_email": self.builder_email,
                "build_source_bucket": self.build_source_bucket,
                "state_bucket_url": self.state_bucket_url,
                "secrets_provider": self.secrets_provider,
                "deployer_email": self.deployer_email,
                "workload_identity_provider": self.workload_identity_provider,
                "lock_database": self.lock_database,
            }
        )
