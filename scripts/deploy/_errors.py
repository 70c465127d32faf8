"""The deploy pipeline's errors: each one says what happened and what to do about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class DeployError(Exception):
    """A deploy, drift or rollback step failed; the message is meant for the operator."""


@dataclass(frozen=True)
class MissingTool:
    """One missing prerequisite and the fix for it."""

    name: str
    fix: str

    def __str__(self) -> str:
        return f"{self.name}: {self.fix}"


class ToolingMissing(DeployError):
    """The ``pulumi`` CLI or GCP credentials are missing. Raised before the lock is taken."""

    def __init__(self, missing: Sequence[MissingTool]):
        self.missing = list(missing)
        lines = "\n".join(f"  - {m}" for m in self.missing)
        super().__init__(f"missing tooling, nothing was changed:\n{lines}")


class PreflightFailed(DeployError):
    """Config validation, image checks or policy rules reported errors."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"preflight failed ({len(self.problems)} error(s)), lock not taken:\n{lines}"
        )


class AdoptionNeeded(DeployError):
    """The preview would create resources that exist already (``pulumi up`` would stop
    halfway with "already exists"): adopt them first."""


class DirtyTree(DeployError):
    """The work tree has uncommitted changes: the commit label would not describe the deploy."""


class VerificationFailed(DeployError):
    """A service does not serve what was deployed (revision, traffic or digest)."""


class CheckFailed(VerificationFailed):
    """The post-deploy synthetic batch did not prove the platform works."""


class RolloutFailed(VerificationFailed):
    """A traffic step breached its error threshold (or could not be taken); traffic returned."""


class RollbackRefused(DeployError):
    """The rollback target cannot be redeployed as it was (e.g. a service no longer exists)."""


class LeaseLost(DeployError):
    """The deploy lock was lost (expired or taken over) while the deploy ran."""


class Interrupted(DeployError):
    """The run was interrupted by SIGINT/SIGTERM."""
