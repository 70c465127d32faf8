"""A service's container image: built from the repository root and pushed, or a given digest."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build

from infra.build_context import BuildContextError, dockerfile_for, image_tag
from infra.config import ServiceConfig, StackConfig
from infra.deploy_env import DeployEnv
from infra.naming import Kind
from infra.options import child_options
from infra.paths import PROGRAM_DIR

__all__ = ["Image", "ImageArgs", "pinned_image", "PROGRAM_DIR", "IMAGE_PLATFORM"]

# Cloud Run runs on linux/amd64; an image built on an arm64 laptop would not start.
IMAGE_PLATFORM = docker_build.Platform.LINUX_AMD64
# Artifact Registry's user name for an OAuth access token given as the password.
# https://cloud.google.com/artifact-registry/docs/docker/authentication#token
TOKEN_USERNAME = "oauth2accesstoken"


def pinned_image(service: str, config: ServiceConfig, deploy: DeployEnv) -> str | None:
    """The digest to deploy instead of building, if one is given.

    Rollback and remote (Cloud Build) builds hand a digest (``PLATFORM_IMAGE_OVERRIDES``, or
    the service's ``image`` in config): nothing is built for that service.
    """
    return deploy.image_overrides.get(service) or config.image


@dataclass(frozen=True)
class ImageArgs:
    service: str  # the service's config key
    stack: StackConfig
    deploy: DeployEnv
    repository_url: pulumi.Input[str]  # resolves once the deployer may push there
    registry: pulumi.Input[str]  # the registry host, REGION-docker.pkg.dev
    push_token: pulumi.Input[str]  # the deploy identity's access token (a secret)


class Image(pulumi.ComponentResource):
    """The service's image, tagged with its build context's content hash; ``ref`` is
    ``<tag>@sha256:<digest>``, so Cloud Run runs exactly what was built."""

    ref: pulumi.Output[str]

    def __init__(self, name: str, args: ImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:index:Image", name, None, opts)
        root = Path(args.deploy.repo_root)
        try:
            tag = image_tag(args.service, snapshot=args.deploy.build_context)
        except (FileNotFoundError, BuildContextError) as exc:
            raise pulumi.RunError(
                f"{args.service}: cannot compute the image tag from "
                f"{dockerfile_for(args.service)} under {root}: {exc} "
                "(or give a digest in PLATFORM_IMAGE_OVERRIDES)"
            ) from None
        image_name = args.stack.name(Kind.IMAGE, args.service)
        # Relative to infra/, the directory the Pulumi CLI runs the program in (`main: infra/`):
        # no machine paths in the state, and the policy pack resolves them the same way.
        context = os.path.relpath(root, PROGRAM_DIR)
        image = docker_build.Image(
            f"{name}-image",
            # The repo root, not the service folder: the image needs shared/ too (a build
            # from services/<name>/ once shipped an image without it).
            context=docker_build.BuildContextArgs(location=context),
            dockerfile=docker_build.DockerfileArgs(
                location=os.path.join(context, dockerfile_for(args.service))
            ),
            tags=[pulumi.Output.concat(args.repository_url, "/", image_name, ":", tag)],
            platforms=[IMAGE_PLATFORM],
            push=True,
            registries=[
                docker_build.RegistryArgs(
                    address=args.registry, username=TOKEN_USERNAME, password=args.push_token
                )
            ],
            # A preview must never need a Docker daemon.
            build_on_preview=False,
            # Declared inside the Service component before: kept, not re-created.
            opts=pulumi.ResourceOptions.merge(
                child_options(self, opts),
                pulumi.ResourceOptions(
                    aliases=[pulumi.Alias(parent=pulumi.create_urn(name, "platform:index:Service"))]
                ),
            ),
        )
        self.ref = image.ref
        self.register_outputs({"ref": self.ref})
