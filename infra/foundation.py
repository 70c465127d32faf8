"""The platform's foundation: required APIs, the image repository, Firestore, the deployer's push.

Named ``foundation`` rather than ``platform`` so it can never shadow the standard library's
``platform`` module when Pulumi runs ``infra/`` with that directory on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig
from infra.options import enable_apis

__all__ = ["Platform", "PlatformArgs", "REQUIRED_APIS", "firestore_index_specs"]

# Every API a resource of this program needs (enabled by enable_apis: never disabled on destroy).
REQUIRED_APIS = (
    "artifactregistry.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
)

# Image retention. Every image is tagged with its content hash and deployed by digest, so
# "untagged" never matches and tags pile up: delete any version older than IMAGE_MAX_AGE, but
# always keep the IMAGES_KEPT most recent of each image, enough to roll back through recent
# `deploy history` (KEEP rules win over DELETE rules).
# https://cloud.google.com/artifact-registry/docs/repositories/cleanup-policy
IMAGE_MAX_AGE_SECONDS = 90 * 24 * 3600
IMAGES_KEPT = 20


@dataclass(frozen=True)
class PlatformArgs:
    config: StackConfig
    # Composite indexes the services' queries need (shared/indexes.py REQUIRED_INDEXES).
    indexes: Sequence[Any] = ()


def _get(spec: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(spec, dict) and name in spec:
            return spec[name]
        if hasattr(spec, name):
            return getattr(spec, name)
    return default


def firestore_index_specs(specs: Sequence[Any]) -> list[dict[str, Any]]:
    """Normalise index specs (objects or mappings) to collection + [(field, order)]."""
    out = []
    for spec in specs:
        fields = []
        for f in _get(spec, "fields", default=()) or ():
            if isinstance(f, tuple | list):
                path, order = f[0], f[1] if len(f) > 1 else "ASCENDING"
            else:
                path = _get(f, "field_path", "path", "name", "field")
                order = _get(f, "order", "direction", default="ASCENDING")
            order = str(getattr(order, "value", order)).upper()
            order = {"ASC": "ASCENDING", "DESC": "DESCENDING"}.get(order, order)
            fields.append((str(path), order))
        scope = str(_get(spec, "query_scope", default="COLLECTION")).upper()
        collection = str(_get(spec, "collection"))
        name = _get(spec, "name") or "-".join(
            [collection, *(f"{p}-{o[:3].lower()}" for p, o in fields)]
        )
        out.append({"name": str(name), "collection": collection, "fields": fields, "scope": scope})
    return out


class Platform(pulumi.ComponentResource):
    """APIs, Artifact Registry, Firestore (batch state), the deploy identity's push right.

    The deploy identity itself is the bootstrap's (``platform.deploy.service_account``): a stack
    cannot create the identity its own first `pulumi up` runs as, and the deploy lock lives in
    the bootstrap's ``deploy-lock`` database for the same reason.
    """

    repository_url: pulumi.Output[str]
    database_name: pulumi.Output[str]
    deployer_member: pulumi.Output[str]
    pubsub_agent_member: pulumi.Output[str]
    apis: list[pulumi.Resource]

    def __init__(
        self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:index:Platform", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)

        self.apis = enable_apis(cfg.project, REQUIRED_APIS, child)
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=self.apis)

        repo_id = cfg.platform.artifact_repository
        repository = gcp.artifactregistry.Repository(
            "images",
            project=cfg.project,
            location=cfg.region,
            repository_id=repo_id,
            format="DOCKER",
            description="Images of the prediction platform's services",
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old-images",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY", older_than=f"{IMAGE_MAX_AGE_SECONDS}s"
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent-for-rollback",
                    action="KEEP",
                    most_recent_versions=(
                        gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                            keep_count=IMAGES_KEPT
                        )
                    ),
                ),
            ],
            # Policies act (not only report) once declared.
            cleanup_policy_dry_run=False,
            opts=after_apis,
        )

        fs = cfg.platform.firestore
        database = gcp.firestore.Database(
            "firestore",
            project=cfg.project,
            name=fs.database,
            location_id=cfg.firestore_location,
            type="FIRESTORE_NATIVE",
            # Batch state lives here: a `pulumi destroy` or a rename must not drop it.
            # Protection is enforced by the API, not just by Pulumi. (The deploy lock is not
            # here: it cannot live in the stack it protects; see infra/bootstrap.)
            # https://cloud.google.com/firestore/docs/manage-databases#delete_protection
            delete_protection_state=(
                "DELETE_PROTECTION_ENABLED"
                if fs.deletion_protection
                else "DELETE_PROTECTION_DISABLED"
            ),
            deletion_policy="ABANDON" if fs.deletion_protection else "DELETE",
            opts=after_apis,
        )
        for spec in firestore_index_specs(args.indexes):
            gcp.firestore.Index(
                f"index-{spec['name']}",
                project=cfg.project,
                database=database.name,
                collection=spec["collection"],
                query_scope=spec["scope"],
                fields=[
                    gcp.firestore.IndexFieldArgs(field_path=p, order=o) for p, o in spec["fields"]
                ],
                opts=child,
            )

        # The bootstrap's deploy identity: its project roles are the bootstrap's; this stack
        # grants it only rights scoped to resources the stack owns.
        self.deployer_member = pulumi.Output.from_input(
            f"serviceAccount:{cfg.platform.deploy.service_account}"
        )
        # `pulumi up` (docker-build) pushes the images it deploys: writer on exactly this
        # repository, so the push does not hang on a project-wide Artifact Registry role.
        # https://cloud.google.com/artifact-registry/docs/access-control#roles
        gcp.artifactregistry.RepositoryIamMember(
            "deployer-pushes-images",
            project=cfg.project,
            location=cfg.region,
            repository=repository.repository_id,
            role="roles/artifactregistry.writer",
            member=self.deployer_member,
            opts=child,
        )

        self.repository_url = pulumi.Output.concat(
            cfg.region, "-docker.pkg.dev/", cfg.project, "/", repository.repository_id
        )
        self.database_name = database.name
        project = gcp.organizations.get_project_output(project_id=cfg.project)
        # Pub/Sub's service agent moves undeliverable messages to the dead-letter topic: it needs
        # publisher there and subscriber on the source subscription.
        # https://cloud.google.com/pubsub/docs/handling-failures#grant_forwarding_permissions
        self.pubsub_agent_member = project.number.apply(
            lambda n: f"serviceAccount:service-{n}@gcp-sa-pubsub.iam.gserviceaccount.com"
        )
        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "database_name": self.database_name,
                "deployer_member": self.deployer_member,
                "pubsub_agent_member": self.pubsub_agent_member,
            }
        )
