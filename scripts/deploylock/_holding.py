"""Proof of holding, and the writes only a lease's holder may make.

**The holder secret** (random, returned only to the acquirer) is stored as its SHA-256, which
is also the lease's public id; renew, release and :meth:`DeployLock.lease_for` compare it. A
release or renew without it is refused and recorded (``release-refused``). A lease is current
while the lease document still is that lease (its id, the secret's digest and the token
match) and not revoked; its holder is sure of it only until its safe time.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._documents import CONFLICTS, MAX_CONFLICTS, LockRead, event_id
from ._errors import DeployLockError, LeaseLost, NotHolder
from ._holder import HolderInfo, digest_matches
from ._records import Lease
from ._watchdog import clock

if TYPE_CHECKING:
    from ._lock import DeployLock


def check_holder(lease: Lease, read: LockRead) -> None:
    """Raise :class:`LeaseLost` unless ``read`` shows ``lease`` as the current lease, live
    or expired but not taken over, and not revoked."""
    status = read.status
    if not read.exists or read.data.get("lease_id") != lease.lease_id:
        if status.exists and status.holder is not None:
            why = (f"superseded by token {status.token}, granted to "
                   f"{status.holder.describe()}")  # fmt: skip
        elif status.token > lease.token:
            why = f"superseded by token {status.token} (since released)"
        else:
            why = "it was already released"
        raise LeaseLost(lease, status, why)
    if not digest_matches(lease.holder_secret, read.data.get("lease_id")):
        raise LeaseLost(lease, status, "the holder secret does not match")
    if status.token != lease.token:
        raise LeaseLost(lease, status, f"the lock shows token {status.token}, not ours")
    if status.revoked:
        by = status.revoked_by or {}
        raise LeaseLost(
            lease, status,
            f"force-released by {by.get('who', '?')}: {by.get('reason', '')}",
        )  # fmt: skip


def check_safe_time(lease: Lease, margin: timedelta) -> None:
    """Raise :class:`LeaseLost` once this process's clock has passed ``lease``'s safe time."""
    late = clock() - lease.safe_until
    if lease.safe_until and late >= 0:
        raise LeaseLost(
            lease, None,
            f"its safe time passed {late:.1f} s ago (no renewal confirmed within TTL - "
            f"{margin.total_seconds():g} s): another client may take it over",
        )  # fmt: skip


def write_as_holder(lock: DeployLock, lease: Lease, what: str, event_name: str,
                    make: Callable[[int], dict[str, Any] | None],
                    *, allow_revoked: bool = False) -> tuple[Any, float]:  # fmt: skip
    """Write ``make(seq)`` (the lease fields, or None to delete it) and its history event
    as ``lease``'s holder, in one round trip when nothing changed since this holder's last
    write. Returns the commit's update time and the local send time."""
    docs = lock._docs
    update_time, seq = lease._update_time, lease._seq
    for _ in range(MAX_CONFLICTS):
        if update_time is None:
            read = docs.read()
            try:
                check_holder(lease, read)
            except LeaseLost:
                if not (allow_revoked and read.exists and read.status.revoked
                        and read.data.get("lease_id") == lease.lease_id
                        and digest_matches(lease.holder_secret,
                                           read.data.get("lease_id"))):  # fmt: skip
                    raise
            update_time, seq = read.update_time, read.status.seq
        fields = make(seq + 1)
        batch, option = docs.conditioned_batch(update_time)
        if fields is None:
            batch.delete(docs.ref, option=option)
        else:
            batch.update(docs.ref, fields, option=option)
        event = docs.event(event_name, lease.token, lease.holder, lease_id=lease.lease_id,
                           acquired_at=lease.acquired_at)  # fmt: skip
        docs.add_event(batch, event_id(lease.token, seq + 1), event)
        sent = clock()
        try:
            results = docs.commit(what, batch)
        except CONFLICTS:
            update_time = None  # changed since: re-read and check we still hold it
            continue
        lease._update_time, lease._seq = results[0].update_time, seq + 1
        return results[0].update_time, sent
    raise DeployLockError(
        f"gave up {what} the lock of stack {lock.stack!r} after {MAX_CONFLICTS} conflicting writes"
    )


def renew(lock: DeployLock, lease: Lease) -> Lease:
    """Renew ``lease`` (see :meth:`DeployLock.renew`)."""
    if lease._released:
        raise LeaseLost(lease, None, "it was already released by its holder")

    def make(seq: int) -> dict[str, Any]:
        # The write moves update_time (the expiry); the token is kept in the document too.
        return {"seq": seq, "token": lease.token, "acquired_at": lease.acquired_at}

    update_time, sent = write_as_holder(lock, lease, "renewing", "renew", make)
    lease.expires_at = update_time + lease.ttl
    lease.safe_until = sent + (lease.ttl - lock.margin).total_seconds()
    return lease


def lease_for(lock: DeployLock, token: int, holder_secret: str | None, *,
              by: HolderInfo | None, action: str) -> Lease:  # fmt: skip
    """The lease ``token`` given its holder secret (see :meth:`DeployLock.lease_for`)."""
    read = lock._docs.read()
    status = read.status
    if not read.exists or status.token != token:
        stub = Lease(
            stack=lock.stack, token=token, lease_id="", holder=HolderInfo(who="?", host="?",
            pid=0), ttl=lock.ttl, acquired_at=status.read_at, expires_at=status.read_at,
            holder_secret="",
        )  # fmt: skip
        if not read.exists and status.token == token:
            raise LeaseLost(stub, status, "it was already released")
        check_holder(stub, read)  # raises LeaseLost naming the current holder
    if not digest_matches(holder_secret, read.data.get("lease_id")):
        why = "no holder secret given" if not holder_secret else "the holder secret is wrong"
        _record_refused(lock, read, action, why, by or HolderInfo.detect())
        raise NotHolder(
            lock.stack, token,
            f"{why}; only the process that acquired the lease knows it (acquire printed "
            "it); to take the lock from its holder use force-release with a reason",
        )  # fmt: skip
    assert status.holder is not None and status.ttl is not None
    return Lease(
        stack=lock.stack, token=token, lease_id=str(read.data["lease_id"]),
        holder=status.holder, ttl=status.ttl, acquired_at=status.acquired_at,
        expires_at=status.expires_at, holder_secret=str(holder_secret),
        # Another process: no safe time of its own (it never timed a write of this lease).
        # A revoked lease is written only after a read that reports the revocation.
        safe_until=0.0, _update_time=None if status.revoked else read.update_time,
        _seq=status.seq,
    )  # fmt: skip


def _record_refused(lock: DeployLock, read: LockRead, action: str, why: str,
                    by: HolderInfo) -> None:  # fmt: skip
    docs = lock._docs
    status = read.status
    event = docs.event(
        f"{action}-refused", status.token, status.holder, lease_id=status.lease_id,
        acquired_at=status.acquired_at, by=f"{by.who}@{by.host}", reason=why,
        attempted_by=by.to_dict(),
    )  # fmt: skip
    key = f"{event_id(status.token, status.seq)}-{secrets.token_hex(4)}"
    event["key"] = key
    docs.rpc("recording a refused attempt on", docs.events.document(key).create, event)
