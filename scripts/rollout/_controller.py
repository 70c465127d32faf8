"""The step-by-step traffic move for one service, and the return on a breach."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from ._metrics import MetricsError, RequestSample
from ._policy import RolloutPolicy
from ._traffic import CANDIDATE_TAG, TrafficError

__all__ = ["RolloutResult", "StepResult", "progressive_rollout"]


@dataclass
class StepResult:
    percent: int
    samples: list[RequestSample] = field(default_factory=list)
    breach: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "samples": [s.to_dict() for s in self.samples],
            "breach": self.breach,
        }


@dataclass
class RolloutResult:
    service: str
    candidate: str
    previous: str | None
    ok: bool = False
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None  # the breach or the failure, with its evidence
    restored: bool = False  # traffic returned to ``previous``

    def to_dict(self) -> dict[str, Any]:
        # Every field, in declaration order; the steps as their own dicts.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["steps"] = [s.to_dict() for s in self.steps]
        return out


def _split(candidate: str, previous: str | None, percent: int) -> dict[str, int]:
    if previous is None or previous == candidate or percent >= 100:
        return {candidate: 100}
    return {candidate: percent, previous: 100 - percent}


def progressive_rollout(
    *,
    service: str,
    resource: str,
    candidate: str,
    previous: str | None,
    traffic: Any,
    metrics: Any,
    policy: RolloutPolicy,
    check: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_output: Callable[[str], None] | None = None,
) -> RolloutResult:
    """Move ``service``'s traffic from ``previous`` to ``candidate`` in ``policy.steps``.

    ``traffic``: a :class:`CloudRunTraffic`; ``metrics``: a :class:`MonitoringErrorRate`
    (or anything with their methods). ``check()`` runs before each traffic change (the
    deploy lock's fencing check: it raises when the lease is lost). On a breach or any
    failure, traffic returns to ``previous`` (100%) and the result says why; the function
    never raises for a breach, only for ``check()``'s exception (after restoring)."""
    say = on_output or (lambda _m: None)
    result = RolloutResult(service=service, candidate=candidate, previous=previous)
    try:
        for percent in policy.steps:
            if check is not None:
                check()
            traffic.split(
                resource, _split(candidate, previous, percent), tag=(CANDIDATE_TAG, candidate)
            )
            step = StepResult(percent)
            result.steps.append(step)
            say(f"{service}: {candidate} serves {percent}%")
            step_start = now()
            waited = timedelta(0)
            while waited < policy.hold:
                pause = min(policy.poll, policy.hold - waited)
                sleep(pause.total_seconds())
                waited += pause
                sample = metrics.sample(service, candidate, start=step_start, end=now())
                step.samples.append(sample)
                if (
                    sample.total >= policy.min_requests
                    and sample.error_rate > policy.max_error_rate
                ):
                    step.breach = (
                        f"{sample.errors} of {sample.total} requests answered 5xx "
                        f"({sample.error_rate:.1%} > {policy.max_error_rate:.1%}) at {percent}%"
                    )
                    result.error = f"{service}: {candidate} breached: {step.breach}"
                    _restore(traffic, resource, candidate, previous, result, say)
                    return result
        result.ok = True
        return result
    except (TrafficError, MetricsError) as exc:
        result.error = f"{service}: rollout of {candidate} failed: {exc}"
        _restore(traffic, resource, candidate, previous, result, say)
        return result
    except BaseException:
        _restore(traffic, resource, candidate, previous, result, say)
        raise


def _restore(traffic, resource, candidate, previous, result, say) -> None:
    if previous is None or previous == candidate:
        return
    try:
        traffic.split(resource, {previous: 100}, tag=(CANDIDATE_TAG, candidate))
        result.restored = True
        say(f"{result.service}: traffic returned to {previous}")
    except TrafficError as exc:
        result.error = f"{result.error}; returning traffic to {previous} FAILED: {exc}"
