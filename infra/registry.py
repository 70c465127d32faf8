"""The Artifact Registry repository the services' images live in, and who may push to it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig
from infra.durations import api_duration
from infra.iam import Grants
from infra.options import FORMER_PLATFORM, after, child_options
from infra.roles import ARTIFACT_WRITER

__all__ = ["ImageRepository", "ImageRepositoryArgs", "IMAGE_MAX_AGE_SECONDS", "IMAGES_KEPT"]

# Image retention. Every image is tagged with its content hash and deployed by digest, so
# "untagged" never matches and tags pile up: delete any version older than IMAGE_MAX_AGE, but
# always keep the IMAGES_KEPT most recent of each image, enough to roll back through recent
# `deploy history` (KEEP rules win over DELETE rules).
# https://cloud.google.com/artifact-registry/docs/repositories/cleanup-policy
IMAGE_MAX_AGE_SECONDS = 90 * 24 * 3600
IMAGES_KEPT = 20


@dataclass(frozen=True)
class ImageRepositoryArgs:
    stack: StackConfig
    # The bootstrap's deploy identity (``serviceAccount:...``): `pulumi up` pushes as it.
    deployer_member: pulumi.Input[str]
    # The bootstrap's build identity (``deploy --builder cloudbuild``), if the stack uses it.
    builder_member: str | None = None


class ImageRepository(pulumi.ComponentResource):
    """A Docker repository with its cleanup policy and the deployer's writer grant on it.

    ``url`` resolves only after the grant exists, so an image pushed to it never races the
    right to push. ``host`` and ``push_token`` are what a push authenticates with.
    """

    url: pulumi.Output[str]
    host: str
    push_token: pulumi.Output[str]

    def __init__(
        self, name: str, args: ImageRepositoryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:index:ImageRepository", name, None, opts)
        cfg = args.stack
        # Declared under the former Platform component: kept, not re-created.
        child = child_options(self, opts, formerly_under=FORMER_PLATFORM)
        repository = gcp.artifactregistry.Repository(
            "images",
            project=cfg.project,
            location=cfg.region,
            repository_id=cfg.platform.artifact_repository,
            format="DOCKER",
            description="Images of the prediction platform's services",
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old-images",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY", older_than=api_duration(IMAGE_MAX_AGE_SECONDS)
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
            opts=child,
        )
        # `pulumi up` (docker-build) pushes the images it deploys: writer on exactly this
        # repository, so the push does not hang on a project-wide Artifact Registry role.
        # https://cloud.google.com/artifact-registry/docs/access-control#roles
        on_repository = Grants.in_region(
            gcp.artifactregistry.RepositoryIamMember,
            cfg,
            child,
            repository=repository.repository_id,
        )
        grants = [
            on_repository.grant("deployer-pushes-images", ARTIFACT_WRITER, args.deployer_member)
        ]
        if args.builder_member:
            # Cloud Build pushes as the bootstrap's build identity: writer here, nothing more.
            # https://cloud.google.com/build/docs/securing-builds/configure-user-specified-service-accounts
            grants.append(
                on_repository.grant("builder-pushes-images", ARTIFACT_WRITER, args.builder_member)
            )
        self.host = f"{cfg.region}-docker.pkg.dev"
        self.url = after(
            pulumi.Output.concat(self.host, "/", cfg.project, "/", repository.repository_id),
            *grants,
        )
        # Pushes authenticate with the deploy identity's own short-lived OAuth token (the gcp
        # provider's credentials: Workload Identity Federation in CI), never a key file and
        # never `gcloud auth configure-docker` on the runner. A secret: never in state or logs.
        # https://cloud.google.com/artifact-registry/docs/docker/authentication#token
        self.push_token = pulumi.Output.secret(
            gcp.organizations.get_client_config_output().access_token
        )
        self.register_outputs({"url": self.url})
