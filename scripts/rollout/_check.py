"""The post-deploy check's verdict: did a small synthetic batch prove the platform works?

A batch whose items all *failed* permanently still "completes" (every item has an outcome),
so completion alone proves nothing: the check asks for a minimum share of items **predicted**
(the coordinator's ``completed`` count), within a time bound, with nothing dead-lettered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from infra.config import DeployCheckConfig

__all__ = ["CheckPolicy", "CheckResult", "judge_check"]

# The defaults and their reasons live with the stack config's `deploy.check` (one home).
_DEFAULTS = DeployCheckConfig()


@dataclass(frozen=True)
class CheckPolicy:
    items: int = _DEFAULTS.items
    timeout: timedelta = timedelta(seconds=_DEFAULTS.timeout_seconds)
    min_predicted_share: float = _DEFAULTS.min_predicted_share
    max_dead_letters: int = _DEFAULTS.max_dead_letters

    @classmethod
    def from_config(cls, cfg: DeployCheckConfig) -> CheckPolicy:
        return cls(
            items=cfg.items,
            timeout=timedelta(seconds=cfg.timeout_seconds),
            min_predicted_share=cfg.min_predicted_share,
            max_dead_letters=cfg.max_dead_letters,
        )

    def __post_init__(self) -> None:
        if not 1 <= self.items <= 1000:
            raise ValueError(f"check items must be 1..1000 (got {self.items})")
        if not 0 < self.min_predicted_share <= 1:
            raise ValueError(
                f"min_predicted_share must be in (0, 1] (got {self.min_predicted_share})"
            )
        if self.timeout <= timedelta(0) or self.max_dead_letters < 0:
            raise ValueError("timeout must be > 0 and max_dead_letters >= 0")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    batch_id: str | None
    state: str
    items: int
    predicted: int
    failed: int
    dead_lettered: int
    elapsed_s: float
    problems: tuple[str, ...] = ()
    target: str | None = None  # where it ran: a URL or "local"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def predicted_share(self) -> float:
        return self.predicted / self.items if self.items else 0.0

    @property
    def detail(self) -> str:
        head = (
            f"{self.state}: {self.predicted}/{self.items} predicted "
            f"({self.predicted_share:.0%}), {self.failed} failed, "
            f"{self.dead_lettered} dead-lettered, {self.elapsed_s:.1f} s"
        )
        return head if self.ok else f"{head}: {'; '.join(self.problems)}"

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``extra``, and ``predicted_share`` (4 decimals)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data.update(predicted_share=round(self.predicted_share, 4), problems=list(self.problems))
        return data


def judge_check(
    policy: CheckPolicy,
    *,
    batch_id: str | None,
    status: Mapping[str, Any],
    dead_lettered: int,
    elapsed_s: float,
    target: str | None = None,
) -> CheckResult:
    """The verdict from the coordinator's last ``/status`` view of the synthetic batch."""
    state = str(status.get("state") or "unknown")
    predicted = int(status.get("completed") or 0)
    failed = int(status.get("failed") or 0)
    problems: list[str] = []
    if state != "completed":
        if state in ("publishing", "running"):
            problems.append(f"not complete within {policy.timeout.total_seconds():g} s")
        else:
            problems.append(
                f"batch ended {state}" + (f" ({status['reason']})" if status.get("reason") else "")
            )
    share = predicted / policy.items
    if share < policy.min_predicted_share:
        problems.append(
            f"{predicted} of {policy.items} items predicted ({share:.0%}), "
            f"at least {policy.min_predicted_share:.0%} required"
        )
    if dead_lettered > policy.max_dead_letters:
        problems.append(
            f"{dead_lettered} message(s) dead-lettered (allowed {policy.max_dead_letters})"
        )
    return CheckResult(
        ok=not problems,
        batch_id=batch_id,
        state=state,
        items=policy.items,
        predicted=predicted,
        failed=failed,
        dead_lettered=dead_lettered,
        elapsed_s=round(elapsed_s, 3),
        problems=tuple(problems),
        target=target,
    )
