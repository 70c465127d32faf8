"""Stateful fakes of the Google services the deploy adapters call, on :class:`FakeGrpc`.

Each holds the resources as Google's own messages, answers the methods the adapters use with
real response messages, records every request, and answers errors with real status codes
(:meth:`fail`). ``clients()`` returns Google's official clients wired to the server through
their gRPC transports: what an adapter sends and reads goes through the real types.

* :class:`FakeCloudRun`: ``google.cloud.run.v2.Services/GetService``, ``UpdateService``
  (traffic, conditioned on the etag), ``GetIamPolicy`` and ``Revisions/GetRevision``;
  :meth:`FakeCloudRun.serve` puts a service with its latest ready revision, traffic and labels
  in place.
* :class:`FakeArtifactRegistry`: ``ArtifactRegistry/GetTag`` over ``tags`` (tag resource ->
  version name) and ``GetVersion`` over ``versions`` (version resource names: a docker
  image's versions are named by digest).
* :class:`FakeSecretManager`: ``SecretManagerService/AccessSecretVersion`` over ``secrets``
  (``projects/P/secrets/S`` -> its versions' payloads, oldest first; ``latest`` the last).
* :class:`FakeCloudBuild`: ``CloudBuild/CreateBuild`` answering a long-running operation that
  is not done, and ``google.longrunning.Operations/GetOperation`` completing it after
  ``polls_before_done`` polls, with the built image's digest, or with the build's failure.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.cloud import artifactregistry_v1, run_v2, secretmanager_v1
from google.cloud.devtools import cloudbuild_v1
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2
from google.rpc import status_pb2

from ._server import FakeGrpc, done_operation

__all__ = [
    "FakeCloudRun",
    "FakeArtifactRegistry",
    "FakeCloudBuild",
    "FakeSecretManager",
    "Failure",
]

RUN_SERVICES = "google.cloud.run.v2.Services"
RUN_REVISIONS = "google.cloud.run.v2.Revisions"
ARTIFACT_REGISTRY = "google.devtools.artifactregistry.v1.ArtifactRegistry"
SECRET_MANAGER = "google.cloud.secretmanager.v1.SecretManagerService"
CLOUD_BUILD = "google.devtools.cloudbuild.v1.CloudBuild"
OPERATIONS = "google.longrunning.Operations"
_HAS_CONTAINER_STATUSES = any(
    f.name == "container_statuses" for f in run_v2.Revision.pb().DESCRIPTOR.fields
)
_LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


@dataclass(frozen=True)
class Failure:
    code: grpc.StatusCode
    message: str


class _Fake:
    """A server plus per-(method, resource) failures; subclasses register their methods."""

    def __init__(self) -> None:
        self.server = FakeGrpc()
        self._failures: dict[tuple[str, str | None], Failure] = {}
        self._lock = threading.Lock()

    def fail(
        self, method: str, code: grpc.StatusCode, message: str, *, name: str | None = None
    ) -> None:
        """Answer ``method`` (for resource ``name``, or any) with ``code`` from now on."""
        self._failures[(method, name)] = Failure(code, message)

    def _check(self, method: str, name: str, context: grpc.ServicerContext) -> None:
        failure = self._failures.get((method, name)) or self._failures.get((method, None))
        if failure is not None:
            context.abort(failure.code, failure.message)

    def requests(self, method: str) -> list[Any]:
        return self.server.requests(method)

    def start(self) -> str:
        """Start the server (once: a started fake keeps its address and clients)."""
        if self.server.address is not None:
            return self.server.address
        return self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server.address = None

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeCloudRun(_Fake):
    """Services and their revisions as run_v2 messages, changed the way Cloud Run changes them.

    ``UpdateService`` applies the request's traffic block: an ``etag`` in the request must be
    the service's current one (ABORTED otherwise, so a concurrent change is not overwritten),
    every revision named must exist and the percents must sum to 100 (INVALID_ARGUMENT). An
    applied change bumps the etag, recomputes ``traffic_statuses`` (tags get their URL) and is
    recorded in :meth:`history`. ``GetIamPolicy`` answers ``policies[resource]`` for a service
    that exists."""

    def __init__(self) -> None:
        super().__init__()
        self.services: dict[str, run_v2.Service] = {}
        self.revisions: dict[str, run_v2.Revision] = {}
        self.policies: dict[str, policy_pb2.Policy] = {}
        self._history: dict[str, list[dict[str, int]]] = {}
        s = self.server
        s.unary(RUN_SERVICES, "GetService", run_v2.GetServiceRequest, run_v2.Service, self._get)
        s.unary(
            RUN_SERVICES,
            "UpdateService",
            run_v2.UpdateServiceRequest,
            operations_pb2.Operation,
            self._update,
        )
        s.unary(
            RUN_SERVICES,
            "GetIamPolicy",
            iam_policy_pb2.GetIamPolicyRequest,
            policy_pb2.Policy,
            self._get_iam_policy,
        )
        s.unary(RUN_REVISIONS, "GetRevision", run_v2.GetRevisionRequest, run_v2.Revision, self._rev)

    def _service(self, method: str, name: str, context: grpc.ServicerContext) -> run_v2.Service:
        self._check(method, name, context)
        if name not in self.services:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Resource '{name}' was not found")
        return self.services[name]

    def _get(self, request: run_v2.GetServiceRequest, context: grpc.ServicerContext) -> Any:
        with self._lock:
            return self._service("GetService", request.name, context)

    def _get_iam_policy(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self._service("GetIamPolicy", request.resource, context)
            return self.policies.get(request.resource, policy_pb2.Policy())

    def _update(self, request: run_v2.UpdateServiceRequest, context: grpc.ServicerContext) -> Any:
        name = request.service.name
        with self._lock:
            current = self._service("UpdateService", name, context)
            if request.service.etag and request.service.etag != current.etag:
                context.abort(grpc.StatusCode.ABORTED, "etag mismatch: the service changed")
            targets = list(request.service.traffic)
            for t in targets:
                if t.type_ == _REVISION and f"{name}/revisions/{t.revision}" not in self.revisions:
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, f"Revision {t.revision} not found"
                    )
            if sum(t.percent for t in targets) != 100:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "traffic must sum to 100")
            updated = run_v2.Service.deserialize(run_v2.Service.serialize(current))
            updated.traffic = targets
            updated.traffic_statuses = _statuses(updated.uri, targets)
            number = int(current.etag.strip('"') or 0) + 1
            updated.etag = f'"{number}"'
            self.services[name] = updated
            self._history.setdefault(name, []).append(self.split(name))
            return done_operation(f"{name}/operations/op{number}", updated)

    def _rev(self, request: run_v2.GetRevisionRequest, context: grpc.ServicerContext) -> Any:
        self._check("GetRevision", request.name, context)
        if request.name not in self.revisions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Resource '{request.name}' was not found")
        return self.revisions[request.name]

    def split(self, resource: str) -> dict[str, int]:
        """The service's traffic block: revision -> percent (targets with a share only)."""
        return {t.revision: t.percent for t in self.services[resource].traffic if t.percent}

    def history(self, resource: str) -> list[dict[str, int]]:
        """The split after each applied ``UpdateService``, oldest first."""
        return list(self._history.get(resource, []))

    def serve(
        self,
        resource: str,
        image: str,
        *,
        labels: dict[str, str] | None = None,
        percent: int = 100,
        revision: str | None = None,
        ready: bool = True,
        digest: str | None = None,
        traffic: Mapping[str, int] | None = None,
    ) -> run_v2.Service:
        """``resource`` (``projects/P/locations/L/services/S``) serving ``image`` from its latest
        ready revision with ``percent`` of the traffic (the rest on an older revision), or, with
        ``traffic`` (revision -> percent), split by revision name; every revision named exists."""
        short = resource.rsplit("/", 1)[-1]
        revision = revision or f"{short}-00002-abc"
        rev_name = f"{resource}/revisions/{revision}"
        if traffic is None:
            targets = [run_v2.TrafficTarget(type_=_LATEST, percent=percent)]
            if percent < 100:
                old = f"{short}-00001-old"
                targets.append(
                    run_v2.TrafficTarget(type_=_REVISION, revision=old, percent=100 - percent)
                )
        else:
            targets = [
                run_v2.TrafficTarget(type_=_REVISION, revision=rev, percent=pct)
                for rev, pct in traffic.items()
            ]
        uri = f"https://{short}-abc123-uw.a.run.app"
        service = run_v2.Service(
            name=resource,
            uri=uri,
            etag='"1"',
            labels=labels or {},
            latest_ready_revision=rev_name if ready else "",
            latest_created_revision=rev_name,
            traffic=targets,
            traffic_statuses=_statuses(uri, targets),
        )
        self.services[resource] = service
        for t in targets:
            if t.revision:
                name = f"{resource}/revisions/{t.revision}"
                self.revisions[name] = run_v2.Revision(
                    name=name, containers=[run_v2.Container(image=image)]
                )
        revision_fields: dict[str, Any] = {
            "name": rev_name,
            "containers": [run_v2.Container(image=image)],
        }
        if digest and _HAS_CONTAINER_STATUSES:
            # The resolved digest, where the installed run_v2 carries Revision.container_statuses
            # (the REST API has containerStatuses[].imageDigest; google-cloud-run 0.16 does not).
            revision_fields["container_statuses"] = [run_v2.ContainerStatus(image_digest=digest)]
        self.revisions[rev_name] = run_v2.Revision(**revision_fields)
        return service

    def clients(self) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
        from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
        from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

        return (
            run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=self.server.channel())),
            run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=self.server.channel())),
        )


def _statuses(uri: str, targets: list[run_v2.TrafficTarget]) -> list[run_v2.TrafficTargetStatus]:
    """What Cloud Run reports for a traffic block: each target, a tagged one with its URL
    (``https://TAG---SERVICE-HASH.a.run.app``)."""
    host = uri.removeprefix("https://")
    return [
        run_v2.TrafficTargetStatus(
            type_=t.type_,
            revision=t.revision,
            percent=t.percent,
            tag=t.tag,
            uri=f"https://{t.tag}---{host}" if t.tag else "",
        )
        for t in targets
    ]


class FakeArtifactRegistry(_Fake):
    def __init__(self, lookup: Callable[[str], str | None] | None = None) -> None:
        """``lookup(tag resource)`` -> version name, or ``tags`` when not given."""
        super().__init__()
        self.tags: dict[str, str] = {}
        self.versions: set[str] = (
            set()
        )  # projects/P/locations/L/repositories/R/packages/X/versions/V
        self._lookup = lookup or self.tags.get
        self.server.unary(
            ARTIFACT_REGISTRY,
            "GetTag",
            artifactregistry_v1.GetTagRequest,
            artifactregistry_v1.Tag,
            self._get_tag,
        )
        self.server.unary(
            ARTIFACT_REGISTRY,
            "GetVersion",
            artifactregistry_v1.GetVersionRequest,
            artifactregistry_v1.Version,
            self._get_version,
        )

    def _get_version(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check("GetVersion", request.name, context)
        if request.name not in self.versions:
            context.abort(grpc.StatusCode.NOT_FOUND, "Requested entity was not found.")
        return artifactregistry_v1.Version(name=request.name)

    def _get_tag(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check("GetTag", request.name, context)
        version = self._lookup(request.name)
        if version is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "Requested entity was not found.")
        return artifactregistry_v1.Tag(name=request.name, version=version)

    def client(self) -> artifactregistry_v1.ArtifactRegistryClient:
        from google.cloud.artifactregistry_v1.services.artifact_registry.transports import (
            ArtifactRegistryGrpcTransport,
        )

        channel = self.server.channel()
        return artifactregistry_v1.ArtifactRegistryClient(
            transport=ArtifactRegistryGrpcTransport(channel=channel)
        )


class FakeSecretManager(_Fake):
    """Secret versions by secret (``projects/P/secrets/S``): :meth:`put` adds one; an access
    to ``.../versions/latest`` or ``.../versions/N`` (1-based) answers its payload."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, list[bytes]] = {}
        self.server.unary(
            SECRET_MANAGER,
            "AccessSecretVersion",
            secretmanager_v1.AccessSecretVersionRequest,
            secretmanager_v1.AccessSecretVersionResponse,
            self._access,
        )

    def put(self, project: str, secret: str, value: str | bytes) -> str:
        data = value.encode() if isinstance(value, str) else value
        versions = self.secrets.setdefault(f"projects/{project}/secrets/{secret}", [])
        versions.append(data)
        return f"projects/{project}/secrets/{secret}/versions/{len(versions)}"

    def _access(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check("AccessSecretVersion", request.name, context)
        secret, _, version = request.name.partition("/versions/")
        versions = self.secrets.get(secret)
        if not versions:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"Secret [{secret}] not found or has no versions."
            )
        index = len(versions) if version == "latest" else int(version) if version.isdigit() else 0
        if not 1 <= index <= len(versions):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Secret Version [{request.name}] not found.")
        name = f"{secret}/versions/{index}"
        return secretmanager_v1.AccessSecretVersionResponse(
            name=name, payload=secretmanager_v1.SecretPayload(data=versions[index - 1])
        )

    def client(self) -> secretmanager_v1.SecretManagerServiceClient:
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        return secretmanager_v1.SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=self.server.channel())
        )


@dataclass
class _BuildRun:
    build: cloudbuild_v1.Build
    polls: int = 0


class FakeCloudBuild(_Fake):
    """Builds succeed with ``digest_for(image)`` unless :attr:`fail_builds` says why not."""

    def __init__(
        self,
        *,
        polls_before_done: int = 1,
        digest_for: Callable[[str], str] = lambda image: "sha256:" + "d" * 64,
    ) -> None:
        super().__init__()
        self.polls_before_done = polls_before_done
        self.digest_for = digest_for
        self.fail_builds: str | None = None  # the failure Cloud Build reports for every build
        self.push_images = True  # False: builds succeed but report no pushed image
        self.runs: dict[str, _BuildRun] = {}
        self._ids = itertools.count(1)
        s = self.server
        s.unary(
            CLOUD_BUILD,
            "CreateBuild",
            cloudbuild_v1.CreateBuildRequest,
            operations_pb2.Operation,
            self._create,
        )
        s.unary(
            OPERATIONS,
            "GetOperation",
            operations_pb2.GetOperationRequest,
            operations_pb2.Operation,
            self._get_operation,
        )

    def _create(self, request: cloudbuild_v1.CreateBuildRequest, context: Any) -> Any:
        self._check("CreateBuild", request.project_id, context)
        build_id = f"build-{next(self._ids)}"
        build = cloudbuild_v1.Build(request.build)
        build.id = build_id
        build.project_id = request.project_id
        build.status = cloudbuild_v1.Build.Status.QUEUED
        build.log_url = f"https://console.cloud.google.com/cloud-build/builds/{build_id}"
        name = f"operations/build/{request.project_id}/{build_id}"
        self.runs[name] = _BuildRun(build)
        return self._operation(name, done=False)

    def _get_operation(self, request: operations_pb2.GetOperationRequest, context: Any) -> Any:
        self._check("GetOperation", request.name, context)
        run = self.runs.get(request.name)
        if run is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"operation {request.name} not found")
        run.polls += 1
        done = run.polls >= self.polls_before_done
        if done and self.fail_builds is None:
            run.build.status = cloudbuild_v1.Build.Status.SUCCESS
            run.build.results = cloudbuild_v1.Results(
                images=[
                    cloudbuild_v1.BuiltImage(name=image, digest=self.digest_for(image))
                    for image in run.build.images
                    if self.push_images
                ]
            )
        elif done:
            run.build.status = cloudbuild_v1.Build.Status.FAILURE
            run.build.status_detail = self.fail_builds
        return self._operation(request.name, done=done)

    def _operation(self, name: str, *, done: bool) -> operations_pb2.Operation:
        run = self.runs[name]
        op = operations_pb2.Operation(name=name, done=done)
        op.metadata.Pack(
            cloudbuild_v1.BuildOperationMetadata.pb(
                cloudbuild_v1.BuildOperationMetadata(build=run.build)
            )
        )
        if done and self.fail_builds is None:
            op.response.Pack(cloudbuild_v1.Build.pb(run.build))
        elif done:
            # A failed build ends its operation with an error status and the build's detail.
            op.error.CopyFrom(status_pb2.Status(code=2, message=self.fail_builds or "failed"))
        return op

    def client(self) -> cloudbuild_v1.CloudBuildClient:
        from google.cloud.devtools.cloudbuild_v1.services.cloud_build.transports import (
            CloudBuildGrpcTransport,
        )

        return cloudbuild_v1.CloudBuildClient(
            transport=CloudBuildGrpcTransport(channel=self.server.channel())
        )
