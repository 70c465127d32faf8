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
import threading
from collections.abc import Callable, Sequence
from typing import Any

from scripts.cli_common import ExitCode
from scripts.notify import EventKind
from scripts.rollout import CheckPolicy, RolloutPolicy

from ._cloudbuild import ImageBuilder
from ._dryrun import dry_run_deploy
from ._errors import (
    AdoptionNeeded,
    CheckFailed,
    DeployError,
    Interrupted,
    LeaseLost,
    PreflightFailed,
    RolloutFailed,
    ToolingMissing,
    VerificationFailed,
)
from ._fencing import fence, lost_message, signals_raise
from ._git import GitRepo
from ._history import Deployment, DeploymentHistory, Result, new_deployment_id
from ._images import build_detail, build_images, expected_digests, served_images
from ._preflight import commit_to_deploy
from ._pulumi import ENV_COMMIT, ENV_IMAGE_OVERRIDES, ENV_LOCK_TOKEN
from ._recording import Announcer, finish_record
from ._rollback import auto_rollback
from ._stackinfo import StackInfo
from ._steps import (
    BUILDERS,
    DeployOutcome,
    DeployRequest,
    Locker,
    Preflight,
    Reporter,
    Run,
    summary_text,
)
from ._targets import Target

__all__ = ["INTERRUPTED_INSTRUCTIONS", "ADOPT_HINT", "run_deploy"]

INTERRUPTED_INSTRUCTIONS = (
    "the apply was interrupted: run `pulumi refresh --stack {stack}` to reconcile the state "
    "with what exists, and `pulumi cancel --stack {stack}` if Pulumi still reports an update "
    "in progress; then deploy again (docs/runbooks.md, 'Recover an interrupted deploy')"
)


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
    run = Run(request, reporter)
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
        commit = commit_to_deploy(request, info, repo)
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
        return dry_run_deploy(run, info, target, builder, commit)

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
    announce = Announcer(notifier, None, out)
    stop_heartbeat: Callable[[], None] | None = None
    current = "lock"
    applied = False  # pulumi up started: only then do the recovery instructions apply
    try:
        with signals_raise(on_signal):
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
                overrides, tags = build_images(request, info, builder, image_tags, reporter)
                run.step("build", "ok", build_detail(request, overrides))

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
                        raise LeaseLost(lost_message(stack, lost_why)) from None
                    raise
                if lost.is_set():
                    raise LeaseLost(lost_message(stack, lost_why))
                out.summary = dict(result.summary)
                run.step("apply", "ok", summary_text(result.summary))

                # 6. verify
                current = "verify"
                run.step("verify", "running")
                expected = expected_digests(overrides, result, info.services)
                checks = target.verify(stack, expected=expected, on_output=reporter.output)
                out.checks = checks
                bad = [c for c in checks if not c.ok]
                if bad:
                    raise VerificationFailed(
                        "; ".join(f"{c.service}: {', '.join(c.problems)}" for c in bad)
                    )
                if lost.is_set():
                    raise LeaseLost(lost_message(stack, lost_why))
                run.step("verify", "ok", f"{len(checks)} check(s) passed")
                out.images = served_images(overrides, checks, info)

                # 7. check
                current = "check"
                run.step("check", "running")
                deploy_cfg = getattr(info, "deploy", None)
                policy = CheckPolicy.from_config(deploy_cfg.check) if deploy_cfg else CheckPolicy()
                out.check = target.check(stack, policy=policy, on_output=reporter.output)
                if not out.check.ok:
                    raise CheckFailed(f"post-deploy check failed: {out.check.detail}")
                if lost.is_set():
                    raise LeaseLost(lost_message(stack, lost_why))
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
                    fence=fence(lost, lost_why, stack, lambda: locker.verify(lease)),
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
                finish_record(
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
                    rollback = auto_rollback(
                        history, record, out, target, stack, token, holder, reporter,
                        verify=lambda: locker.verify(lease),
                    )  # fmt: skip
                finish_record(history, record, out, Result.FAILED, msg, None, run)
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


def _rollout_text(results: list[Any]) -> str:
    if not results:
        return "no revision to move"
    return ", ".join(
        f"{r.service} -> {r.candidate} ({'/'.join(str(s.percent) for s in r.steps)}%)"
        for r in results
    )
