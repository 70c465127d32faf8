"""Defaults, timings and argument validation of the deploy lock."""

from __future__ import annotations

import re
from datetime import timedelta

from ._errors import InvalidLockConfig

#: A lease not renewed for this long is expired and may be taken over.
DEFAULT_TTL = timedelta(minutes=10)
#: The smallest TTL the library accepts. The CLI asks for at least ``CLI_MIN_TTL``: with a
#: heartbeat every TTL/3, shorter leases leave too little slack for a slow network.
MIN_TTL = timedelta(seconds=1)
CLI_MIN_TTL = timedelta(seconds=10)
#: Heartbeat period as a fraction of the TTL: two renewals may fail before the lease expires.
HEARTBEAT_FRACTION = 3
#: Safe time (the DynamoDB lock client's ``safeTimeWithoutHeartbeat``): the holder counts its
#: lease as certainly valid until the *send* time of its last confirmed renewal + TTL - this
#: margin, by its own clock. The margin absorbs clock-rate differences between this machine
#: and Firestore (NTP slews at most 500 ppm, 0.3 s over 10 min), a late wake-up of the
#: watchdog on a loaded machine and a SIGKILL taking effect: the larger of the minimum and a
#: fraction of the TTL.
SAFETY_MARGIN_MIN = timedelta(milliseconds=500)
SAFETY_MARGIN_FRACTION = 0.05
#: A holder also reads its lease this often between renewals, so a force-release (which
#: revokes the lease) reaches it within seconds, not at the next renewal (TTL/3).
REVOCATION_POLL = timedelta(seconds=5)
#: After SIGINT, the command gets this long to exit before SIGKILL; never more than
#: :func:`max_grace` allows, since the grace is spent *inside* the lease.
DEFAULT_GRACE = timedelta(seconds=10)
#: Where a holder's secret is read from by ``deploy-lock renew``/``release``.
HOLDER_SECRET_ENV = "DEPLOY_LOCK_HOLDER_SECRET"
#: The Firestore database holding the lock (and the deployment records): created by the
#: bootstrap program (infra/bootstrap), not the platform's own ``(default)`` database, since a
#: lock cannot live in the stack it protects. Every CLI reads this one default; the
#: ``DEPLOY_LOCK_DATABASE`` environment variable (or ``--database``) overrides it.
DEFAULT_DATABASE = "deploy-lock"
DATABASE_ENV = "DEPLOY_LOCK_DATABASE"
#: Firestore collection holding one lock document per stack (history in its ``events``).
DEFAULT_COLLECTION = "deploy_locks"
EVENTS_SUBCOLLECTION = "events"
#: Per-attempt RPC timeout and total retry budget for every Firestore call the lock makes: a
#: client with the library defaults hung 49 s on a dead emulator.
RPC_TIMEOUT = timedelta(seconds=3)
RETRY_DEADLINE = timedelta(seconds=6)
#: Waiting for a held lock: exponential backoff with full jitter between these bounds.
WAIT_BACKOFF_INITIAL = timedelta(milliseconds=200)
WAIT_BACKOFF_MAX = timedelta(seconds=5)

STACK_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def validate_stack(stack: str) -> str:
    """Return ``stack`` if it is a valid stack name, else raise :class:`InvalidLockConfig`."""
    if not isinstance(stack, str) or not STACK_NAME_RE.fullmatch(stack):
        raise InvalidLockConfig(
            f"invalid stack name {stack!r}: use 1-63 characters, lowercase letters, digits, "
            "'-' or '_', starting with a letter (for example 'prod' or 'staging')"
        )
    return stack


def validate_ttl(ttl: timedelta | float | int, *, minimum: timedelta = MIN_TTL) -> timedelta:
    """Return ``ttl`` as a timedelta if it is at least ``minimum``, else raise."""
    if isinstance(ttl, bool) or not isinstance(ttl, (timedelta, int, float)):
        raise InvalidLockConfig(f"TTL must be a timedelta or seconds, not {ttl!r}")
    td = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    if td < minimum:
        raise InvalidLockConfig(
            f"TTL must be at least {minimum.total_seconds():g} s, got {td.total_seconds():g} s"
        )
    return td


def safety_margin(ttl: timedelta) -> timedelta:
    """The margin subtracted from the TTL to get a lease's safe time (see
    :data:`SAFETY_MARGIN_MIN`)."""
    return max(SAFETY_MARGIN_MIN, ttl * SAFETY_MARGIN_FRACTION)


def max_grace(ttl: timedelta) -> timedelta:
    """The longest grace period a lease of ``ttl`` can hold inside it.

    The command is told to stop (SIGINT) at safe time - grace and killed at the safe time. The
    stop must not begin before the next renewal (sent TTL/3 after the last) has had time to
    land and push the safe time out: it may begin from TTL/2 after the last confirmed renewal,
    so the grace is at most TTL/2 - margin.
    """
    return max(timedelta(0), ttl / 2 - safety_margin(ttl))


def default_grace(ttl: timedelta) -> timedelta:
    """:data:`DEFAULT_GRACE`, or less when the TTL cannot hold it."""
    return min(DEFAULT_GRACE, max_grace(ttl))


def validate_grace(grace: timedelta | float | int | None, ttl: timedelta) -> timedelta:
    """``grace`` as a timedelta (None: :func:`default_grace`), or raise
    :class:`InvalidLockConfig` when it is negative or larger than the TTL allows."""
    if grace is None:
        return default_grace(ttl)
    if isinstance(grace, bool) or not isinstance(grace, (timedelta, int, float)):
        raise InvalidLockConfig(f"grace must be a timedelta or seconds, not {grace!r}")
    td = grace if isinstance(grace, timedelta) else timedelta(seconds=grace)
    if not td >= timedelta(0):
        raise InvalidLockConfig(f"grace must be zero or positive, got {td.total_seconds():g} s")
    limit = max_grace(ttl)
    if td > limit:
        raise InvalidLockConfig(
            f"grace {td.total_seconds():g} s does not fit in a {ttl.total_seconds():g} s lease: "
            f"the command must have exited before the lease can expire, so the grace is at "
            f"most TTL/2 - safety margin = {limit.total_seconds():g} s; lower --grace or raise "
            "--ttl"
        )
    return td
