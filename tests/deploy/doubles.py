"""What the deploy tests run the pipeline's four adapters against.

Cloud Run and Cloud Build/Artifact Registry: the real adapters (:class:`CloudRunAdapter`,
:class:`CloudBuildAdapter`) on in-process gRPC servers speaking Google's own service
definitions (``tests/fakegcp``), with helpers to put state in place. Hand-written doubles are
left only where no service definition exists: the Pulumi engine (:class:`FakeEngine`: the
Automation API drives a CLI process, not a gRPC service; ``test_adapters.py`` runs the real
adapter against a stand-in CLI), the tooling check (local commands) and the reporter.
Everything else in the deploy tests is real (git, the Firestore emulator, the deploy lock, the
content hash)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from infra.paths import REPO_ROOT
from scripts.deploy import (
    CloudBuildAdapter,
    CloudRunAdapter,
    DeployError,
    EngineResult,
    ImageTarget,
    MissingTool,
    ResourceChange,
    ServiceRef,
    ServiceState,
)
from tests.fakegcp import FakeArtifactRegistry, FakeCloudBuild, FakeCloudRun


class FakeTooling:
    def __init__(self, missing: list[MissingTool] | None = None) -> None:
        self._missing = list(missing or [])

    def missing(self) -> list[MissingTool]:
        return list(self._missing)


@dataclass
class FakeEngine:
    """Records every call; ``up_behaviour`` may raise, block, or return a result."""

    summary: dict[str, int] = field(default_factory=lambda: {"update": 2, "same": 10})
    changes: list[ResourceChange] = field(default_factory=list)
    up_error: Exception | None = None
    block_up: bool = False  # wait in up() until interrupted
    outputs: dict = field(default_factory=dict)
    calls: list[tuple[str, str, dict]] = field(default_factory=list)
    on_up: Callable[[], None] | None = None
    interrupted: threading.Event = field(default_factory=threading.Event)
    in_up: threading.Event = field(default_factory=threading.Event)

    def preview(self, stack, *, env, on_output=None, refresh=False, expect_no_changes=False):
        self.calls.append(("preview", stack, dict(env, refresh=refresh, expect=expect_no_changes)))
        if on_output:
            on_output("Previewing update (fake)")
        return EngineResult(summary=dict(self.summary), changes=list(self.changes))

    def up(self, stack, *, env, on_output=None):
        self.calls.append(("up", stack, dict(env)))
        self.in_up.set()
        if on_output:
            on_output("Updating (fake)")
        if self.on_up:
            self.on_up()
        if self.block_up:
            if not self.interrupted.wait(30):
                raise AssertionError("up was never interrupted")
            raise DeployError("pulumi up failed: interrupted (fake)")
        if self.up_error:
            raise self.up_error
        return EngineResult(summary=dict(self.summary), outputs=dict(self.outputs))

    def interrupt(self, *, grace: float = 30.0) -> bool:
        self.calls.append(("interrupt", "", {"grace": grace}))
        self.interrupted.set()
        return True


def _tag_of(resource: str) -> str:
    """An Artifact Registry tag resource -> ``host/project/repo/image:tag`` (the inverse of the
    adapter's ``_tag_resource``)."""
    parts = resource.split("/")
    project, location, repo = parts[1], parts[3], parts[5]
    package, tag = unquote(parts[7]), parts[9]
    return f"{location}-docker.pkg.dev/{project}/{repo}/{package}:{tag}"


class FakeBuilder(CloudBuildAdapter):
    """The real :class:`CloudBuildAdapter` against in-process Cloud Build and Artifact Registry
    servers (``tests/fakegcp``) holding ``existing`` tags (``"repo:tag" -> digest``).

    The context upload is the one hand-written stand-in: Cloud Storage's client speaks its JSON
    API, for which the google-cloud-* packages carry no service definition to serve.
    """

    def __init__(self, existing: dict[str, str] | None = None, *, root=None) -> None:
        self.existing: dict[str, str] = dict(existing or {})
        self.built: list[ImageTarget] = []
        self.uploads: list[str] = []
        self.registry = FakeArtifactRegistry(lookup=self._version)
        self.cloud_build = FakeCloudBuild(digest_for=self._next_digest)
        self.registry.start()
        self.cloud_build.start()
        weakref.finalize(self, self.registry.stop)
        weakref.finalize(self, self.cloud_build.stop)
        super().__init__(
            project="p",
            root=root or REPO_ROOT,
            # The stack's platform.deploy.cloudbuild (the bootstrap's outputs).
            source_bucket="p_cloudbuild",
            service_account="cloud-builder@p.iam.gserviceaccount.com",
            build_client=self.cloud_build.client(),
            registry_client=self.registry.client(),
            uploader=self._upload,
        )

    @property
    def looked_up(self) -> list[str]:
        return [_tag_of(r.name) for r in self.registry.requests("GetTag")]

    def _version(self, resource: str) -> str | None:
        digest_ = self.existing.get(_tag_of(resource))
        return f"{resource.rsplit('/tags/', 1)[0]}/versions/{digest_}" if digest_ else None

    def _next_digest(self, image: str) -> str:
        digest_ = "sha256:" + (f"{len(self.built):x}" * 64)[:64]
        self.existing[image] = digest_
        return digest_

    def _upload(self, target: ImageTarget) -> tuple[str, str]:
        self.uploads.append(target.tagged)
        return "p_cloudbuild", f"source/{target.service}-{target.tag}.tgz"

    def build(self, target: ImageTarget, *, on_output=None) -> str:
        self.built.append(target)
        return super().build(target, on_output=on_output)


class FakeInspector(CloudRunAdapter):
    """The real :class:`CloudRunAdapter` against an in-process Cloud Run server
    (``tests/fakegcp``): ``serve`` and ``states`` put services in place as run_v2 messages."""

    def __init__(self, states: Mapping[str, ServiceState] | None = None) -> None:
        self.cloud_run = FakeCloudRun()
        self.cloud_run.start()
        weakref.finalize(self, self.cloud_run.stop)
        services, revisions = self.cloud_run.clients()
        super().__init__(services=services, revisions=revisions)
        self._refs: dict[str, str] = {}
        for name, state in (states or {}).items():
            self.put(name, state)

    @property
    def described(self) -> list[str]:
        return [r.name.rsplit("/", 1)[-1] for r in self.cloud_run.requests("GetService")]

    def describe(self, ref: ServiceRef) -> ServiceState:
        short = f"projects/-/locations/-/services/{ref.name}"
        if short in self.cloud_run.services:
            # put/serve know only the name: the service is placed where the adapter asks for it
            # (the request's full resource name is what the server checks).
            self.cloud_run.services[ref.resource] = self.cloud_run.services[short]
        return super().describe(ref)

    def put(self, name: str, state: ServiceState) -> None:
        if not state.exists:
            return
        resource = f"projects/-/locations/-/services/{name}"
        image = state.image or (
            f"us-west2-docker.pkg.dev/p/platform/{name}@{state.image_digest}"
            if state.image_digest
            else f"us-west2-docker.pkg.dev/p/platform/{name}:latest"
        )
        service = self.cloud_run.serve(
            resource,
            image,
            labels=dict(state.labels),
            percent=state.latest_percent,
            revision=state.latest_ready_revision,
            ready=state.latest_ready_revision is not None,
        )
        if state.latest_created_revision and state.latest_created_revision != (
            state.latest_ready_revision
        ):
            service.latest_created_revision = (
                f"{resource}/revisions/{state.latest_created_revision}"
            )

    def serve(self, name: str, digest: str, *, commit: str | None = None, percent: int = 100):
        labels = {"git-commit": commit} if commit else {}
        self.put(
            name,
            ServiceState(
                exists=True,
                latest_ready_revision=f"{name}-00002-abc",
                latest_created_revision=f"{name}-00002-abc",
                latest_percent=percent,
                image=f"us-west2-docker.pkg.dev/p/platform/{name}@{digest}",
                image_digest=digest,
                labels=labels,
            ),
        )


class RecordingReporter:
    def __init__(self) -> None:
        self.steps: list[tuple[str, str, str]] = []
        self.lines: list[str] = []

    def step(self, name: str, status: str, detail: str = "") -> None:
        self.steps.append((name, status, detail))

    def output(self, line: str) -> None:
        self.lines.append(line)

    def status_of(self, name: str) -> str | None:
        final = [s for n, s, _ in self.steps if n == name and s != "running"]
        return final[-1] if final else None


def digest(ch: str) -> str:
    return "sha256:" + ch * 64


def by_name(mapping: Mapping[str, ServiceRef]) -> dict[str, ServiceRef]:
    return dict(mapping)


class FakeSyntheticCheck:
    """The synthetic batch's runner (the real one is tested in test_cloud_check.py); answers
    what the test sets: ``predicted`` of ``policy.items``."""

    def __init__(self) -> None:
        self.predicted: int | None = None  # None: all
        self.calls: list[str] = []

    def __call__(self, url, policy, info, on_output=None):
        from scripts.rollout import judge_check

        self.calls.append(url)
        predicted = policy.items if self.predicted is None else self.predicted
        return judge_check(
            policy,
            batch_id="synthetic-test",
            status={
                "state": "completed",
                "completed": predicted,
                "failed": policy.items - predicted,
            },
            dead_lettered=0,
            elapsed_s=1.0,
            target=url,
        )


class FakeNotifier:
    def __init__(self) -> None:
        self.events: list = []

    def send(self, event):
        self.events.append(event)
        return []
