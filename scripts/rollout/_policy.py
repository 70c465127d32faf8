"""How traffic moves: the steps, how long each is held, and what counts as a breach."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

__all__ = ["RolloutPolicy"]

#: Defaults (stack config can override them): three steps, each held five minutes. Cloud
#: Monitoring's request_count is sampled every 60 s and visible up to 180 s later
#: (https://cloud.google.com/monitoring/api/metrics_gcp#gcp-run), so a hold shorter than
#: a few minutes judges a step on data that has not arrived yet.
DEFAULT_STEPS = (10, 50, 100)
DEFAULT_HOLD = timedelta(minutes=5)
DEFAULT_POLL = timedelta(seconds=60)
#: A 5xx share above this on the candidate is a breach.
DEFAULT_MAX_ERROR_RATE = 0.02
#: Below this many requests in a step the share says nothing (2 errors of 3 requests are
#: not 67% of anything): the step is judged "too little traffic" and passes on the
#: synthetic check's word.
DEFAULT_MIN_REQUESTS = 50


@dataclass(frozen=True)
class RolloutPolicy:
    steps: tuple[int, ...] = DEFAULT_STEPS
    hold: timedelta = DEFAULT_HOLD
    poll: timedelta = DEFAULT_POLL
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    min_requests: int = DEFAULT_MIN_REQUESTS

    def __post_init__(self) -> None:
        steps = list(self.steps)
        if not steps or steps[-1] != 100:
            raise ValueError(f"rollout steps must end at 100 (got {steps})")
        if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise ValueError(f"rollout steps must rise strictly within 1..100 (got {steps})")
        if not 0 <= self.max_error_rate < 1:
            raise ValueError(f"max_error_rate must be in [0, 1) (got {self.max_error_rate})")
        if self.hold < timedelta(0) or self.poll <= timedelta(0):
            raise ValueError("hold must be >= 0 and poll > 0")
        if self.min_requests < 0:
            raise ValueError("min_requests must be >= 0")
