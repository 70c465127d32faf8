"""The local platform's errors: refused before anything is applied, or nothing running."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["PlatformError", "RefusedStack", "NotRunning"]


class PlatformError(RuntimeError):
    """The local platform could not do what was asked; the message says why."""


class RefusedStack(PlatformError):
    """The stack is refused before anything is applied (invalid config, a failing rule)."""

    def __init__(self, stack: str, problems: Sequence[str]):
        self.stack = stack
        self.problems = list(problems)
        super().__init__(
            f"stack {stack!r} refused before anything was applied:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


class NotRunning(PlatformError):
    """No local platform runs from this state directory."""
