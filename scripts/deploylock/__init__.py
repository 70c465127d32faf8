"""A deploy lock per stack in Firestore, with leases, fencing tokens, heartbeat and history.

Only one deploy of a stack may run at a time. A lease expires ``ttl`` after its last renewal
(Firestore's time, never the caller's clock), so a crashed holder does not leave an orphaned
lock; each grant carries a fencing token greater than every earlier one, so a paused holder
that lost its lease can be told apart from the current one.

::

    from scripts.deploylock import DeployLock, HolderInfo, LockHeld

    lock = DeployLock(client, stack="prod", ttl=timedelta(minutes=10))
    with lock.hold(HolderInfo.detect(reason="release 42"), wait=60) as hb:
        hb.verify()  # a read: raises LeaseLost if superseded; before every mutation
        push_images(fencing_token=hb.lease.token)

A free lock costs one round trip. Each lease has a *safe time* (``lease.safe_until``, on this
machine's :func:`clock`): until then it is certainly still valid; :func:`run_locked` keeps a
command within it through a watchdog process. Only the process that acquired a lease knows
its holder secret (``lease.holder_secret``), which renew and release require;
``force_release`` revokes a live lease, which frees the lock only once its holder stopped or
its lease expired.

Failure semantics, for every method: :class:`LockUnavailable` when Firestore cannot be reached
within a few seconds (bounded retries, explicit timeouts), :class:`LockHeld` when someone else
holds the lock, :class:`LeaseLost` when a holder's lease is no longer current,
:class:`NotHolder` for a renew or release without the holder secret (recorded),
:class:`InvalidLockConfig` for bad arguments. Success is only ever reported for a write
Firestore confirmed.
"""

from ._defaults import (
    CLI_MIN_TTL,
    DATABASE_ENV,
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    DEFAULT_GRACE,
    DEFAULT_TTL,
    HOLDER_SECRET_ENV,
    MIN_TTL,
    REVOCATION_POLL,
    default_grace,
    max_grace,
    safety_margin,
    validate_grace,
    validate_stack,
    validate_ttl,
)
from ._errors import (
    DeployLockError,
    InvalidLockConfig,
    LeaseLost,
    LockHeld,
    LockUnavailable,
    NotHolder,
    exit_code,
)
from ._heartbeat import Heartbeat
from ._holder import HolderInfo
from ._lock import DeployLock
from ._operations import (
    event_row,
    lock_client,
    once_per_holder,
    open_lock,
    release_token,
    renew_token,
)
from ._records import Lease, LockEvent, LockStatus
from ._run import EXIT_LEASE_LOST, CommandNotStarted, run_locked
from ._watchdog import clock

__all__ = [
    "CLI_MIN_TTL",
    "DEFAULT_GRACE",
    "DATABASE_ENV",
    "DEFAULT_COLLECTION",
    "DEFAULT_DATABASE",
    "DEFAULT_TTL",
    "EXIT_LEASE_LOST",
    "HOLDER_SECRET_ENV",
    "MIN_TTL",
    "REVOCATION_POLL",
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
    "NotHolder",
    "clock",
    "default_grace",
    "event_row",
    "exit_code",
    "lock_client",
    "max_grace",
    "once_per_holder",
    "open_lock",
    "release_token",
    "renew_token",
    "run_locked",
    "safety_margin",
    "validate_grace",
    "validate_stack",
    "validate_ttl",
]
