"""The Pulumi adapter: ``up``/``preview`` of a stack through the Automation API, interruptible.

Thin over ``pulumi.automation`` (``LocalWorkspace`` + ``select_stack`` on the project's
``Pulumi.yaml``): streaming output through a callback, the deploy's inputs passed through the
environment the program reads (``PLATFORM_GIT_COMMIT``, ``PLATFORM_LOCK_TOKEN``,
``PLATFORM_IMAGE_OVERRIDES``; never stack config, which would rewrite ``Pulumi.<stack>.yaml``),
per-resource changes collected from the engine's event stream, and :meth:`interrupt` that sends
the running ``pulumi`` process SIGINT, waits a grace period, then kills it (the lease was lost:
stop writing now).

The orchestration talks to :class:`PulumiEngine`; the pipeline tests use a double of it, and
``tests/deploy/test_adapters.py`` runs this adapter through the Automation API against a
stand-in ``pulumi`` that behaves as Pulumi documents (engine events, exit codes, stderr).
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ._errors import DeployError
from ._tooling import missing_pulumi

__all__ = [
    "ENV_COMMIT",
    "ENV_LOCK_TOKEN",
    "ENV_IMAGE_OVERRIDES",
    "INTERRUPT_GRACE_S",
    "ResourceChange",
    "EngineResult",
    "PulumiEngine",
    "AutomationPulumi",
    "OnOutput",
    "POLICY_PACK_DIR",
    "deploy_engine",
]

#: The environment the program reads (infra/): the deployed commit label, the lock's fencing
#: token label, and per-service image digests replacing the build (remote builds, rollback).
ENV_COMMIT = "PLATFORM_GIT_COMMIT"
ENV_LOCK_TOKEN = "PLATFORM_LOCK_TOKEN"
ENV_IMAGE_OVERRIDES = "PLATFORM_IMAGE_OVERRIDES"
#: The policy pack (policy/PulumiPolicy.yaml), relative to the repository root.
POLICY_PACK_DIR = "policy"
#: SIGINT lets ``pulumi`` finish in-flight resource operations and write its checkpoint; after
#: this long it is killed (the stack may then need ``pulumi refresh`` / ``pulumi cancel``).
INTERRUPT_GRACE_S = 30.0

OnOutput = Callable[[str], None]

#: Step ops that are not a change to the stack.
_NO_CHANGE_OPS = frozenset({"same", "read", "refresh", "discard", "discard-replaced"})


@dataclass(frozen=True)
class ResourceChange:
    """One resource the engine would change (or did), with the properties that differ."""

    urn: str
    type: str
    op: str
    diffs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclass
class EngineResult:
    """What an ``up`` or ``preview`` did: op counts (Pulumi's summary) and the changes."""

    summary: dict[str, int] = field(default_factory=dict)
    changes: list[ResourceChange] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(n for op, n in self.summary.items() if op not in _NO_CHANGE_OPS) or bool(
            self.changes
        )


class PulumiEngine(Protocol):
    """What the pipeline and drift need from Pulumi."""

    def preview(
        self,
        stack: str,
        *,
        env: Mapping[str, str],
        on_output: OnOutput | None = None,
        refresh: bool = False,
        expect_no_changes: bool = False,
    ) -> EngineResult:
        """A dry run. With ``expect_no_changes`` a diff is returned as changes, not raised."""
        ...

    def up(
        self, stack: str, *, env: Mapping[str, str], on_output: OnOutput | None = None
    ) -> EngineResult:
        """Apply the program. Raises :class:`DeployError` on failure."""
        ...

    def interrupt(self, *, grace: float = INTERRUPT_GRACE_S) -> bool:
        """Stop a running ``up``: SIGINT, ``grace`` seconds, then SIGKILL. True if one ran."""
        ...


#: Set in the environment of every ``pulumi`` process one :class:`AutomationPulumi` starts, so
#: :meth:`AutomationPulumi.interrupt` finds exactly its own (the Automation API's
#: ``PulumiCommand`` keeps its ``Popen`` to itself, and copying its private runner to reach
#: the process is what this replaces).
ENGINE_RUN_ENV = "DEPLOY_ENGINE_RUN"

#: Pulumi's documented exit codes (CLI 3.226.1 and later): what each failing one means.
#: https://www.pulumi.com/docs/iac/cli/exit-codes/
EXIT_CODE_MEANING = {
    1: "generic error",
    2: "configuration or validation error (arguments, config, schema)",
    3: "authentication or authorization error (login, credentials, access)",
    4: "resource or deployment error (a resource operation failed)",
}
_EXIT_CODE_RE = re.compile(r"\bcode: (-?\d+)")


def _exit_code(exc: BaseException) -> int | None:
    """The CLI's exit code in an Automation API ``CommandError`` (its text carries it)."""
    m = _EXIT_CODE_RE.search(str(exc))
    return int(m[1]) if m else None


def _failed(what: str, exc: BaseException) -> DeployError:
    code = _exit_code(exc)
    meaning = f" (exit {code}: {EXIT_CODE_MEANING[code]})" if code in EXIT_CODE_MEANING else ""
    return DeployError(f"{what}{meaning}: {exc}")


def _running(proc: Any) -> bool:
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _own_processes(marker: str) -> list[Any]:
    """This process's ``pulumi`` children started with ``marker`` (psutil processes)."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=False):
        try:
            if child.environ().get(ENGINE_RUN_ENV) == marker:
                found.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


class AutomationPulumi:
    """The real engine: the ``pulumi`` CLI driven by the Automation API from ``work_dir``.

    ``policy_packs``: directories of policy packs (``PulumiPolicy.yaml``) the engine runs on
    every ``up`` and ``preview`` (``--policy-pack``): the preflight rules as CrossGuard, so a
    mandatory violation stops the real engine too, with the values only it knows.
    """

    def __init__(
        self,
        work_dir: Path | str,
        *,
        pulumi_home: str | None = None,
        policy_packs: Sequence[Path | str] = (),
    ) -> None:
        self.work_dir = str(work_dir)
        self.pulumi_home = pulumi_home
        self.policy_packs = [str(Path(p).resolve()) for p in policy_packs]
        self._command: Any = None
        self._marker = uuid.uuid4().hex

    def _stack(self, stack: str, env: Mapping[str, str]):
        from pulumi import automation as auto

        try:
            if self._command is None:
                # Pulumi's own runner (public API); it checks the CLI's version once.
                self._command = auto.PulumiCommand()
            opts = auto.LocalWorkspaceOptions(
                work_dir=self.work_dir,
                pulumi_home=self.pulumi_home,
                env_vars={**env, ENGINE_RUN_ENV: self._marker},
                pulumi_command=self._command,
            )
            return auto.select_stack(stack_name=stack, work_dir=self.work_dir, opts=opts)
        except FileNotFoundError as exc:
            raise missing_pulumi(exc) from None
        except auto.errors.StackNotFoundError:
            raise DeployError(
                f"stack '{stack}' does not exist in the Pulumi backend of {self.work_dir}/"
                f"Pulumi.yaml; create it once with `pulumi stack init {stack}`"
            ) from None
        except auto.errors.CommandError as exc:
            raise _failed(f"pulumi could not select stack '{stack}'", exc) from None

    def _run(
        self,
        operation: Callable[..., Any],
        changes: list[ResourceChange],
        on_output: OnOutput | None,
        **options: Any,
    ) -> Any:
        """``operation`` (a stack's ``preview`` or ``up``) with the project's policy packs and
        plain output, each resource it would change appended to ``changes`` as it goes (so a
        failed run still says what it found)."""

        def on_event(event: Any) -> None:
            pre = getattr(event, "resource_pre_event", None)
            if pre is None or pre.metadata is None:
                return
            md = pre.metadata
            op = getattr(md.op, "value", str(md.op))
            if op in _NO_CHANGE_OPS:
                return
            changes.append(ResourceChange(md.urn, md.type, op, tuple(md.diffs or ())))

        try:
            return operation(
                on_output=on_output,
                on_event=on_event,
                policy_packs=self.policy_packs or None,
                color="never",
                **options,
            )
        except FileNotFoundError as exc:
            raise missing_pulumi(exc) from None

    @staticmethod
    def _summary(op_map: Mapping[Any, int] | None) -> dict[str, int]:
        return {getattr(k, "value", str(k)): int(v) for k, v in (op_map or {}).items()}

    def preview(self, stack, *, env, on_output=None, refresh=False, expect_no_changes=False):
        from pulumi import automation as auto

        st = self._stack(stack, env)
        changes: list[ResourceChange] = []
        try:
            res = self._run(
                st.preview,
                changes,
                on_output,
                refresh=refresh or None,
                expect_no_changes=expect_no_changes or None,
            )
        except auto.errors.CommandError as exc:
            if expect_no_changes and changes:
                # "no changes were expected but changes were proposed": the changes are drift.
                return EngineResult(summary=_count(changes), changes=changes)
            raise _failed(f"pulumi preview failed for stack '{stack}'", exc) from None
        return EngineResult(summary=self._summary(res.change_summary), changes=changes)

    def up(self, stack, *, env, on_output=None):
        from pulumi import automation as auto

        st = self._stack(stack, env)
        changes: list[ResourceChange] = []
        try:
            res = self._run(st.up, changes, on_output)
        except auto.errors.ConcurrentUpdateError as exc:
            raise DeployError(
                f"the Pulumi backend reports another update on '{stack}' (or a stale one after a "
                f"crash): see docs/runbooks.md 'Recover an interrupted deploy'. {exc}"
            ) from None
        except auto.errors.CommandError as exc:
            raise _failed(f"pulumi up failed for stack '{stack}'", exc) from None
        outputs = {k: v.value for k, v in (res.outputs or {}).items()}
        return EngineResult(
            summary=self._summary(res.summary.resource_changes), changes=changes, outputs=outputs
        )

    def interrupt(self, *, grace: float = INTERRUPT_GRACE_S) -> bool:
        """SIGINT to this engine's running ``pulumi`` (it finishes in-flight operations and
        writes its checkpoint), ``grace`` seconds, then SIGKILL to it and its plugins."""
        import psutil

        procs = _own_processes(self._marker)
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGINT)
        # Never psutil.wait(): that would reap the child, and the Automation API's Popen would
        # then read exit status 0 (ECHILD) for an update that was cancelled. Watch instead
        # until each has exited (a zombie, left for Popen to reap) or the grace is over.
        deadline = time.monotonic() + grace
        alive = procs
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [p for p in alive if _running(p)]
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                tree = [*proc.children(recursive=True), proc]
                for p in tree:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
        return bool(procs)


def deploy_engine(root: Path | str) -> AutomationPulumi:
    """The engine ``deploy`` runs: the checkout's program, with its policy pack enforced."""
    return AutomationPulumi(root, policy_packs=[Path(root) / POLICY_PACK_DIR])


def _count(changes: list[ResourceChange]) -> dict[str, int]:
    summary: dict[str, int] = {}
    for c in changes:
        summary[c.op] = summary.get(c.op, 0) + 1
    return summary
