"""Choosing what a rollback redeploys: a recorded deployment's digests and commit label."""

from __future__ import annotations

from ._errors import RollbackRefused
from ._history import Deployment, DeploymentHistory, Result

__all__ = ["PREVIOUS", "select_rollback"]

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
