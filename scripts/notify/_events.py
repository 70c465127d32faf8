"""What a deploy announces: one :class:`DeployEvent` per transition."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["DeployEvent", "EventKind"]


class EventKind(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


_EMOJI = {
    EventKind.STARTED: ":rocket:",
    EventKind.SUCCEEDED: ":white_check_mark:",
    EventKind.FAILED: ":x:",
    EventKind.ROLLED_BACK: ":leftwards_arrow_with_hook:",
}


@dataclass(frozen=True)
class DeployEvent:
    kind: EventKind
    stack: str
    commit: str
    who: str
    deployment_id: str | None = None
    lock_token: int | None = None
    images: Mapping[str, str] = field(default_factory=dict)  # service -> ref
    check: Mapping[str, Any] | None = None  # the post-deploy check's figures
    error: str | None = None
    ci_run_url: str | None = None
    rollback_of: str | None = None

    def text(self) -> str:
        """One human-readable message (Slack renders it as is)."""
        head = f"{_EMOJI[self.kind]} deploy of *{self.stack}* {self.kind.replace('_', ' ')}"
        parts = [f"{head}: commit `{self.commit[:12]}` by {self.who}"]
        if self.lock_token is not None:
            parts.append(f"lock token {self.lock_token}")
        if self.deployment_id:
            parts.append(f"deployment {self.deployment_id}")
        lines = [", ".join(parts)]
        for service, ref in sorted(self.images.items()):
            lines.append(f"• {service}: {ref}")
        if self.check:
            figures = ", ".join(f"{k} {v}" for k, v in self.check.items() if not _nested(v))
            lines.append(f"check: {figures}")
        if self.rollback_of:
            lines.append(f"rolled back to deployment {self.rollback_of}")
        if self.error:
            lines.append(f"error: {self.error}")
        if self.ci_run_url:
            lines.append(f"run: {self.ci_run_url}")
        return "\n".join(lines)

    def to_payload(self) -> dict[str, Any]:
        """The webhook's JSON: ``event`` for machines, ``text`` for people (Slack's field)."""
        return {
            "event": str(self.kind),
            "text": self.text(),
            "stack": self.stack,
            "commit": self.commit,
            "who": self.who,
            "deployment_id": self.deployment_id,
            "lock_token": self.lock_token,
            "images": dict(self.images),
            "check": dict(self.check) if self.check else None,
            "error": self.error,
            "ci_run_url": self.ci_run_url,
            "rollback_of": self.rollback_of,
        }


def _nested(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple)
