"""Cloud Run: what each service serves now, and the verification of a deploy.

A deploy is verified when each service's latest ready revision serves 100% of the traffic
with the image digest the deploy asked for (the resolved ``container_statuses[].image_digest``
where the API reports it, else the digest in the revision's image reference: the program
deploys by digest). Drift reads the same
state: the deployed digest and the commit label the program puts on the service.

The orchestration talks to :class:`RunInspector`; tests run :class:`CloudRunAdapter` against
an in-process server of Cloud Run's own gRPC service definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ._errors import DeployError

__all__ = [
    "COMMIT_LABEL",
    "LOCK_TOKEN_LABEL",
    "ServiceRef",
    "ServiceState",
    "ServiceCheck",
    "RunInspector",
    "CloudRunAdapter",
    "verify_services",
]

#: Labels the program sets on each Cloud Run service (GCP label values: [a-z0-9_-], <= 63).
COMMIT_LABEL = "git-commit"
LOCK_TOKEN_LABEL = "deploy-lock-token"


@dataclass(frozen=True)
class ServiceRef:
    """A Cloud Run service: logical name (the config key) and where it runs."""

    service: str  # logical name, e.g. prediction-worker
    name: str  # Cloud Run service name
    project: str
    region: str

    @property
    def resource(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{self.name}"


@dataclass(frozen=True)
class ServiceState:
    exists: bool
    latest_ready_revision: str | None = None  # short revision name
    latest_created_revision: str | None = None
    latest_percent: int = 0  # traffic share served by the latest ready revision
    image: str | None = None  # as configured on that revision
    image_digest: str | None = None  # sha256:... resolved by Cloud Run
    labels: dict[str, str] = field(default_factory=dict)
    uri: str | None = None


@dataclass(frozen=True)
class ServiceCheck:
    service: str
    ok: bool
    revision: str | None
    digest: str | None
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": list(self.problems)}


class RunInspector(Protocol):
    def describe(self, ref: ServiceRef) -> ServiceState:
        """The service's current state; ``exists=False`` when there is no such service."""
        ...


def verify_services(
    inspector: RunInspector,
    expected: Mapping[ServiceRef, str | None],
    *,
    probe: Callable[[ServiceRef, ServiceState], str | None] | None = None,
    require_traffic: bool = True,
) -> list[ServiceCheck]:
    """Check each service against its expected digest (None: any digest, e.g. a local build
    whose digest only Pulumi knows). ``probe`` returns a problem string or None.
    ``require_traffic=False``: the latest ready revision need not serve traffic yet (before
    the progressive rollout moves it)."""
    checks = []
    for ref, want in sorted(expected.items(), key=lambda kv: kv[0].service):
        state = inspector.describe(ref)
        problems: list[str] = []
        if not state.exists:
            problems.append(f"Cloud Run service {ref.resource} does not exist")
        else:
            if not state.latest_ready_revision:
                problems.append("no ready revision")
            elif state.latest_created_revision and (
                state.latest_created_revision != state.latest_ready_revision
            ):
                problems.append(
                    f"latest revision {state.latest_created_revision} is not ready "
                    f"(serving {state.latest_ready_revision})"
                )
            if require_traffic and state.latest_percent != 100:
                problems.append(
                    f"latest ready revision {state.latest_ready_revision} serves "
                    f"{state.latest_percent}% of traffic, not 100%"
                )
            if want and state.image_digest != want:
                problems.append(f"serves digest {state.image_digest}, expected {want}")
            if probe and not problems:
                problem = probe(ref, state)
                if problem:
                    problems.append(problem)
        checks.append(
            ServiceCheck(
                ref.service,
                not problems,
                state.latest_ready_revision,
                state.image_digest,
                tuple(problems),
            )
        )
    return checks


class CloudRunAdapter:
    """The real inspector on ``google-cloud-run`` (``run_v2``).

    ``services`` / ``revisions``: ``run_v2.ServicesClient`` / ``RevisionsClient`` to use
    (default: Google's, with ``credentials``); the tests pass clients on an in-process gRPC
    server speaking the same service definitions (``tests/fakegcp``).
    """

    def __init__(
        self, *, credentials: Any = None, services: Any = None, revisions: Any = None
    ) -> None:
        self._credentials = credentials
        self._services: Any = services
        self._revisions: Any = revisions

    def _clients(self):
        from google.cloud import run_v2

        if self._services is None:
            self._services = run_v2.ServicesClient(credentials=self._credentials)
        if self._revisions is None:
            self._revisions = run_v2.RevisionsClient(credentials=self._credentials)
        return self._services, self._revisions

    def describe(self, ref: ServiceRef) -> ServiceState:
        from google.api_core import exceptions as gexc
        from google.cloud import run_v2

        services, revisions = self._clients()
        try:
            svc = services.get_service(name=ref.resource, timeout=30)
        except gexc.NotFound:
            return ServiceState(exists=False)
        except gexc.GoogleAPICallError as exc:
            raise DeployError(f"Cloud Run: cannot read {ref.resource}: {exc}") from None
        ready = svc.latest_ready_revision.rsplit("/", 1)[-1] or None
        created = svc.latest_created_revision.rsplit("/", 1)[-1] or None
        latest_type = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
        percent = sum(
            t.percent
            for t in svc.traffic_statuses
            if t.type_ == latest_type or (ready and t.revision.rsplit("/", 1)[-1] == ready)
        )
        image = digest = None
        if ready:
            try:
                rev = revisions.get_revision(name=svc.latest_ready_revision, timeout=30)
            except gexc.GoogleAPICallError as exc:
                raise DeployError(f"Cloud Run: cannot read revision {ready}: {exc}") from None
            if rev.containers:
                image = rev.containers[0].image
            # Newer API versions report the resolved digest per container; the program deploys
            # by digest, so the configured reference carries it too.
            statuses = [
                c.image_digest
                for c in getattr(rev, "container_statuses", ())
                if getattr(c, "image_digest", "")
            ]
            if statuses:
                digest = statuses[0]
            elif image and "@sha256:" in image:
                digest = image.rpartition("@")[2]
        return ServiceState(
            exists=True,
            latest_ready_revision=ready,
            latest_created_revision=created,
            latest_percent=int(percent),
            image=image,
            image_digest=digest,
            labels=dict(svc.labels),
            uri=svc.uri or None,
        )
