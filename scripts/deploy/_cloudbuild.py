"""Remote image builds: Cloud Build for the build, Artifact Registry for "is this tag there?".

``deploy --builder cloudbuild`` builds each service's image whose content-hash tag is not in
Artifact Registry yet, on Cloud Build, with the repo root as context and
``-f images/<service>.Dockerfile`` (``gcloud run deploy --source`` once built from the service
folder and shipped an image without ``shared/``), runs the import smoke step before the push,
skips images already there, and hands the digests to the program as per-service overrides.

The orchestration talks to :class:`ImageBuilder`; tests run :class:`CloudBuildAdapter` against
in-process servers of Cloud Build's and Artifact Registry's own gRPC service definitions.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from infra.build_context import BuildContext, dockerfile_for

from ._errors import DeployError

__all__ = [
    "DOCKER_BUILDER",
    "ImageTarget",
    "ImageOutcome",
    "ImageBuilder",
    "CloudBuildAdapter",
    "build_steps",
    "entry_module",
    "ensure_images",
    "split_image",
]

#: Google's docker builder image on Cloud Build.
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"
#: A build of one image takes ~2-5 min; a hung one is cut off here.
BUILD_TIMEOUT_S = 1200
#: An ASGI/WSGI app spec in a CMD: ``package.module:app``.
_APP_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class ImageTarget:
    """Where a service's image goes: ``repository`` (``host/project/repo/name``) and ``tag``."""

    service: str
    repository: str
    tag: str

    @property
    def tagged(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class ImageOutcome:
    service: str
    ref: str  # repository@sha256:...
    built: bool  # False: the tag was already in Artifact Registry


class ImageBuilder(Protocol):
    """What the pipeline needs from Cloud Build and Artifact Registry."""

    def existing_digest(self, target: ImageTarget) -> str | None:
        """``sha256:...`` of the image tagged ``target.tag`` in Artifact Registry, or None."""
        ...

    def build(self, target: ImageTarget, *, on_output: Callable[[str], None] | None = None) -> str:
        """Build and push the image; return its ``sha256:...`` digest. Raises DeployError."""
        ...


def split_image(ref: str) -> tuple[str, str]:
    """``host/path/name:tag`` -> (``host/path/name``, ``tag``); a port in the host is kept."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        raise DeployError(f"image reference '{ref}' has no tag")
    return repo, tag


def entry_module(service: str, root: Path | None = None) -> str:
    """The module the Dockerfile's CMD serves.

    ``uvicorn services.x.main:app`` (also inside ``sh -c "..."``) -> ``services.x.main``.
    """
    ctx = BuildContext.for_service(service, root)
    cmd = None
    for ins in ctx.final_stage():
        if ins["instruction"] in ("CMD", "ENTRYPOINT"):
            cmd = ins["value"].strip()
    if not cmd:
        raise DeployError(f"{dockerfile_for(service)} has no CMD to smoke-test")
    words = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
    # ["sh", "-c", "exec uvicorn pkg.mod:app ..."]: look inside shell strings too.
    flat = [w for word in words for w in shlex.split(word)]
    for word in flat:
        if _APP_SPEC.fullmatch(word):
            return word.split(":", 1)[0]
    if "-m" in flat and flat.index("-m") + 1 < len(flat):
        return flat[flat.index("-m") + 1]
    raise DeployError(f"cannot find the entry module in CMD {words} of {dockerfile_for(service)}")


def build_steps(target: ImageTarget, *, module: str) -> list[dict[str, Any]]:
    """The Cloud Build steps for one image: build from the repo root, import smoke, (push)."""
    return [
        {
            "id": f"build-{target.service}",
            "name": DOCKER_BUILDER,
            "args": [
                "build",
                "-f",
                dockerfile_for(target.service),
                "-t",
                target.tagged,
                ".",
            ],
        },
        {
            # The image's own interpreter imports its entry module: a missing shared/ or an
            # undeclared dependency fails here, before anything is pushed.
            "id": f"smoke-{target.service}",
            "name": DOCKER_BUILDER,
            "args": [
                "run",
                "--rm",
                "--entrypoint",
                "python",
                target.tagged,
                "-c",
                f"import {module}",
            ],
        },
    ]


def ensure_images(
    builder: ImageBuilder,
    targets: Mapping[str, ImageTarget],
    *,
    on_output: Callable[[str], None] | None = None,
) -> dict[str, ImageOutcome]:
    """Build every image whose tag is not in the registry; return the digest ref of each."""
    outcomes: dict[str, ImageOutcome] = {}
    for service, target in sorted(targets.items()):
        digest = builder.existing_digest(target)
        built = digest is None
        if built:
            if on_output:
                on_output(f"{service}: {target.tagged} not in Artifact Registry, building")
            digest = builder.build(target, on_output=on_output)
        elif on_output:
            on_output(f"{service}: {target.tagged} already in Artifact Registry ({digest})")
        if not digest or not digest.startswith("sha256:"):
            raise DeployError(f"{service}: the build returned no image digest ({digest!r})")
        outcomes[service] = ImageOutcome(service, f"{target.repository}@{digest}", built)
    return outcomes


class CloudBuildAdapter:
    """The real builder on ``google-cloud-build``, ``google-cloud-artifact-registry`` and
    ``google-cloud-storage`` (the context tarball Cloud Build reads).

    Both of its resources are explicit, never Cloud Build's defaults: ``source_bucket`` (the
    bootstrap's ``build_source_bucket``) and ``service_account`` (its ``builder_email``), the
    identity each build runs as. Use :meth:`for_stack` to take them from the stack config.
    """

    def __init__(
        self,
        *,
        project: str,
        root: Path,
        source_bucket: str | None = None,
        service_account: str | None = None,
        credentials: Any = None,
        build_client: Any = None,
        registry_client: Any = None,
        uploader: Callable[[ImageTarget], tuple[str, str]] | None = None,
        build_timeout_s: float = BUILD_TIMEOUT_S,
    ) -> None:
        """``build_client`` / ``registry_client``: ``CloudBuildClient`` /
        ``ArtifactRegistryClient`` to use (default: Google's, with ``credentials``);
        ``uploader(target)`` puts the context tarball where Cloud Build reads it and returns
        ``(bucket, object)`` (default: Cloud Storage)."""
        self.project = project
        self.root = Path(root)
        self.source_bucket = source_bucket
        self.service_account = service_account
        self._credentials = credentials
        self._build_client = build_client
        self._registry_client = registry_client
        self._uploader = uploader or self._upload_context
        self.build_timeout_s = build_timeout_s

    def _registry(self) -> Any:
        from google.cloud import artifactregistry_v1

        if self._registry_client is None:
            self._registry_client = artifactregistry_v1.ArtifactRegistryClient(
                credentials=self._credentials
            )
        return self._registry_client

    def _builds(self) -> Any:
        from google.cloud.devtools import cloudbuild_v1

        if self._build_client is None:
            self._build_client = cloudbuild_v1.CloudBuildClient(credentials=self._credentials)
        return self._build_client

    @classmethod
    def for_stack(cls, config: Any, root: Path, **kwargs: Any) -> CloudBuildAdapter:
        """From a stack's :class:`infra.config.StackConfig`; DeployError naming the key when
        ``platform.deploy.cloudbuild`` is not set."""
        cloudbuild = config.platform.deploy.cloudbuild
        if cloudbuild is None:
            raise DeployError(
                f"--builder cloudbuild: stack '{config.stack}' sets no "
                "platform.deploy.cloudbuild in its stack file; set service_account and "
                "source_bucket to the bootstrap's outputs `builder_email` and "
                "`build_source_bucket` (README, 'Bootstrap (one-time)')"
            )
        return cls(
            project=config.project,
            root=root,
            source_bucket=cloudbuild.source_bucket,
            service_account=cloudbuild.service_account,
            **kwargs,
        )

    def existing_digest(self, target: ImageTarget) -> str | None:
        from google.api_core import exceptions as gexc

        client = self._registry()
        try:
            tag = client.get_tag(name=_tag_resource(target))
        except gexc.NotFound:
            return None
        except gexc.GoogleAPICallError as exc:
            raise DeployError(
                f"Artifact Registry lookup of {target.tagged} failed: {exc}"
            ) from None
        return tag.version.rsplit("/", 1)[-1] or None

    def _require_build_resources(self) -> None:
        if not self.source_bucket or not self.service_account:
            raise DeployError(
                "Cloud Build needs its source bucket and build identity, explicitly: "
                "platform.deploy.cloudbuild in the stack file (the bootstrap's outputs)"
            )

    def _upload_context(self, target: ImageTarget) -> tuple[str, str]:
        from docker.utils.build import tar
        from google.cloud import storage

        ctx = BuildContext.for_service(target.service, self.root)
        archive = tar(
            str(self.root),
            exclude=ctx.dockerignore_patterns,
            dockerfile=(dockerfile_for(target.service), None),
            gzip=True,
        )
        blob_name = f"source/{target.service}-{target.tag}.tgz"
        bucket = storage.Client(project=self.project, credentials=self._credentials).bucket(
            self.source_bucket
        )
        bucket.blob(blob_name).upload_from_file(
            io.BytesIO(archive.read()), content_type="application/gzip"
        )
        return self.source_bucket, blob_name

    def build_request(self, target: ImageTarget, blob: str, *, bucket: str | None = None) -> Any:
        """The ``cloudbuild_v1.Build`` for ``target`` from the uploaded context ``blob`` (in
        ``bucket``, default the source bucket)."""
        self._require_build_resources()
        from google.cloud.devtools import cloudbuild_v1
        from google.protobuf import duration_pb2

        steps = build_steps(target, module=entry_module(target.service, self.root))
        return cloudbuild_v1.Build(
            source=cloudbuild_v1.Source(
                storage_source=cloudbuild_v1.StorageSource(
                    bucket=bucket or self.source_bucket, object_=blob
                )
            ),
            steps=[
                cloudbuild_v1.BuildStep(name=s["name"], id=s["id"], args=s["args"]) for s in steps
            ],
            images=[target.tagged],  # pushed only after every step succeeded
            timeout=duration_pb2.Duration(seconds=int(self.build_timeout_s)),
            tags=["deploy", target.service],
            # Runs as the bootstrap's build identity, not Cloud Build's default account (which
            # may hold project Editor) nor the deployer; such a build must log to Cloud Logging
            # only (or a bucket of its own).
            # https://cloud.google.com/build/docs/securing-builds/configure-user-specified-service-accounts
            service_account=(f"projects/{self.project}/serviceAccounts/{self.service_account}"),
            options=cloudbuild_v1.BuildOptions(
                logging=cloudbuild_v1.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY
            ),
        )

    def build(self, target: ImageTarget, *, on_output=None) -> str:
        from google.api_core import exceptions as gexc

        self._require_build_resources()
        bucket, blob = self._uploader(target)
        build = self.build_request(target, blob, bucket=bucket)
        client = self._builds()
        try:
            operation = client.create_build(project_id=self.project, build=build)
            if on_output:
                build_id = getattr(operation.metadata, "build", None)
                log_url = getattr(build_id, "log_url", "")
                on_output(f"{target.service}: Cloud Build started {log_url}")
            result = operation.result(timeout=self.build_timeout_s + 60)
        except gexc.GoogleAPICallError as exc:
            raise DeployError(f"Cloud Build of {target.tagged} failed: {exc}") from None
        except TimeoutError:
            raise DeployError(
                f"Cloud Build of {target.tagged} did not finish within "
                f"{self.build_timeout_s + 60:.0f} s (it may still be running: see its log)"
            ) from None
        for image in result.results.images:
            if image.name in (target.tagged, target.repository):
                return image.digest
        raise DeployError(f"Cloud Build of {target.tagged} pushed no image")


def _tag_resource(target: ImageTarget) -> str:
    """``projects/P/locations/L/repositories/R/packages/<quoted path>/tags/T``."""
    return f"{package_resource(target.repository)}/tags/{target.tag}"


def package_resource(repository: str) -> str:
    """``LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE`` -> the image's package resource,
    ``projects/P/locations/L/repositories/R/packages/<quoted image path>`` (its tags and its
    versions, named by digest, live under it)."""
    host, _, rest = repository.partition("/")
    location = host.removesuffix("-docker.pkg.dev")
    parts = rest.split("/")
    if not host.endswith("-docker.pkg.dev") or len(parts) < 3:
        raise DeployError(
            f"'{repository}' is not an Artifact Registry docker image "
            "(LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE)"
        )
    project, repo, package = parts[0], parts[1], "/".join(parts[2:])
    return (
        f"projects/{project}/locations/{location}/repositories/{repo}"
        f"/packages/{quote(package, safe='')}"
    )
