"""Test doubles of exactly the pipeline's four adapters: Pulumi, Cloud Build/Artifact Registry,
Cloud Run, and the tooling check. Everything else in the deploy tests is real (git, the
Firestore emulator, the deploy lock, the content hash)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from scripts.deploy import (
    DeployError,
    EngineResult,
    ImageTarget,
    MissingTool,
    ResourceChange,
    ServiceRef,
    ServiceState,
)


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


@dataclass
class FakeBuilder:
    """Artifact Registry holding ``existing`` tags; ``build`` returns a digest per service."""

    existing: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> digest
    built: list[ImageTarget] = field(default_factory=list)
    looked_up: list[str] = field(default_factory=list)

    def existing_digest(self, target: ImageTarget) -> str | None:
        self.looked_up.append(target.tagged)
        return self.existing.get(target.tagged)

    def build(self, target: ImageTarget, *, on_output=None) -> str:
        self.built.append(target)
        digest = "sha256:" + (f"{len(self.built):x}" * 64)[:64]
        self.existing[target.tagged] = digest
        return digest


@dataclass
class FakeInspector:
    """Cloud Run as a dict: service name -> state."""

    states: dict[str, ServiceState] = field(default_factory=dict)
    described: list[str] = field(default_factory=list)

    def describe(self, ref: ServiceRef) -> ServiceState:
        self.described.append(ref.name)
        return self.states.get(ref.name, ServiceState(exists=False))

    def serve(self, name: str, digest: str, *, commit: str | None = None, percent: int = 100):
        labels = {"git-commit": commit} if commit else {}
        self.states[name] = ServiceState(
            exists=True,
            latest_ready_revision=f"{name}-00002-abc",
            latest_created_revision=f"{name}-00002-abc",
            latest_percent=percent,
            image=f"us-west2-docker.pkg.dev/p/platform/{name}@{digest}",
            image_digest=digest,
            labels=labels,
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
