"""A deploy lock per stack in Firestore, with leases, fencing tokens, heartbeat and history.

Only one deploy of a stack may run at a time. A lease expires ``ttl`` after its last renewal
(Firestore's time, never the caller's clock), so a crashed holder does not leave an orphaned
lock; each grant carries a fencing token greater than every earlier one, so a paused holder
that lost its lease can be told apart from the current one.

::

    from scripts.deploylock import DeployLock, HolderInfo, LockHeld

    lock = DeployLock(client, stack="prod", ttl=timedelta(minutes=10))
    with lock.hold(HolderInfo.detect(reason="release 42"), wait=60) as hb:
        deploy(fencing_token=hb.lease.token, check=hb.check)

Failure semantics, for every method: :class:`LockUnavailable` when Firestore cannot be reached
within a few seconds (bounded retries, explicit timeouts), :class:`LockHeld` when someone else
holds the lock, :class:`LeaseLost` when a holder's lease is no longer current,
:class:`InvalidLockConfig` for bad arguments. Success is only ever reported for a write
Firestore confirmed.
"""

from ._errors import DeployLockError, InvalidLockConfig, LeaseLost, LockHeld, LockUnavailable
from ._lock import DeployLock, Heartbeat
from ._model import (
    CLI_MIN_TTL,
    DATABASE_ENV,
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    DEFAULT_TTL,
    MIN_TTL,
    HolderInfo,
    Lease,
    LockEvent,
    LockStatus,
    validate_stack,
    validate_ttl,
)
from ._run import DEFAULT_GRACE, CommandNotStarted, run_locked

__all__ = [
    "CLI_MIN_TTL",
    "DEFAULT_GRACE",
    "DATABASE_ENV",
    "DEFAULT_COLLECTION",
    "DEFAULT_DATABASE",
    "DEFAULT_TTL",
    "MIN_TTL",
    "CommandNotStarted",
    "DeployLock",
    "DeployLockError",
    "Heartbeat",
    "HolderInfo",
    "InvalidLockConfig",
    "Lease",
    "LeaseLost",
    "LockEvent",
    "LockHeld",
    "LockStatus",
    "LockUnavailable",
    "run_locked",
    "validate_stack",
    "validate_ttl",
]
