"""The deploy pipeline: one locked, recorded, verified deploy.

Steps, in order (each reported to a :class:`Reporter`):

1. **preflight**: config validation, image checks, policy rules; a dirty work tree is refused
   here too (unless ``allow_dirty``). Any error stops before the lock is taken.
2. **tooling**: the target's prerequisites (``pulumi`` CLI, GCP credentials), with the fix.
3. **lock**: the deploy lock with holder metadata, kept alive by its heartbeat; a lost lease
   interrupts the apply (SIGINT, grace period, kill).
4. **build**: ``local`` lets the program build; ``cloudbuild`` builds missing tags remotely and
   hands digests to the program (as rollback does with a recorded deployment's digests).
5. **apply**: ``pulumi up`` (``preview`` for a dry run) with the commit, fencing token and image
   overrides in the environment the program reads.
6. **verify**: each service's latest ready revision runs the expected digest.
7. **check**: a small synthetic batch through the real topology must complete within the
   bound with a minimum share of items *predicted* and no dead letters (``deploy.check``).
8. **rollout**: cloud: traffic moves to the new revisions in ``deploy.rollout``'s steps while
   their 5xx share stays under the threshold, and returns on a breach; local: not applicable.
   A failed verify, check or rollout triggers the **automatic rollback**: the last succeeded
   deployment's digests and commit, redeployed under the same lock and recorded as its own
   ``rollback`` (refused when its digest is gone from the registry).
9. **record**: the deployment record is created when the lock is held and finished with the
   result, the Pulumi summary, the digests, the check and rollout figures and the lock token.
10. **release**: always; on success, failure, SIGINT and SIGTERM.

Each deploy is announced to the notifier's channels: ``started`` once the lock is held and the
record exists, then ``succeeded``, or ``failed`` (followed by ``rolled_back`` when the
automatic rollback restored the last good release). An undelivered notification is a
warning, never a failure.

A dry run takes no lock and writes no record: a preview changes nothing.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from scripts.cli_common import ExitCode
from scripts.notify import DeployEvent, EventKind
from scripts.rollout import CheckPolicy, CheckResult, RolloutPolicy

from ._cloudbuild import ImageBuilder, ensure_images
from ._cloudrun import ServiceCheck
from ._errors import (
    AdoptionNeeded,
    CheckFailed,
    DeployError,
    DirtyTree,
    Interrupted,
    LeaseLost,
    PreflightFailed,
    RollbackRefused,
    RolloutFailed,
    ToolingMissing,
    VerificationFailed,
)
from ._git import GitRepo
from ._history import Deployment, DeploymentHistory, Result, last_good, new_deployment_id
from ._pulumi import (
    ENV_COMMIT,
    ENV_IMAGE_OVERRIDES,
    ENV_LOCK_TOKEN,
    INTERRUPT_GRACE_S,
    EngineResult,
)
from ._stackinfo import StackInfo
from ._targets import Target

__all__ = [
    "STEPS",
    "BUILDERS",
    "INTERRUPTED_INSTRUCTIONS",
    "DeployRequest",
    "PreflightResult",
    "Preflight",
    "Locker",
    "Reporter",
    "StepRecord",
    "DeployOutcome",
    "default_image_tags",
    "run_deploy",
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
INTERRUPTED_INSTRUCTIONS = (
    "the apply was interrupted: run `pulumi refresh --stack {stack}` to reconcile the state "
    "with what exists, and `pulumi cancel --stack {stack}` if Pulumi still reports an update "
    "in progress; then deploy again (docs/runbooks.md, 'Recover an interrupted deploy')"
)


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


class _Run:
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


@contextmanager
def _signals_raise(on_signal: Callable[[int], None]) -> Iterator[None]:
    """SIGINT/SIGTERM raise :class:`Interrupted` once (after ``on_signal``); later ones are
    ignored so the cleanup (record, release) runs to the end. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            return
        fired.append(signum)
        on_signal(signum)
        raise Interrupted(f"received {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _expected_digests(
    overrides: Mapping[str, str], result: EngineResult, services: Mapping[str, Any]
) -> dict[str, str | None]:
    """service -> digest it must serve: the override's, else the program's output, else any."""
    from_outputs = result.outputs.get("image_refs") or result.outputs.get("images") or {}
    expected: dict[str, str | None] = {}
    for name in services:
        ref = overrides.get(name) or (
            from_outputs.get(name) if isinstance(from_outputs, dict) else None
        )
        expected[name] = ref.rpartition("@")[2] if isinstance(ref, str) and "@" in ref else None
    return expected


def _uncommitted_build_inputs(repo: GitRepo) -> list[str]:
    """What would make the commit label lie: tracked changes, and untracked files that the
    image builds would send (the repo-root context after ``.dockerignore``). Untracked files
    no image sees (``.tools/``, ``.local/``, an editor's scratch file) are not the deploy's
    business."""
    from infra.build_context import ContextSnapshot

    dirty = repo.dirty_paths()
    untracked = repo.untracked_paths()
    if untracked:
        in_context = ContextSnapshot(repo.root.resolve()).files
        dirty += [p for p in untracked if p in in_context]
    return dirty


ADOPT_HINT = (
    "adopt them first: `platform adopt --stack {stack} --out adopt-{stack}.json`, then "
    "`pulumi import --file adopt-{stack}.json` (docs/runbooks.md, 'Adopting the "
    "hand-deployed production')"
)


def _refuse_existing(stack, adoption, target, env, reporter, plan) -> None:
    """Preview, and refuse when a create is of a resource that exists already: ``up`` would
    stop halfway with "already exists". ``adoption(changes, plan)`` names those."""
    preview = target.apply(stack, env=env, dry_run=True, on_output=reporter.output)
    existing = adoption(preview.changes, plan)
    if existing:
        raise AdoptionNeeded(
            f"the preview of '{stack}' would create {len(existing)} resource(s) that exist "
            f"already ({'; '.join(existing)}); " + ADOPT_HINT.format(stack=stack)
        )


def run_deploy(
    request: DeployRequest,
    *,
    target: Target,
    preflight: Preflight,
    locker: Locker,
    repo: GitRepo,
    reporter: Reporter,
    builder: ImageBuilder | None = None,
    image_tags: Callable[[str], str] | None = None,
    confirm: Callable[[str], bool] | None = None,
    notifier: Any = None,
    adoption: Callable[[Sequence[Any], Any], list[str]] | None = None,
    notifier_for: Callable[[StackInfo], tuple[Any, list[str]]] | None = None,
) -> DeployOutcome:
    """Run the pipeline; never raises for an expected failure: see ``outcome.exit_code``.

    ``confirm(question)`` is asked once, after the tooling check and before the lock, for a
    real (not dry) run; a False answer stops with exit 1 and nothing changed.
    ``notifier`` (``send(DeployEvent) -> warnings``), or ``notifier_for(info)`` -> (notifier,
    setup warnings) when where to announce depends on the stack config (its webhook secret):
    called once the lock is held, never on a dry run.
    """
    run = _Run(request, reporter)
    out = run.outcome
    stack = request.stack
    if request.builder not in BUILDERS:
        raise ValueError(f"builder must be one of {', '.join(BUILDERS)}, not {request.builder!r}")

    # 1. preflight
    run.step("preflight", "running")
    try:
        pf = preflight(stack)
        if pf.errors:
            raise PreflightFailed(pf.errors)
        if pf.info is None:
            raise DeployError(f"preflight of '{stack}' returned no stack information")
        info = pf.info
        if request.rollback_to is not None:
            gone = sorted(set(request.rollback_to.images) - set(info.services))
            if gone:
                raise RollbackRefused(
                    f"deployment {request.rollback_to.id} deployed service(s) that no longer "
                    f"exist in stack '{stack}': {', '.join(gone)}; roll back to a later "
                    "deployment, or restore them in the stack config first"
                )
        if not request.dry_run and not request.allow_dirty:
            dirty = _uncommitted_build_inputs(repo)
            if dirty:
                shown = ", ".join(dirty[:10]) + (" ..." if len(dirty) > 10 else "")
                raise DirtyTree(
                    f"the work tree has uncommitted changes ({shown}): the commit label would "
                    "not describe what is deployed; commit them, or pass --allow-dirty"
                )
        commit = request.rollback_to.commit if request.rollback_to else repo.head()
    except DeployError as exc:
        out.error = str(exc)
        run.step("preflight", "failed", str(exc))
        run.skip_rest("preflight", "preflight failed")
        return out
    run.step("preflight", "ok", f"{len(info.services)} service(s), commit {commit[:12]}")
    target.bind(info)

    # 2. tooling
    run.step("tooling", "running")
    missing = target.tooling().missing()
    if missing:
        exc = ToolingMissing(missing)
        out.error = str(exc)
        run.step("tooling", "failed", str(exc))
        run.skip_rest("tooling", "tooling missing")
        return out
    run.step("tooling", "ok")

    if request.dry_run:
        return _dry_run(run, info, target, builder, commit)

    if confirm is not None:
        what = (
            f"roll back stack '{stack}' to {request.rollback_to.id}"
            if request.rollback_to
            else f"deploy stack '{stack}'"
        )
        question = (
            f"{what} at commit {commit[:12]} ({', '.join(sorted(info.services))}; "
            f"builder {request.builder})?"
        )
        if not confirm(question):
            out.error = "not confirmed: nothing was changed"
            run.step("lock", "skipped", out.error)
            run.skip_rest("lock", "not confirmed")
            return out

    # 3. lock
    run.step("lock", "running")
    try:
        client = target.firestore_client()
        holder = dict(locker.holder())
        kind = "rollback" if request.rollback_to else "deploy"
        reason = f"{kind} {stack} at {commit[:12]}"
        lease = locker.acquire(client, stack, reason=reason)
    except Exception as exc:  # LockHeld, LockUnavailable, a bad client: all stop here
        held = type(exc).__name__ == "LockHeld"
        out.error = str(exc)
        out.exit_code = ExitCode.LOCK_HELD if held else ExitCode.ERROR
        run.step("lock", "failed", str(exc))
        run.skip_rest("lock", "lock not taken")
        return out
    token = locker.token(lease)
    run.step("lock", "ok", f"fencing token {token}")

    lost = threading.Event()
    lost_why: list[str] = []

    def on_lost(why: str) -> None:
        lost_why.append(why)
        lost.set()
        target.interrupt(grace=request.interrupt_grace)

    def on_signal(signum: int) -> None:
        threading.Thread(
            target=target.interrupt, kwargs={"grace": request.interrupt_grace}, daemon=True
        ).start()

    history = DeploymentHistory(client)
    record: Deployment | None = None
    if notifier is None and notifier_for is not None:
        try:
            notifier, setup_warnings = notifier_for(info)
            out.warnings.extend(str(w) for w in setup_warnings)
        except Exception as exc:  # noqa: BLE001 - announcing never fails a deploy
            out.warnings.append(f"notifications not set up: {type(exc).__name__}: {exc}")
    announce = _Announcer(notifier, None, out)
    stop_heartbeat: Callable[[], None] | None = None
    current = "lock"
    applied = False  # pulumi up started: only then do the recovery instructions apply
    try:
        with _signals_raise(on_signal):
            try:
                stop_heartbeat = locker.heartbeat(lease, on_lost)
                current = "record"
                locker.verify(lease)  # fencing: before every step that changes the world
                record = history.start(
                    Deployment(
                        id=new_deployment_id(stack),
                        stack=stack,
                        commit=commit,
                        who=str(holder.get("who") or "?"),
                        kind=kind,
                        lock_token=token,
                        builder="digests" if request.rollback_to else request.builder,
                        ci_run_url=holder.get("ci_run_url"),
                        host=holder.get("host"),
                        rollback_of=request.rollback_to.id if request.rollback_to else None,
                    )
                )
                out.deployment = record
                announce.record = record
                announce(EventKind.STARTED)

                # 4. build
                current = "build"
                run.step("build", "running")
                locker.verify(lease)  # image push
                overrides, tags = _build(request, info, builder, image_tags, reporter)
                run.step("build", "ok", _build_detail(request, overrides))

                # 5. apply
                current = "apply"
                run.step("apply", "running")
                env = {ENV_COMMIT: commit, ENV_LOCK_TOKEN: str(token)}
                if overrides:
                    env[ENV_IMAGE_OVERRIDES] = json.dumps(overrides, sort_keys=True)
                if adoption is not None:
                    _refuse_existing(stack, adoption, target, env, reporter, pf.plan)
                locker.verify(lease)  # pulumi up (services, traffic)
                applied = True
                try:
                    result = target.apply(stack, env=env, dry_run=False, on_output=reporter.output)
                except DeployError:
                    if lost.is_set():
                        raise LeaseLost(_lost_message(stack, lost_why)) from None
                    raise
                if lost.is_set():
                    raise LeaseLost(_lost_message(stack, lost_why))
                out.summary = dict(result.summary)
                run.step("apply", "ok", _summary_text(result.summary))

                # 6. verify
                current = "verify"
                run.step("verify", "running")
                expected = _expected_digests(overrides, result, info.services)
                checks = target.verify(stack, expected=expected, on_output=reporter.output)
                out.checks = checks
                bad = [c for c in checks if not c.ok]
                if bad:
                    raise VerificationFailed(
                        "; ".join(f"{c.service}: {', '.join(c.problems)}" for c in bad)
                    )
                if lost.is_set():
                    raise LeaseLost(_lost_message(stack, lost_why))
                run.step("verify", "ok", f"{len(checks)} check(s) passed")
                out.images = _images(overrides, checks, info)

                # 7. check
                current = "check"
                run.step("check", "running")
                deploy_cfg = getattr(info, "deploy", None)
                policy = CheckPolicy.from_config(deploy_cfg.check) if deploy_cfg else CheckPolicy()
                out.check = target.check(stack, policy=policy, on_output=reporter.output)
                if not out.check.ok:
                    raise CheckFailed(f"post-deploy check failed: {out.check.detail}")
                if lost.is_set():
                    raise LeaseLost(_lost_message(stack, lost_why))
                run.step("check", "ok", out.check.detail)

                # 8. rollout
                current = "rollout"
                run.step("rollout", "running")
                steps = (
                    RolloutPolicy.from_config(deploy_cfg.rollout) if deploy_cfg else RolloutPolicy()
                )
                rollouts = target.promote(
                    stack,
                    policy=steps,
                    fence=_fence(lost, lost_why, stack, lambda: locker.verify(lease)),
                    on_output=reporter.output,
                )
                if rollouts is None:
                    run.step("rollout", "ok", "not applicable: one instance per service")
                else:
                    out.rollout = [r.to_dict() for r in rollouts]
                    broken = [r for r in rollouts if not r.ok]
                    if broken:
                        raise RolloutFailed("; ".join(str(r.error) for r in broken))
                    run.step("rollout", "ok", _rollout_text(rollouts))

                # 7. record
                current = "record"
                run.step("record", "running")
                locker.verify(lease)  # the deployment record
                out.deployment = history.finish(
                    record.id,
                    Result.SUCCEEDED,
                    images=out.images,
                    image_tags=tags,
                    summary=out.summary,
                    verification=[c.to_dict() for c in checks],
                    check=out.check.to_dict() if out.check else None,
                    rollout=out.rollout,
                    warnings=out.warnings,
                )
                run.step("record", "ok", record.id)
                out.exit_code = ExitCode.OK
                announce(EventKind.SUCCEEDED)
            except (Interrupted, LeaseLost) as exc:
                out.error = str(exc)
                out.exit_code = ExitCode.LOCK_HELD if isinstance(exc, LeaseLost) else ExitCode.ERROR
                instructions = INTERRUPTED_INSTRUCTIONS.format(stack=stack)
                applying = applied and current in ("apply", "verify")
                if applying:
                    out.error += f"; {instructions}"
                run.step(current, "failed", str(exc))
                run.skip_between(current, "record", "interrupted")
                _finish(
                    history,
                    record,
                    out,
                    Result.INTERRUPTED,
                    str(exc),
                    instructions if applying else None,
                    run,
                )
                if record is not None:
                    announce(EventKind.FAILED)
            except Exception as exc:  # noqa: BLE001 - any failure is recorded, then reported
                msg = str(exc) if isinstance(exc, DeployError) else f"{type(exc).__name__}: {exc}"
                out.error = msg
                out.exit_code = ExitCode.ERROR
                run.step(current, "failed", msg)
                run.skip_between(current, "record", f"{current} failed")
                rollback = None
                if (
                    isinstance(exc, VerificationFailed)
                    and record is not None
                    and request.rollback_to is None
                    and not lost.is_set()
                ):
                    rollback = _auto_rollback(
                        history, record, out, target, stack, token, holder, reporter,
                        verify=lambda: locker.verify(lease),
                    )  # fmt: skip
                _finish(history, record, out, Result.FAILED, msg, None, run)
                if record is not None:
                    # The release failed either way; the rollback is news of its own.
                    announce(EventKind.FAILED)
                    if rollback is not None and rollback.result == Result.SUCCEEDED:
                        announce(EventKind.ROLLED_BACK)
    finally:
        # 8. release, always
        if stop_heartbeat is not None:
            stop_heartbeat()
        try:
            still_held = locker.release(lease)
            run.step("release", "ok", "" if still_held else "the lease had already been lost")
        except Exception as exc:  # noqa: BLE001
            run.step("release", "failed", f"{type(exc).__name__}: {exc} (the lease expires)")
        run.skip_rest("release", "stopped earlier")
    return out


def _finish(history, record, out, result, error, instructions, run) -> None:
    if record is None:
        return
    if out.rolled_back_to:
        error = f"{error}; rolled back automatically to {out.rolled_back_to}"
    try:
        out.deployment = history.finish(
            record.id,
            result,
            error=error,
            instructions=instructions,
            summary=out.summary,
            verification=[c.to_dict() for c in out.checks],
            check=out.check.to_dict() if out.check else None,
            rollout=out.rollout,
            warnings=out.warnings,
            rolled_back_by=out.rollback_record.id if out.rollback_record else None,
        )
        run.step("record", "ok", f"{record.id} ({result})")
    except Exception as exc:  # noqa: BLE001
        run.step("record", "failed", f"could not record {result}: {exc}")


class _Announcer:
    """Announces the run's transitions; an undelivered one becomes a warning of the run."""

    def __init__(self, notifier: Any, record: Deployment | None, out: DeployOutcome) -> None:
        self.notifier, self.record, self.out = notifier, record, out

    def __call__(self, kind: EventKind) -> None:
        if self.notifier is None or self.record is None:
            return
        out, rec = self.out, self.record
        images = dict(out.images or rec.images or {})
        restored = out.rollback_record if kind == EventKind.ROLLED_BACK else None
        if restored is not None:
            # What serves now: the last good release, redeployed by the rollback's own record.
            rec, images = restored, dict(restored.images or {})
        event = DeployEvent(
            kind=kind,
            stack=rec.stack,
            commit=rec.commit,
            who=rec.who,
            deployment_id=rec.id,
            lock_token=rec.lock_token,
            images=images,
            check=out.check.to_dict() if out.check else None,
            error=out.error if kind in (EventKind.FAILED, EventKind.ROLLED_BACK) else None,
            ci_run_url=rec.ci_run_url,
            rollback_of=out.rolled_back_to if kind == EventKind.ROLLED_BACK else None,
        )
        try:
            warnings = self.notifier.send(event)
        except Exception as exc:  # noqa: BLE001 - a notification never fails a deploy
            warnings = [f"notification {kind} failed: {type(exc).__name__}"]
        out.warnings.extend(str(w) for w in warnings)


def _fence(
    lost: threading.Event, why: list[str], stack: str, verify: Callable[[], None]
) -> Callable[[], None]:
    """Raises LeaseLost once the heartbeat has lost the lease, or ``verify`` (a read) finds it
    superseded (before each traffic change)."""

    def check() -> None:
        if lost.is_set():
            raise LeaseLost(_lost_message(stack, why))
        verify()

    return check


def _rollout_text(results: list[Any]) -> str:
    if not results:
        return "no revision to move"
    return ", ".join(
        f"{r.service} -> {r.candidate} ({'/'.join(str(s.percent) for s in r.steps)}%)"
        for r in results
    )


def _auto_rollback(
    history: DeploymentHistory,
    failed: Deployment,
    out: DeployOutcome,
    target: Target,
    stack: str,
    token: int,
    holder: Mapping[str, Any],
    reporter: Reporter,
    verify: Callable[[], None] = lambda: None,
) -> Deployment | None:
    """Redeploy the last good deployment (its digests and commit) under the lock already held,
    as rollback does, recorded as its own ``rollback`` record; None when there is none or it
    is refused (the reason goes into the run's warnings)."""
    say = reporter.output
    try:
        good = last_good(history, stack, exclude=failed.id)
    except Exception as exc:  # noqa: BLE001 - the history read is best effort here
        out.warnings.append(f"automatic rollback not attempted: history unreadable ({exc})")
        return None
    if good is None:
        out.warnings.append("automatic rollback not possible: no earlier succeeded deployment")
        return None
    if not target.restores_commits:
        out.warnings.append(
            f"automatic rollback to {good.id} not possible: the target runs the work tree "
            "(--allow-dirty), not a commit's code"
        )
        return None
    gone = [ref for ref in good.images.values() if target.image_exists(ref) is False]
    if gone:
        out.warnings.append(
            f"automatic rollback to {good.id} refused: {', '.join(gone)} no longer in the "
            "registry (the cleanup policy keeps the 20 newest versions)"
        )
        return None
    try:
        verify()  # fencing: before each step that changes the world
    except DeployError as exc:
        out.warnings.append(f"automatic rollback not attempted: {exc}")
        return None
    say(f"automatic rollback to {good.id} (commit {good.commit[:12]})")
    record = history.start(
        Deployment(
            id=new_deployment_id(stack),
            stack=stack,
            commit=good.commit,
            who=str(holder.get("who") or "?"),
            kind="rollback",
            lock_token=token,
            builder="digests",
            ci_run_url=holder.get("ci_run_url"),
            host=holder.get("host"),
            rollback_of=good.id,
            automatic=True,
        )
    )
    env = {ENV_COMMIT: good.commit, ENV_LOCK_TOKEN: str(token)}
    if good.images:
        env[ENV_IMAGE_OVERRIDES] = json.dumps(dict(good.images), sort_keys=True)
    try:
        verify()
        result = target.apply(stack, env=env, dry_run=False, on_output=say)
        expected = {s: ref.rpartition("@")[2] for s, ref in good.images.items() if "@" in ref}
        bad = [c for c in target.verify(stack, expected=expected, on_output=say) if not c.ok]
        if bad:
            raise VerificationFailed(
                "; ".join(f"{c.service}: {', '.join(c.problems)}" for c in bad)
            )
        # Straight to 100%: this release was verified when it was deployed.
        verify()
        target.promote(stack, policy=RolloutPolicy(steps=(100,), hold=timedelta(0)), on_output=say)
        verify()
        finished = history.finish(
            record.id, Result.SUCCEEDED, images=dict(good.images), summary=dict(result.summary)
        )
    except Exception as exc:  # noqa: BLE001 - recorded; the deploy has failed either way
        finished = history.finish(record.id, Result.FAILED, error=f"{type(exc).__name__}: {exc}")
        out.warnings.append(f"automatic rollback to {good.id} failed: {exc}")
    out.rollback_record = finished
    if finished.result == Result.SUCCEEDED:
        out.rolled_back_to = good.id
        say(f"rolled back to {good.id}: {finished.id}")
    return finished


def _lost_message(stack: str, why: list[str]) -> str:
    return (
        f"the deploy lock on '{stack}' was lost during the deploy ({'; '.join(why) or '?'}): "
        "another run may now hold it"
    )


def _build(request, info, builder, image_tags, reporter):
    if request.rollback_to is not None:
        return dict(request.rollback_to.images), dict(request.rollback_to.image_tags)
    tags = {name: image_tags(name) for name in info.services} if image_tags else {}
    if request.builder == "local":
        return {}, tags
    if builder is None:
        raise DeployError("--builder cloudbuild needs the Cloud Build adapter (none configured)")
    targets = info.image_targets()
    missing = sorted(set(info.services) - set(targets))
    if missing:
        raise DeployError(f"the plan builds no image for: {', '.join(missing)}")
    outcomes = ensure_images(builder, targets, on_output=reporter.output)
    tags = {name: t.tag for name, t in targets.items()}
    return {name: o.ref for name, o in outcomes.items()}, tags


def _build_detail(request: DeployRequest, overrides: Mapping[str, str]) -> str:
    if request.rollback_to is not None:
        return f"redeploying the digests of {request.rollback_to.id}"
    if request.builder == "local":
        return "the program builds the images (pulumi-docker-build)"
    return f"{len(overrides)} image(s) by digest"


def _images(overrides, checks, info) -> dict[str, str]:
    images = dict(overrides)
    for c in checks:
        svc = info.services.get(c.service)
        if c.service not in images and c.digest and svc is not None and svc.image is not None:
            images[c.service] = f"{svc.image.repository}@{c.digest}"
    return images


def _summary_text(summary: Mapping[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(summary.items())) or "no changes"


def _dry_run(run: _Run, info: StackInfo, target: Target, builder, commit: str) -> DeployOutcome:
    out = run.outcome
    request = run.request
    run.step("lock", "skipped", "dry run: no lock")
    overrides: dict[str, str] = {}
    try:
        run.step("build", "running")
        if request.rollback_to is not None:
            overrides = dict(request.rollback_to.images)
            run.step("build", "ok", f"would redeploy the digests of {request.rollback_to.id}")
        elif request.builder == "cloudbuild" and builder is not None:
            todo = []
            for name, t in sorted(info.image_targets().items()):
                digest = builder.existing_digest(t)
                if digest:
                    overrides[name] = f"{t.repository}@{digest}"
                else:
                    todo.append(name)
            run.step("build", "ok", f"would build: {', '.join(todo) or 'nothing'}")
        else:
            run.step("build", "skipped", "dry run: the program's build runs only on up")
        run.step("apply", "running")
        env = {ENV_COMMIT: commit}
        if overrides:
            env[ENV_IMAGE_OVERRIDES] = json.dumps(overrides, sort_keys=True)
        result = target.apply(request.stack, env=env, dry_run=True, on_output=run.reporter.output)
    except DeployError as exc:
        out.error = str(exc)
        run.step("apply", "failed", str(exc))
        run.skip_rest("apply", "dry run failed")
        return out
    out.summary = dict(result.summary)
    run.step("apply", "ok", f"preview: {_summary_text(result.summary)}")
    run.skip_rest("apply", "dry run")
    out.exit_code = ExitCode.CHANGES if result.changed else ExitCode.OK
    return out


def default_image_tags(root: Path) -> Callable[[str], str]:
    """service -> its image tag from the build context's content hash (``infra.build_context``)."""
    from infra.build_context import image_tag

    return lambda service: image_tag(service, root)
