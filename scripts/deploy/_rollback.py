"""Rollbacks: choosing what a rollback redeploys (a recorded deployment's digests and commit
label), and the automatic rollback the pipeline runs, under the lock it holds, after a failed
verify, check or rollout."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from scripts.rollout import RolloutPolicy

from ._errors import DeployError, RollbackRefused, VerificationFailed
from ._history import Deployment, DeploymentHistory, Result, last_good, new_deployment_id
from ._pulumi import ENV_COMMIT, ENV_IMAGE_OVERRIDES, ENV_LOCK_TOKEN
from ._steps import DeployOutcome, Reporter
from ._targets import Target

__all__ = ["PREVIOUS", "select_rollback", "auto_rollback"]

PREVIOUS = "previous"


def select_rollback(history: DeploymentHistory, stack: str, to: str) -> Deployment:
    """The deployment ``to`` names: a record id, or ``previous`` (the succeeded deployment
    before the newest succeeded one). Refuses records of another stack, records that did not
    succeed, and records without image digests."""
    if to == PREVIOUS:
        succeeded = [d for d in history.list(stack, limit=200) if d.result == Result.SUCCEEDED]
        if len(succeeded) < 2:
            raise RollbackRefused(
                f"stack '{stack}' has {len(succeeded)} succeeded deployment(s): no previous one "
                "to roll back to (see `deploy history`)"
            )
        target = succeeded[1]
    else:
        target = history.get(to)
        if target.stack != stack:
            raise RollbackRefused(
                f"deployment {to} belongs to stack '{target.stack}', not '{stack}'"
            )
        if target.result != Result.SUCCEEDED:
            raise RollbackRefused(
                f"deployment {to} did not succeed ({target.result}): roll back to a verified "
                "deployment (see `deploy history`)"
            )
    if not target.images:
        raise RollbackRefused(f"deployment {target.id} recorded no image digests")
    return target


def auto_rollback(
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
