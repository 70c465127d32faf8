"""Acquiring: the one-commit grant of a free lock, the takeover of an expired lease, and
waiting for a held one.

**A free lock costs one round trip**, from any process: acquire is one batched commit that
``create``\\ s the lease document (fails with ``AlreadyExists`` if someone holds it) and
``Increment``\\ s the counter, setting its ``lease_id``; the new token is read from the commit's
``transform_results``. Both writes land or neither does, so while a lease document exists the
counter's ``lease_id`` names it and its ``token`` is that lease's token. No read, no history
write in that commit: the grant *is* the lease document (its ``create_time``), and every later
event of that lease carries the grant's holder and time, from which :meth:`DeployLock.history`
shows its ``acquire``. Taking over an expired lease reads first (its expiry must be judged by
Firestore's ``read_time``) and then commits: two round trips.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.cloud import firestore

from ._defaults import WAIT_BACKOFF_INITIAL, WAIT_BACKOFF_MAX
from ._documents import CONFLICTS, LEGACY_SCHEMA, MAX_CONFLICTS, SCHEMA, LockRead, event_id
from ._errors import DeployLockError, LockHeld
from ._holder import HolderInfo, holder_digest, new_holder_secret
from ._records import Lease, LockStatus
from ._watchdog import clock

if TYPE_CHECKING:
    from ._lock import DeployLock

WaitCallback = Callable[[LockStatus], None]


def acquire_waiting(
    lock: DeployLock, holder: HolderInfo, wait_s: float, on_wait: WaitCallback | None
) -> Lease:
    """Attempt until granted; between attempts, sleep with exponential backoff and full
    jitter, never past the holder's expiry. :raises LockHeld: still held after ``wait_s``."""
    # Our own loop, not tenacity's: each sleep is capped by the holder's expiry as the last
    # attempt read it, and the wait reports every attempt's holder (``on_wait``).
    deadline = time.monotonic() + wait_s
    backoff = WAIT_BACKOFF_INITIAL.total_seconds()
    while True:
        lease, status = attempt(lock, holder)
        if lease is not None:
            return lease
        assert status is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockHeld(status)
        if on_wait is not None:
            on_wait(status)
        sleep = random.uniform(0, backoff)
        if status.expires_at is not None:  # wake up when a crashed holder's lease expires
            until_expiry = (status.expires_at - status.read_at).total_seconds()
            sleep = min(sleep, max(until_expiry, 0.0) + 0.05)
        time.sleep(max(0.01, min(sleep, remaining)))
        backoff = min(backoff * 2, WAIT_BACKOFF_MAX.total_seconds())


def attempt(lock: DeployLock, holder: HolderInfo) -> tuple[Lease | None, LockStatus | None]:
    """One acquire attempt: ``(lease, None)`` when granted, ``(None, status)`` when held."""
    docs = lock._docs
    secret = new_holder_secret()
    # The lease's public id is the secret's SHA-256: what verifies the secret, and unique
    # (256 random bits), in one field less per commit. Showing it reveals nothing.
    lease_id = holder_digest(secret)
    fields = {
        "schema": SCHEMA,
        "lease_id": lease_id,
        # Empty fields left out: the emulator's commit time grows with the fields written.
        "holder": {k: v for k, v in holder.to_dict().items() if v is not None},
        "ttl_seconds": lock.ttl.total_seconds(),
    }
    status: LockStatus | None = None
    sent = clock()
    for _ in range(MAX_CONFLICTS):
        if not lock._seen_taken:
            # Free (the usual case): create-if-absent + counter increment, one commit.
            batch = docs.client.batch()
            batch.create(docs.ref, fields)
            batch.set(docs.counter, {"token": firestore.Increment(1),
                                     "lease_id": lease_id}, merge=True)  # fmt: skip
            sent = clock()
            try:
                results = docs.commit("acquiring", batch)
            except CONFLICTS:
                pass  # held, expired or revoked: read and judge
            else:
                token = int(results[1].transform_results[0].integer_value)
                update_time = results[0].update_time
                return _new_lease(lock, token, lease_id, secret, holder, update_time,
                                  update_time, sent, seq=0), None  # fmt: skip
        read = docs.read()
        status = read.status
        lock._seen_taken = read.exists
        if read.exists and read.data.get("lease_id") == lease_id:
            # Our commit landed although its reply was lost (a retried RPC); the safe time
            # counts from before that commit was sent.
            return _new_lease(lock, status.token, lease_id, secret, holder, status.acquired_at,
                              read.update_time, sent, seq=status.seq), None  # fmt: skip
        if not read.exists:
            continue  # released between our commit and our read: create again
        if status.held or status.revoked and not status.expired:
            return None, status
        lease = _take_over(lock, read, lease_id, secret, holder, fields)
        if lease is not None:
            return lease, None
    assert status is not None
    if status.held or status.revoked:
        return None, status
    raise DeployLockError(
        f"gave up acquiring the lock of stack {lock.stack!r} after {MAX_CONFLICTS} "
        "conflicting writes"
    )


def _take_over(lock: DeployLock, read: LockRead, lease_id: str, secret: str,
               holder: HolderInfo, fields: dict[str, Any]) -> Lease | None:  # fmt: skip
    """Replace an expired lease (or a legacy document that is not held) with ours, in one
    commit conditioned on the version just read. None if someone else wrote first."""
    docs = lock._docs
    old = read.status
    token = old.token + 1
    data = {
        **fields,
        "seq": 0,
        "acquired_at": firestore.SERVER_TIMESTAMP,
        "token": token,
        "state": firestore.DELETE_FIELD,
        "revoked_by": firestore.DELETE_FIELD,
        "lease_renewed_at": firestore.DELETE_FIELD,
    }
    if read.data.get("schema") == LEGACY_SCHEMA:
        for legacy in ("stack", "released_by"):
            data[legacy] = firestore.DELETE_FIELD
    batch, option = docs.conditioned_batch(read.update_time)
    batch.update(docs.ref, data, option=option)
    # The counter already names the old lease: no other grant can happen without changing
    # the lease document, which the precondition forbids, so it goes from old to old + 1.
    batch.set(docs.counter, {"token": token, "lease_id": lease_id}, merge=True)
    if old.exists:  # an expired lease, not a released legacy document
        event = docs.event(
            "takeover", token, holder, lease_id=lease_id,
            acquired_at=firestore.SERVER_TIMESTAMP,
            previous_holder=old.holder.to_dict() if old.holder else None,
            previous_token=old.token, previous_lease_id=old.lease_id,
            # The grant it ends, for history: with no write of its own (seq 0) this event
            # is the only record of that acquire.
            previous_acquired_at=old.acquired_at, previous_seq=old.seq,
        )  # fmt: skip
    else:
        event = docs.event(
            "acquire", token, holder, lease_id=lease_id, acquired_at=firestore.SERVER_TIMESTAMP
        )
    docs.add_event(batch, event_id(token, 0), event)
    sent = clock()
    try:
        results = docs.commit("taking over", batch)
    except CONFLICTS:
        return None
    update_time = results[0].update_time
    return _new_lease(lock, token, lease_id, secret, holder, update_time, update_time, sent,
                      seq=0)  # fmt: skip


def _new_lease(
    lock: DeployLock, token: int, lease_id: str, secret: str, holder: HolderInfo,
    acquired_at: Any, update_time: Any, sent: float, *, seq: int,
) -> Lease:  # fmt: skip
    return Lease(
        stack=lock.stack,
        token=token,
        lease_id=lease_id,
        holder=holder,
        ttl=lock.ttl,
        acquired_at=acquired_at,
        expires_at=update_time + lock.ttl,
        holder_secret=secret,
        safe_until=sent + (lock.ttl - lock.margin).total_seconds(),
        _update_time=update_time,
        _seq=seq,
    )
