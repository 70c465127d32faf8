"""Exceptions of the deploy lock. All derive from :class:`DeployLockError`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scripts.cli_common import ExitCode

if TYPE_CHECKING:  # pragma: no cover
    from ._records import Lease, LockStatus


class DeployLockError(Exception):
    """Base class of every error the deploy lock raises."""


class InvalidLockConfig(DeployLockError, ValueError):
    """A bad argument: stack name format, TTL, wait time. Raised before any Firestore call."""


class LockUnavailable(DeployLockError):
    """Firestore could not be reached or refused the call (network, credentials, permission).

    Raised after the lock's short, bounded retries. The outcome of a write that failed this way
    is unknown, but never reported as success: a lease that was in fact granted expires after
    its TTL.
    """


class LockHeld(DeployLockError):
    """The lock is held by someone else. ``status`` describes the current holder."""

    def __init__(self, status: LockStatus) -> None:
        self.status = status
        super().__init__(f"deploy lock {status.describe().removeprefix('stack ')}")


class LeaseLost(DeployLockError):
    """This lease is no longer the current one: it was taken over after expiring, force-released
    or already released by someone else. The holder must stop at once: a newer holder may be
    writing. ``status`` is the lock as read when this was found."""

    def __init__(self, lease: Lease, status: LockStatus | None, why: str) -> None:
        self.lease = lease
        self.status = status
        self.why = why
        super().__init__(f"lease {lease.token} on stack {lease.stack!r} lost: {why}")


class NotHolder(DeployLockError):
    """A renew or release without proof of holding: no holder secret, or the wrong one.

    The attempt is recorded in the lock's history (``release-refused``/``renew-refused``, with
    who tried). The token that ``status`` prints identifies a lease; only the secret that
    ``acquire`` returned to its holder can end or extend it. To take a lock from its holder,
    use ``force_release`` with a reason.
    """

    def __init__(self, stack: str, token: int, why: str) -> None:
        self.stack = stack
        self.token = token
        self.why = why
        super().__init__(f"not the holder of lease {token} on stack {stack!r}: {why}")


def exit_code(exc: DeployLockError) -> ExitCode:
    """The exit code of a lock error: 3 when held by someone else or no longer (or never) this
    caller's lease, 64 for bad arguments, else 1."""
    if isinstance(exc, (LockHeld, LeaseLost, NotHolder)):
        return ExitCode.LOCK_HELD
    if isinstance(exc, InvalidLockConfig):
        return ExitCode.USAGE
    return ExitCode.ERROR
