"""What a deploy run tells others when it ends or moves on: its deployment record finished with
the result and the run's figures, and its transitions announced to the notifier's channels
(an undelivered announcement is a warning of the run, never a failure)."""

from __future__ import annotations

from typing import Any

from scripts.notify import DeployEvent, EventKind

from ._history import Deployment
from ._steps import DeployOutcome

__all__ = ["finish_record", "Announcer"]


def finish_record(history, record, out, result, error, instructions, run) -> None:
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


class Announcer:
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
