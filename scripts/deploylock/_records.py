"""The lock's records: a granted ``Lease``, the ``LockStatus`` as read, history's ``LockEvent``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ._holder import HolderInfo


@dataclass(kw_only=True)
class Lease:
    """A granted lock. Returned by :meth:`DeployLock.acquire`; pass it to ``renew``/``release``.

    ``token`` is the fencing token: strictly greater than every token granted earlier for this
    stack, so anything the holder writes can carry it and a store can refuse writes with a
    smaller one. ``holder_secret`` is the proof of holding: random, known only to the process
    that acquired the lease (Firestore keeps its SHA-256); ``release`` and ``renew`` from
    another process need it (``DeployLock.lease_for``). It is never shown by ``repr``, ``status``
    or ``to_dict``. ``acquired_at`` and ``expires_at`` are Firestore server times; ``expires_at``
    moves forward on every renewal. ``safe_until`` is the holder's own clock
    (:func:`scripts.deploylock.clock`) reading until which the lease is certainly still valid:
    the send time of the last confirmed write + TTL - :func:`safety_margin`. A lease object is
    updated in place by ``renew``.
    """

    stack: str
    token: int
    lease_id: str
    holder: HolderInfo
    ttl: timedelta
    acquired_at: datetime
    expires_at: datetime
    holder_secret: str = field(repr=False)
    safe_until: float = 0.0
    # Version of the lease document after this holder's last write: renew/release write in
    # one round trip, conditioned on nothing having changed since.
    _update_time: datetime | None = field(default=None, repr=False)
    _seq: int = field(default=0, repr=False)
    _released: bool = field(default=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Everyone may see this: no holder secret."""
        return {
            "stack": self.stack,
            "token": self.token,
            "lease_id": self.lease_id,
            "holder": self.holder.to_dict(),
            "ttl_seconds": self.ttl.total_seconds(),
            "acquired_at": self.acquired_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True, kw_only=True)
class LockStatus:
    """The lock as read at ``read_at`` (Firestore server time).

    ``exists``: a lease document exists (the lock is free when it does not). ``held`` is true
    only for a live lease: not expired at ``read_at`` and not revoked. ``revoked``: a
    force-release told the holder to stop; the lock becomes free when the holder confirms its
    command stopped, or when the lease expires (``expires_at``), whichever comes first.
    ``expired``: the holder stopped renewing (crashed, partitioned); the next acquire takes it
    over. ``token`` is the current lease's, or the last one granted when free.
    """

    stack: str
    exists: bool
    held: bool
    expired: bool
    token: int
    holder: HolderInfo | None
    lease_id: str | None
    ttl: timedelta | None
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime | None
    read_at: datetime
    revoked: bool = False
    revoked_by: dict[str, Any] | None = None
    seq: int = 0

    def describe(self) -> str:
        if not self.exists:
            last = f" (last token {self.token})" if self.token else " (never locked)"
            return f"stack {self.stack!r}: free{last}"
        assert self.holder is not None
        if self.expired:
            return (
                f"stack {self.stack!r}: free (lease of {self.holder.describe()} expired at "
                f"{_fmt(self.expires_at)}; token {self.token})"
            )
        if self.revoked:
            by = self.revoked_by or {}
            return (
                f"stack {self.stack!r}: force-released by {by.get('who', '?')} "
                f"({by.get('reason', '')}); waiting for {self.holder.describe()} to stop, "
                f"free at the latest {_fmt(self.expires_at)} (token {self.token})"
            )
        return (
            f"stack {self.stack!r}: held by {self.holder.describe()} since "
            f"{_fmt(self.acquired_at)}, expires {_fmt(self.expires_at)} unless renewed "
            f"(token {self.token})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "held": self.held,
            "expired": self.expired,
            "revoked": self.revoked,
            "token": self.token,
            "holder": self.holder.to_dict() if self.holder else None,
            "lease_id": self.lease_id,
            "ttl_seconds": self.ttl.total_seconds() if self.ttl else None,
            "acquired_at": _iso(self.acquired_at),
            "renewed_at": _iso(self.renewed_at),
            "expires_at": _iso(self.expires_at),
            "revoked_by": self.revoked_by,
            "read_at": _iso(self.read_at),
        }


@dataclass(frozen=True, kw_only=True)
class LockEvent:
    """One history record, ordered by ``(token, seq)``: ``acquire``, ``takeover`` (of an
    expired lease), ``renew``, ``release``, ``force-release``, ``release-refused`` and
    ``renew-refused`` (an attempt without the holder secret, by ``by``). ``seq`` counts the
    writes of one lease (0: its grant). ``at`` is Firestore server time."""

    seq: int
    event: str
    stack: str
    token: int
    at: datetime | None
    holder: HolderInfo | None
    by: str | None = None
    reason: str | None = None
    previous_holder: HolderInfo | None = None
    previous_token: int | None = None
    lease_id: str | None = None
    #: A force-release that freed the lock at once (``--now``), not waiting for the holder.
    immediate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event": self.event,
            "stack": self.stack,
            "token": self.token,
            "at": _iso(self.at),
            "holder": self.holder.to_dict() if self.holder else None,
            "by": self.by,
            "reason": self.reason,
            "previous_holder": self.previous_holder.to_dict() if self.previous_holder else None,
            "previous_token": self.previous_token,
            "lease_id": self.lease_id,
            "immediate": self.immediate,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _fmt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "?"
