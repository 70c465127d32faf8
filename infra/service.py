"""A Cloud Run service with its identities, runtime roles and invokers (its image: image.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.config import ServiceConfig, StackConfig
from infra.config import substitute as substitute_placeholders
from infra.deploy_env import DeployEnv, label_value
from infra.durations import api_duration
from infra.iam import Grants, on_account
from infra.naming import Kind, service_account_member
from infra.options import child_options
from infra.roles import ACT_AS, DATASTORE_USER, RUN_INVOKER, SECRET_ACCESSOR, TOKEN_CREATOR

__all__ = [
    "Service",
    "ServiceArgs",
    "SecretRef",
    "INGRESS",
    "firestore_database_resource",
    "member_slug",
    "PLATFORM_PROJECT_ROLES",
    "substitute",
]

# Config spelling -> Cloud Run v2 enum.
INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
#: Every role this program grants on the project (everything else is granted on a resource):
#: the bootstrap lets the deploy identity grant these and no other (its projectIamAdmin condition).
PLATFORM_PROJECT_ROLES = (DATASTORE_USER,)


def firestore_database_resource(project: str, database: str) -> str:
    """The database's IAM resource name, as IAM Conditions see it."""
    return f"projects/{project}/databases/{database}"


def member_slug(member: str) -> str:
    """A resource-name-safe form of an IAM member (``group:a@b.com`` -> ``group-a-at-b-com``)."""
    return re.sub(r"[^a-z0-9]+", "-", member.lower().replace("@", "-at-")).strip("-")


def substitute(value: str, cfg: StackConfig) -> str:
    """Env values may say ``{project}``, ``{region}`` or ``{stack}``: nothing written twice.

    The placeholders and their substitution have one home, ``infra.config`` (which also
    refuses an unknown ``{placeholder}`` and checks the substituted size).
    """
    return substitute_placeholders(value, project=cfg.project, region=cfg.region, stack=cfg.stack)


@dataclass(frozen=True)
class SecretRef:
    """What a service needs of a Secret component: its id and the pinned version number."""

    secret_id: pulumi.Input[str]
    version: pulumi.Input[str]


@dataclass(frozen=True)
class ServiceArgs:
    name: str  # the config key (logical name)
    config: ServiceConfig
    stack: StackConfig
    deploy: DeployEnv
    image: pulumi.Input[str]  # the digest ref to run (an Image component's ``ref``, or pinned)
    deployer_member: pulumi.Input[str]
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)  # secret key -> ref
    pushed_by_pubsub: bool = False  # some subscription pushes to it: make its push identity
    # Pub/Sub's service agent (serviceAccount:service-<number>@gcp-sa-pubsub...): it mints the
    # push identity's OIDC tokens. Required when pushed_by_pubsub.
    pubsub_agent_member: pulumi.Input[str] | None = None
    called_by_scheduler: bool = False  # some job calls it: make its scheduler identity


class Service(pulumi.ComponentResource):
    """A Cloud Run service running the given image digest as its own service account.

    Owns every identity that talks to it: its runtime account (with exactly the roles its
    config implies), the identity Pub/Sub pushes to it as, and the identity Cloud Scheduler
    calls it as, each with ``roles/run.invoker`` on this service only.
    """

    url: pulumi.Output[str]
    service_name: pulumi.Output[str]
    runtime_member: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    push_identity_email: pulumi.Output[str] | None
    scheduler_identity_email: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:index:Service", name, None, opts)
        cfg, svc = args.stack, args.config
        child = child_options(self, opts)

        # Its own identity: the default compute account has project Editor.
        # https://cloud.google.com/run/docs/securing/service-identity
        runtime = gcp.serviceaccount.Account(
            f"{name}-runtime",
            project=cfg.project,
            account_id=cfg.name(Kind.RUNTIME_ACCOUNT, args.name),
            display_name=f"Runtime identity of {args.name}",
            opts=child,
        )
        self.runtime_member = runtime.email.apply(service_account_member)
        # Deploying a revision that runs as this account needs actAs on it: the deploy identity
        # gets serviceAccountUser on exactly this account, never project-wide.
        # https://cloud.google.com/run/docs/configuring/services/service-identity
        deployer_acts_as = on_account(runtime, child).grant(
            f"{name}-deployer-acts-as", ACT_AS, args.deployer_member
        )

        grants: list[pulumi.Resource] = []
        if svc.uses_firestore:
            # datastore.user is granted on the project, but conditioned on this stack's database:
            # the project also holds the bootstrap's `deploy-lock` database (the deploy lock and
            # the deployment records), which no runtime identity may read or write.
            # https://cloud.google.com/firestore/docs/security/iam#iam_conditions
            # https://cloud.google.com/firestore/docs/manage-databases#configure_per-database_access_permissions
            database = firestore_database_resource(cfg.project, cfg.platform.firestore.database)
            on_project = Grants(gcp.projects.IAMMember, child, project=cfg.project)
            only_this_database = gcp.projects.IAMMemberConditionArgs(
                title=f"only-database-{cfg.platform.firestore.database}"[:100],
                description=f"{args.name} reads and writes {database} only",
                expression=f'resource.name == "{database}"',
            )
            grants.append(
                on_project.grant(
                    f"{name}-firestore-user",
                    DATASTORE_USER,
                    self.runtime_member,
                    condition=only_this_database,
                )
            )
        for secret in sorted(set(svc.secret_env.values())):
            on_secret = Grants(
                gcp.secretmanager.SecretIamMember,
                child,
                project=cfg.project,
                secret_id=args.secrets[secret].secret_id,
            )
            grants.append(
                on_secret.grant(f"{name}-reads-{secret}", SECRET_ACCESSOR, self.runtime_member)
            )

        self.image_ref = pulumi.Output.from_input(args.image)

        envs = [
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=k, value=substitute(v, cfg))
            for k, v in sorted(svc.env.items())
        ]
        # Topic names reach the code here, from the one naming function; never hard-coded.
        envs += [
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                name=k, value=cfg.name(Kind.TOPIC, topic)
            )
            for k, topic in sorted(svc.publishes.items())
        ]
        envs += [
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                name=k,
                value_source=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                        secret=args.secrets[secret].secret_id,
                        # Pinned to the version this program created, never "latest": a new
                        # value rolls a new revision instead of surprising a running one.
                        version=args.secrets[secret].version,
                    )
                ),
            )
            for k, secret in sorted(svc.secret_env.items())
        ]

        labels = {
            "managed-by": "pulumi",
            "platform-stack": label_value(cfg.stack),
            # Read by the preflight rules (9, 11) from the graph, also in a real preview.
            "public": str(svc.public).lower(),
            "background-work": str(svc.background_work).lower(),
        }
        if svc.stall_check_path:
            labels["stall-check"] = label_value(svc.stall_check_path.strip("/"))
        # On the service, not the revision template: a commit that changes no image must not
        # roll a revision. https://cloud.google.com/run/docs/configuring/labels
        if args.deploy.git_commit:
            labels["git-commit"] = label_value(args.deploy.git_commit)
        if args.deploy.lock_token:
            labels["deploy-lock-token"] = label_value(args.deploy.lock_token)

        service = gcp.cloudrunv2.Service(
            name,
            project=cfg.project,
            location=cfg.region,
            name=cfg.name(Kind.SERVICE, args.name),
            # The narrowest that reaches its callers unless config says otherwise: a service only
            # Pub/Sub pushes and Cloud Scheduler call (same project) is internal-only, which
            # Google lists as internal sources; operators and public endpoints need `all`.
            # https://cloud.google.com/run/docs/securing/ingress#settings
            ingress=INGRESS[svc.effective_ingress],
            # Explicit: a replace or destroy of a production service must be deliberate.
            deletion_protection=svc.deletion_protection,
            labels=labels,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=runtime.email,
                timeout=api_duration(svc.timeout_seconds),
                max_instance_request_concurrency=svc.concurrency,
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=svc.min_instances,
                    max_instance_count=svc.max_instances,
                ),
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        image=self.image_ref,
                        envs=envs,
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": svc.cpu, "memory": svc.memory},
                            # False = CPU stays allocated after the response, for work done
                            # after answering (the coordinator keeps publishing after /start).
                            # https://cloud.google.com/run/docs/configuring/billing-settings
                            cpu_idle=svc.cpu_idle,
                            startup_cpu_boost=svc.startup_cpu_boost,
                        ),
                    )
                ],
            ),
            # Created with all traffic on its latest revision; after that the deploy
            # pipeline's progressive rollout (scripts/rollout) owns the split: it tags each new
            # revision `candidate` at 0%, moves traffic in steps and pins it to a revision by
            # name, so the next `up`'s revision starts at 0% too. `ignore_changes` keeps
            # `pulumi up` (and `drift`) from moving traffic back or reporting it as drift.
            # https://cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration
            traffics=[
                gcp.cloudrunv2.ServiceTrafficArgs(
                    type="TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", percent=100
                )
            ],
            # A revision that cannot read its secrets fails to start: grants first. And the
            # deployer may only deploy a revision running as the account once it may act as it.
            opts=pulumi.ResourceOptions.merge(
                child_options(self, opts, depends_on=[*grants, deployer_acts_as]),
                pulumi.ResourceOptions(ignore_changes=["traffics"]),
            ),
        )
        self.url = service.uri
        self.service_name = service.name

        # Invoker on exactly this service, for each caller.
        invokers = Grants.in_region(gcp.cloudrunv2.ServiceIamMember, cfg, child, name=service.name)
        if svc.public:
            invokers.grant(f"{name}-public", RUN_INVOKER, "allUsers")

        # Operators (groups, users) who call the service themselves: invoker here only.
        for member in svc.operators:
            invokers.grant(f"{name}-operator-{member_slug(member)}", RUN_INVOKER, member)

        self.push_identity_email = None
        if args.pushed_by_pubsub:
            self.push_identity_email = self._caller(
                name, args, invokers, Kind.PUSH_ACCOUNT, "pushes", child
            )
        self.scheduler_identity_email = None
        if args.called_by_scheduler:
            self.scheduler_identity_email = self._caller(
                name, args, invokers, Kind.SCHEDULER_ACCOUNT, "scheduler", child
            )

        self.register_outputs(
            {
                "url": self.url,
                "service_name": self.service_name,
                "runtime_member": self.runtime_member,
                "image_ref": self.image_ref,
                "push_identity_email": self.push_identity_email,
                "scheduler_identity_email": self.scheduler_identity_email,
            }
        )

    def _caller(
        self,
        name: str,
        args: ServiceArgs,
        invokers: Grants[gcp.cloudrunv2.ServiceIamMember],
        kind: Kind,
        suffix: str,
        child: pulumi.ResourceOptions,
    ) -> pulumi.Output[str]:
        """A dedicated identity allowed to invoke exactly this service.

        The email resolves only after the invoker binding and the deployer's actAs grant exist,
        so a subscription or job using it is never created before it may call the service, nor
        before the deploy identity may name it.
        """
        cfg = args.stack
        who = "Pub/Sub push" if kind is Kind.PUSH_ACCOUNT else "Cloud Scheduler"
        account = gcp.serviceaccount.Account(
            f"{name}-{suffix}-identity",
            project=cfg.project,
            account_id=cfg.name(kind, args.name),
            display_name=f"{who} calls {args.name} as this identity",
            opts=child,
        )
        binding = invokers.grant(
            f"{name}-{suffix}-invoker", RUN_INVOKER, account.email.apply(service_account_member)
        )
        on_this_account = on_account(account, child)
        # Creating a push subscription or a scheduler job that signs its OIDC tokens as this
        # account needs actAs on it: the deploy identity gets it on exactly this account.
        # https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions#oidctoken
        # https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs#oidctoken
        deployer_acts_as = on_this_account.grant(
            f"{name}-{suffix}-deployer-acts-as", ACT_AS, args.deployer_member
        )
        ready = [binding.id, deployer_acts_as.id]
        if kind is Kind.PUSH_ACCOUNT:
            if args.pubsub_agent_member is None:
                raise ValueError(f"{args.name}: pushed_by_pubsub needs pubsub_agent_member")
            # Pub/Sub's service agent creates the OIDC tokens it pushes with as this account.
            # Projects created before 8 April 2021 need this grant for authenticated push (the
            # production project was set up by hand long before this program); granting it on
            # exactly this account is harmless where it is implied.
            # https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions#setup_for_push_authentication
            token_creator = on_this_account.grant(
                f"{name}-{suffix}-agent-token-creator", TOKEN_CREATOR, args.pubsub_agent_member
            )
            ready.append(token_creator.id)
        return pulumi.Output.all(account.email, *ready).apply(lambda v: v[0])
