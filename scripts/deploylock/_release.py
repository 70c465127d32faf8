"""Releasing a lease as its holder, and force-releasing someone else's.

**Force-release revokes** a live lease rather than deleting it: the lock becomes free when the
holder, told at its next read (every few seconds), has stopped its command and released, or
when the lease expires, whichever comes first; so a force-release never lets a second holder
in while the first one's command can still run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._documents import CONFLICTS, LEGACY_SCHEMA, MAX_CONFLICTS, event_id
from ._errors import DeployLockError, LeaseLost
from ._holder import HolderInfo
from ._holding import write_as_holder
from ._records import Lease, LockStatus

if TYPE_CHECKING:
    from ._lock import DeployLock


def release(lock: DeployLock, lease: Lease) -> bool:
    """Release ``lease`` (see :meth:`DeployLock.release`)."""
    if lease._released:
        return False
    revoked: list[LockStatus] = []

    def make(seq: int) -> None:
        return None

    try:
        write_as_holder(lock, lease, "releasing", "release", make)
    except LeaseLost as exc:
        if exc.status is not None and exc.status.revoked and _ack_revoked(lock, lease):
            revoked.append(exc.status)
        elif exc.why == "it was already released":
            lease._released = True
            return False
        if not revoked:
            raise
    lease._released = True
    lease._update_time = None
    lock._seen_taken = False
    if revoked:
        by = revoked[0].revoked_by or {}
        raise LeaseLost(
            lease, revoked[0],
            f"force-released by {by.get('who', '?')}: {by.get('reason', '')} (released now "
            "that the command stopped: the lock is free)",
        )  # fmt: skip
    return True


def _ack_revoked(lock: DeployLock, lease: Lease) -> bool:
    """Delete our own revoked lease document (the holder confirms it stopped)."""
    try:
        write_as_holder(lock, lease, "releasing", "release", lambda seq: None,
                        allow_revoked=True)  # fmt: skip
    except LeaseLost:
        return False
    return True


def force_release(lock: DeployLock, *, reason: str, by: HolderInfo,
                  now: bool) -> LockStatus | None:  # fmt: skip
    """Revoke or remove the current lease (see :meth:`DeployLock.force_release`)."""
    docs = lock._docs
    for _ in range(MAX_CONFLICTS):
        read = docs.read()
        status = read.status
        if not status.exists:
            return None
        seq = status.seq + 1
        batch, option = docs.conditioned_batch(read.update_time)
        revoked_by = {"who": by.who, "host": by.host, "reason": reason}
        if read.data.get("schema") == LEGACY_SCHEMA:
            # Tokens must go on from the legacy document's, which held the only count.
            batch.delete(docs.ref, option=option)
            batch.set(docs.counter, {"token": status.token, "lease_id": None}, merge=True)
        elif status.expired or now:
            batch.delete(docs.ref, option=option)
        elif status.revoked:
            return status  # already told to stop; it frees itself or expires
        else:
            batch.update(docs.ref, {
                "state": "revoked", "revoked_by": revoked_by, "seq": seq,
                "token": status.token, "lease_renewed_at": read.update_time,
            }, option=option)  # fmt: skip
        event = docs.event(
            "force-release", status.token, status.holder, lease_id=status.lease_id,
            acquired_at=status.acquired_at, by=by.who, reason=reason,
            previous_holder=status.holder.to_dict() if status.holder else None,
            previous_token=status.token, immediate=bool(now and not status.expired),
        )  # fmt: skip
        docs.add_event(batch, event_id(status.token, max(seq, 1)), event)
        try:
            docs.commit("force-releasing", batch)
        except CONFLICTS:
            continue
        return status
    raise DeployLockError(f"gave up force-releasing stack {lock.stack!r}: too many conflicts")
