"""How traffic moves: the steps, how long each is held, and what counts as a breach."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from infra.config import DeployRolloutConfig

__all__ = ["RolloutPolicy"]

# The defaults and their reasons live with the stack config's `deploy.rollout` (one home).
_DEFAULTS = DeployRolloutConfig()
#: How often a held step reads the metric (Cloud Monitoring samples request_count every 60 s).
DEFAULT_POLL = timedelta(seconds=60)


@dataclass(frozen=True)
class RolloutPolicy:
    steps: tuple[int, ...] = _DEFAULTS.steps
    hold: timedelta = timedelta(seconds=_DEFAULTS.hold_seconds)
    poll: timedelta = DEFAULT_POLL
    max_error_rate: float = _DEFAULTS.max_error_rate
    min_requests: int = _DEFAULTS.min_requests

    @classmethod
    def from_config(cls, cfg: DeployRolloutConfig) -> RolloutPolicy:
        return cls(
            steps=tuple(cfg.steps),
            hold=timedelta(seconds=cfg.hold_seconds),
            max_error_rate=cfg.max_error_rate,
            min_requests=cfg.min_requests,
        )

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
