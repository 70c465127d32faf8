"""The deploy pipeline's records and ports: its step names, what a run is asked to do
(:class:`DeployRequest`), what it is given (the :class:`Preflight`, the deploy lock as a
:class:`Locker`, a :class:`Reporter`), what it reports back (:class:`DeployOutcome`, one
:class:`StepRecord` a step), and :class:`Run`, the state one run keeps as its steps report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scripts.cli_common import ExitCode
from scripts.rollout import CheckResult

from ._cloudrun import ServiceCheck
from ._history import Deployment
from ._pulumi import INTERRUPT_GRACE_S
from ._stackinfo import StackInfo

__all__ = [
    "STEPS",
    "BUILDERS",
    "DeployRequest",
    "PreflightResult",
    "Preflight",
    "Locker",
    "Reporter",
    "StepRecord",
    "DeployOutcome",
    "Run",
    "summary_text",
]

STEPS = (
    "preflight",
    "tooling",
    "lock",
    "build",
    "apply",
    "verify",
    "check",
    "rollout",
    "record",
    "release",
)
BUILDERS = ("local", "cloudbuild")


@dataclass(frozen=True)
class DeployRequest:
    stack: str
    dry_run: bool = False
    builder: str = "local"
    allow_dirty: bool = False
    rollback_to: Deployment | None = None  # redeploy this record's digests and commit label
    interrupt_grace: float = INTERRUPT_GRACE_S


@dataclass
class PreflightResult:
    errors: list[str]
    info: StackInfo | None = None
    warnings: list[str] = field(default_factory=list)
    plan: Any = None


class Preflight(Protocol):
    def __call__(self, stack: str) -> PreflightResult: ...


class Locker(Protocol):
    """The deploy lock as the pipeline uses it (adapted from ``scripts.deploylock``)."""

    def holder(self) -> Mapping[str, Any]:
        """This process's holder metadata: ``who``, ``host``, ``ci_run_url``..."""
        ...

    def acquire(self, client: Any, stack: str, *, reason: str) -> Any:
        """Take the lock or raise ``LockHeld`` (its message names the holder)."""
        ...

    def token(self, lease: Any) -> int: ...

    def heartbeat(self, lease: Any, on_lost: Callable[[str], None]) -> Callable[[], None]:
        """Start renewing; ``on_lost(why)`` runs once if the lease is lost. Returns stop()."""
        ...

    def verify(self, lease: Any) -> None:
        """Re-check the lease with a read before a step that changes the world; raise
        ``LeaseLost`` (saying "superseded") if it is no longer this run's."""
        ...

    def release(self, lease: Any) -> bool: ...


class Reporter(Protocol):
    def step(self, name: str, status: str, detail: str = "") -> None:
        """``status``: running | ok | failed | skipped."""
        ...

    def output(self, line: str) -> None: ...


@dataclass
class StepRecord:
    name: str
    status: str
    detail: str = ""


@dataclass
class DeployOutcome:
    stack: str
    exit_code: ExitCode = ExitCode.ERROR
    steps: list[StepRecord] = field(default_factory=list)
    deployment: Deployment | None = None
    error: str | None = None
    summary: dict[str, int] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    checks: list[ServiceCheck] = field(default_factory=list)
    dry_run: bool = False
    check: CheckResult | None = None
    rollout: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rolled_back_to: str | None = None  # the good deployment an automatic rollback restored
    rollback_record: Deployment | None = None

    def to_dict(self) -> dict[str, Any]:
        dep = self.deployment
        return {
            "stack": self.stack,
            "exit_code": int(self.exit_code),
            "dry_run": self.dry_run,
            "ok": self.exit_code in (ExitCode.OK, ExitCode.CHANGES),
            "error": self.error,
            "steps": [s.__dict__ for s in self.steps],
            "summary": self.summary,
            "images": self.images,
            "verification": [c.to_dict() for c in self.checks],
            "check": self.check.to_dict() if self.check else None,
            "rollout": self.rollout,
            "warnings": self.warnings,
            "rolled_back_to": self.rolled_back_to,
            "rollback": self.rollback_record.to_doc() if self.rollback_record else None,
            "deployment": dep.to_doc() if dep else None,
        }


class Run:
    """State of one pipeline run; the steps are its methods."""

    def __init__(self, request: DeployRequest, reporter: Reporter) -> None:
        self.request = request
        self.reporter = reporter
        self.outcome = DeployOutcome(request.stack, dry_run=request.dry_run)

    def step(self, name: str, status: str, detail: str = "") -> None:
        if status != "running":
            self.outcome.steps.append(StepRecord(name, status, detail))
        self.reporter.step(name, status, detail)

    def skip_between(self, after: str, before: str, reason: str) -> None:
        for name in STEPS[STEPS.index(after) + 1 : STEPS.index(before)]:
            if not any(s.name == name for s in self.outcome.steps):
                self.step(name, "skipped", reason)

    def skip_rest(self, after: str, reason: str) -> None:
        for name in STEPS[STEPS.index(after) + 1 :]:
            if not any(s.name == name for s in self.outcome.steps):
                self.step(name, "skipped", reason)


def summary_text(summary: Mapping[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(summary.items())) or "no changes"
