"""Where a deploy applies: Google Cloud (Pulumi + Cloud Run) or the local platform.

The pipeline (lock, build, record, release) is the same for both; a :class:`Target` supplies
the three steps that differ: the tooling it needs, the apply (``pulumi up``/``preview``, or the
emulators), and the verification (Cloud Run revisions and digests, or a synthetic batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from scripts.rollout import (
    CANDIDATE_TAG,
    CheckPolicy,
    CheckResult,
    RolloutPolicy,
    RolloutResult,
    judge_check,
    progressive_rollout,
)

from ._cloudrun import RunInspector, ServiceCheck, ServiceRef, verify_services
from ._pulumi import INTERRUPT_GRACE_S, EngineResult, OnOutput, PulumiEngine
from ._stackinfo import StackInfo
from ._tooling import SystemTooling, ToolingCheck

__all__ = ["Target", "CloudTarget", "LocalPlatform", "LocalTarget"]


class Target(Protocol):
    name: str
    #: Redeploying a recorded commit serves that commit's code (images by digest; local
    #: release trees). False: an automatic rollback would change nothing, so it is not tried.
    restores_commits: bool

    def bind(self, info: StackInfo) -> None:
        """Called after preflight with what the plan says about the stack."""
        ...

    def tooling(self) -> ToolingCheck: ...

    def firestore_client(self) -> Any:
        """The Firestore client holding the deploy lock and the deployment records."""
        ...

    def apply(
        self,
        stack: str,
        *,
        env: Mapping[str, str],
        dry_run: bool,
        on_output: OnOutput | None = None,
    ) -> EngineResult: ...

    def interrupt(self, *, grace: float = INTERRUPT_GRACE_S) -> bool: ...

    def verify(
        self, stack: str, *, expected: Mapping[str, str | None], on_output: OnOutput | None = None
    ) -> list[ServiceCheck]:
        """``expected``: service -> digest its latest ready revision runs (None: any)."""
        ...

    def check(
        self, stack: str, *, policy: CheckPolicy, on_output: OnOutput | None = None
    ) -> CheckResult:
        """The post-deploy synthetic batch through the real topology, judged by ``policy``."""
        ...

    def promote(
        self,
        stack: str,
        *,
        policy: RolloutPolicy,
        fence: Callable[[], None] | None = None,
        on_output: OnOutput | None = None,
    ) -> list[RolloutResult] | None:
        """Move traffic to the new revisions in ``policy``'s steps (restoring on a breach);
        ``None`` where traffic steps do not apply (the local platform)."""
        ...

    def image_exists(self, ref: str) -> bool | None:
        """Whether the registry still holds ``ref`` (repo/path@sha256:...); None: unknown."""
        ...


class CloudTarget:
    """Google Cloud: the Pulumi engine applies, Cloud Run verifies."""

    name = "cloud"
    restores_commits = True  # by the recorded digests

    def __init__(
        self,
        *,
        engine: PulumiEngine,
        inspector: RunInspector,
        firestore_factory: Any,
        services: Mapping[str, ServiceRef] | None = None,
        tooling: ToolingCheck | None = None,
        traffic: Any = None,
        metrics: Any = None,
        synthetic: Callable[..., CheckResult] | None = None,
        registry: Any = None,
    ) -> None:
        self.engine = engine
        self.inspector = inspector
        # Progressive rollout: a scripts.rollout.CloudRunTraffic and MonitoringErrorRate;
        # ``synthetic(url, policy, info, on_output)`` runs the check against a coordinator URL;
        # ``registry.digest_exists(ref)`` answers image_exists. Built by the CLI.
        self.traffic = traffic
        self.metrics = metrics
        self.synthetic = synthetic
        self.registry = registry
        self.moves: dict[str, tuple[str, str | None]] = {}  # service -> (candidate, previous)
        self.services = dict(services or {})
        self.info: StackInfo | None = None
        self._firestore_factory = firestore_factory
        self._tooling = tooling

    def bind(self, info: StackInfo) -> None:
        self.info = info
        self.services = info.refs()

    def tooling(self) -> ToolingCheck:
        return self._tooling or SystemTooling()

    def firestore_client(self) -> Any:
        """``firestore_factory(info)``: the lock's database (see the bootstrap program)."""
        return self._firestore_factory(self.info)

    def apply(self, stack, *, env, dry_run, on_output=None):
        if dry_run:
            return self.engine.preview(stack, env=env, on_output=on_output)
        return self.engine.up(stack, env=env, on_output=on_output)

    def interrupt(self, *, grace: float = INTERRUPT_GRACE_S) -> bool:
        return self.engine.interrupt(grace=grace)

    def verify(self, stack, *, expected, on_output=None):
        refs = {self.services[s]: digest for s, digest in expected.items() if s in self.services}
        # Before the rollout the new revision serves 0% (traffic is pinned to the previous
        # one): ready and running the expected digest is what verify can ask here.
        return verify_services(self.inspector, refs, require_traffic=self.traffic is None)

    def _stage(self, on_output) -> None:
        """Tag each service's new revision `candidate` at 0%, the previous one keeping 100%."""
        self.moves = {}
        for name, ref in sorted(self.services.items()):
            state = self.traffic.state(ref.resource)
            candidate, previous = state.latest_ready, state.serving
            if candidate is None:
                continue
            if previous and previous != candidate:
                self.traffic.split(ref.resource, {previous: 100}, tag=(CANDIDATE_TAG, candidate))
                if on_output:
                    on_output(f"{name}: {candidate} tagged {CANDIDATE_TAG} at 0%")
            self.moves[name] = (candidate, previous if previous != candidate else None)

    def check(self, stack, *, policy, on_output=None):
        if self.synthetic is None or self.info is None or not self.info.coordinator:
            return CheckResult(
                ok=False,
                batch_id=None,
                state="not-run",
                items=policy.items,
                predicted=0,
                failed=0,
                dead_lettered=0,
                elapsed_s=0.0,
                problems=("no post-deploy check for this target: no coordinator or runner",),
            )
        if self.traffic is not None:
            self._stage(on_output)
        coordinator = self.info.coordinator
        url = None
        if self.traffic is not None and self.moves.get(coordinator, (None, None))[1]:
            url = self.traffic.state(self.services[coordinator].resource).tag_urls.get(
                CANDIDATE_TAG
            )
        if url is None:
            url = self.inspector.describe(self.services[coordinator]).uri
        return self.synthetic(url, policy, self.info, on_output)

    def promote(self, stack, *, policy, fence=None, on_output=None):
        if self.traffic is None or self.metrics is None:
            return None
        results = []
        for name, (candidate, previous) in sorted(self.moves.items()):
            results.append(
                progressive_rollout(
                    service=name,
                    resource=self.services[name].resource,
                    candidate=candidate,
                    previous=previous,
                    traffic=self.traffic,
                    metrics=self.metrics,
                    policy=policy if previous else RolloutPolicy(steps=(100,), hold=policy.hold),
                    check=fence,
                    on_output=on_output,
                )
            )
            if not results[-1].ok:
                break
        return results

    def image_exists(self, ref):
        if self.registry is None:
            return None
        return self.registry.digest_exists(ref)


class LocalPlatform(Protocol):
    """What ``deploy --stack local`` needs from the local platform (``platform local``).

    The local platform implements this; :class:`LocalTarget` adapts it to the pipeline.
    Every method must be safe to call from the pipeline's main thread; :meth:`interrupt` is
    called from another thread (the lock's heartbeat) or a signal handler and must return
    promptly.
    """

    def ensure_running(self) -> None:
        """Start the emulators (Firestore, Pub/Sub) if they are not running (idempotent)."""
        ...

    def firestore_client(self, database: str | None = None) -> Any:
        """An official Firestore client on the local Firestore emulator (``database``: the
        platform's ``(default)`` unless named; the pipeline names the lock's)."""
        ...

    def apply(
        self,
        stack: str,
        *,
        env: Mapping[str, str],
        dry_run: bool,
        on_output: OnOutput | None = None,
        code_root: Path | None = None,
    ) -> Mapping[str, int]:
        """Apply the stack's plan to the emulators and (re)start the services with ``env``
        added (``PLATFORM_GIT_COMMIT``, ``PLATFORM_LOCK_TOKEN``); idempotent. With ``dry_run``
        change nothing and report what would change. Returns op counts
        (``{"create": n, "update": n, "delete": n, "same": n}``); raises on failure."""
        ...

    def stop_apply(self) -> None:
        """Abort an apply in progress (the lease was lost, or SIGINT/SIGTERM)."""
        ...

    def run_synthetic_batch(
        self, *, items: int, timeout: float, on_output: OnOutput | None = None
    ) -> Mapping[str, Any]:
        """Publish a batch of ``items`` through the coordinator's ``/start`` and wait for it to
        complete. Returns ``{"ok": bool, "completed": n, "failed": n, "dead_lettered": n,
        "elapsed_s": float, "detail": str}``."""
        ...


#: How long the first read of the lock's database on the local emulator may take.
WARM_UP_S = 60.0


class LocalTarget:
    """The local platform as a deploy target."""

    name = "local"
    #: Items in the verification batch: enough to exercise fan-out, quick on two cores.
    SYNTHETIC_ITEMS = 20
    SYNTHETIC_TIMEOUT_S = 120.0

    def __init__(
        self, platform: LocalPlatform, *, releases: Callable[[str], Path] | None = None
    ) -> None:
        self.platform = platform
        # commit -> the unpacked tree the services run from (scripts.deploy._releases); None:
        # the work tree (`deploy --allow-dirty`, and callers that want it).
        self.releases = releases

    @property
    def restores_commits(self) -> bool:
        """Whether redeploying a commit serves that commit's code (an automatic rollback needs
        it): only when the services run from release trees, not from the work tree."""
        return self.releases is not None

    def bind(self, info: StackInfo) -> None:
        pass

    def tooling(self) -> ToolingCheck:
        class _Emulators:
            def __init__(self, platform: LocalPlatform) -> None:
                self._platform = platform

            def missing(self):
                from scripts.emulators import EmulatorUnavailable

                from ._errors import MissingTool

                try:
                    self._platform.ensure_running()
                except EmulatorUnavailable as exc:
                    return [MissingTool("emulators", str(exc))]
                return []

        return _Emulators(self.platform)

    def firestore_client(self) -> Any:
        # The lock and the deployment records: the same database `deploy-lock` uses by default.
        from scripts.deploylock import DEFAULT_COLLECTION, DEFAULT_DATABASE

        client = self.platform.firestore_client(DEFAULT_DATABASE)
        # The emulator's first request on this named database took 6 s on a loaded machine
        # (measured; the next ones 0.2 s): the whole retry budget of the lock's calls, whose
        # acquire then failed with 504 Deadline Exceeded. One read with time to spare goes first.
        with contextlib.suppress(Exception):  # the lock reports a real outage itself
            client.collection(DEFAULT_COLLECTION).document("local").get(timeout=WARM_UP_S)
        return client

    def apply(self, stack, *, env, dry_run, on_output=None):
        from ._pulumi import ENV_COMMIT

        kwargs: dict[str, Any] = {}
        commit = env.get(ENV_COMMIT)
        if self.releases is not None and commit and not dry_run:
            kwargs["code_root"] = self.releases(commit)
        counts = self.platform.apply(stack, env=env, dry_run=dry_run, on_output=on_output, **kwargs)
        return EngineResult(summary={k: int(v) for k, v in counts.items()})

    def interrupt(self, *, grace: float = INTERRUPT_GRACE_S) -> bool:
        self.platform.stop_apply()
        return True

    def verify(self, stack, *, expected, on_output=None):
        # No digests locally (the services run from source); the check proves they work.
        return []

    def check(self, stack, *, policy, on_output=None):
        outcome = self.platform.run_synthetic_batch(
            items=policy.items, timeout=policy.timeout.total_seconds(), on_output=on_output
        )
        status = dict(outcome.get("status") or {}) or {
            "state": outcome.get("state"),
            "completed": outcome.get("completed"),
            "failed": outcome.get("failed"),
        }
        return judge_check(
            policy,
            batch_id=outcome.get("batch_id"),
            status=status,
            dead_lettered=int(outcome.get("dead_lettered") or 0),
            elapsed_s=float(outcome.get("elapsed_s") or 0.0),
            target="local",
        )

    def promote(self, stack, *, policy, fence=None, on_output=None):
        return None  # one instance per service: no traffic to split

    def image_exists(self, ref):
        return None
