"""Where a deploy applies: Google Cloud (Pulumi + Cloud Run) or the local platform.

The pipeline (lock, build, record, release) is the same for both; a :class:`Target` supplies
the three steps that differ: the tooling it needs, the apply (``pulumi up``/``preview``, or the
emulators), and the verification (Cloud Run revisions and digests, or a synthetic batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ._cloudrun import RunInspector, ServiceCheck, ServiceRef, verify_services
from ._pulumi import INTERRUPT_GRACE_S, EngineResult, OnOutput, PulumiEngine
from ._stackinfo import StackInfo
from ._tooling import SystemTooling, ToolingCheck

__all__ = ["Target", "CloudTarget", "LocalPlatform", "LocalTarget"]


class Target(Protocol):
    name: str

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
        """``expected``: service -> digest it must serve (None: any)."""
        ...


class CloudTarget:
    """Google Cloud: the Pulumi engine applies, Cloud Run verifies."""

    name = "cloud"

    def __init__(
        self,
        *,
        engine: PulumiEngine,
        inspector: RunInspector,
        firestore_factory: Any,
        services: Mapping[str, ServiceRef] | None = None,
        tooling: ToolingCheck | None = None,
    ) -> None:
        self.engine = engine
        self.inspector = inspector
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
        return verify_services(self.inspector, refs)


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


class LocalTarget:
    """The local platform as a deploy target."""

    name = "local"
    #: Items in the verification batch: enough to exercise fan-out, quick on two cores.
    SYNTHETIC_ITEMS = 20
    SYNTHETIC_TIMEOUT_S = 120.0

    def __init__(self, platform: LocalPlatform) -> None:
        self.platform = platform

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
        from scripts.deploylock import DEFAULT_DATABASE

        return self.platform.firestore_client(DEFAULT_DATABASE)

    def apply(self, stack, *, env, dry_run, on_output=None):
        counts = self.platform.apply(stack, env=env, dry_run=dry_run, on_output=on_output)
        return EngineResult(summary={k: int(v) for k, v in counts.items()})

    def interrupt(self, *, grace: float = INTERRUPT_GRACE_S) -> bool:
        self.platform.stop_apply()
        return True

    def verify(self, stack, *, expected, on_output=None):
        outcome = self.platform.run_synthetic_batch(
            items=self.SYNTHETIC_ITEMS, timeout=self.SYNTHETIC_TIMEOUT_S, on_output=on_output
        )
        ok = bool(outcome.get("ok"))
        detail = str(outcome.get("detail", ""))
        return [
            ServiceCheck(
                "synthetic-batch",
                ok,
                None,
                None,
                () if ok else (detail or f"synthetic batch did not complete: {dict(outcome)}",),
            )
        ]
