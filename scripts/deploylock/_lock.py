"""The lock itself: a lease document that exists only while held, and a token counter.

:class:`DeployLock` is what callers hold; each of its jobs lives in a module of its own:

- ``_documents``: the Firestore layout, the one door every call goes through (timeouts,
  bounded retries, errors mapped to :class:`LockUnavailable`), reading it into a status;
- ``_acquire``: the one-commit grant of a free lock, takeovers, waiting;
- ``_holding``: proof of holding (the holder secret, the safe time), renewals and every
  other write as the holder;
- ``_release``: release, and force-release (which revokes a live lease);
- ``_history``: the events, with the acquires no event recorded;
- ``_heartbeat``: the background renewer and safe-time watch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

from google.cloud import firestore

from . import _acquire, _holding, _release
from ._acquire import WaitCallback
from ._defaults import (
    DEFAULT_COLLECTION,
    DEFAULT_TTL,
    RETRY_DEADLINE,
    RPC_TIMEOUT,
    safety_margin,
    validate_stack,
    validate_ttl,
)
from ._documents import LockDocuments
from ._errors import DeployLockError, InvalidLockConfig, LeaseLost
from ._heartbeat import Heartbeat, LostCallback, RenewedCallback
from ._history import read_history
from ._holder import HolderInfo
from ._records import Lease, LockEvent, LockStatus


class DeployLock:
    """The deploy lock of one stack, in a Firestore database.

    :param client: a ``google.cloud.firestore.Client`` (any project/database; for the emulator
        see :func:`scripts.emulators.firestore_client`).
    :param stack: the stack name (``prod``, ``staging``...): lowercase letters, digits, ``-``
        and ``_``, starting with a letter.
    :param ttl: how long a lease lives without renewal (default 10 min).
    :param collection: the collection of lock documents.
    :param rpc_timeout: per-attempt timeout of every Firestore call.
    :param retry_deadline: total time a call is retried when Firestore is unavailable; after
        that the operation raises :class:`LockUnavailable` (no unbounded retries).
    :raises InvalidLockConfig: bad stack name or TTL.

    Every method may raise :class:`LockUnavailable` when Firestore cannot be reached; none
    ever reports success for a write it could not confirm.
    """

    def __init__(
        self,
        client: firestore.Client,
        *,
        stack: str,
        ttl: timedelta = DEFAULT_TTL,
        collection: str = DEFAULT_COLLECTION,
        rpc_timeout: timedelta = RPC_TIMEOUT,
        retry_deadline: timedelta = RETRY_DEADLINE,
    ) -> None:
        self.stack = validate_stack(stack)
        self.ttl = validate_ttl(ttl)
        #: Subtracted from the TTL for a lease's safe time (:func:`safety_margin`).
        self.margin = safety_margin(self.ttl)
        self._docs = LockDocuments(
            client,
            stack=self.stack,
            collection=collection,
            rpc_timeout=rpc_timeout,
            retry_deadline=retry_deadline,
        )
        # This object's last read found a lease document: its next acquire attempt reads first
        # (a waiter polls with one read, and takes over an expired lease in two round trips)
        # instead of trying a create that would fail. Only a hint: every write is conditioned.
        self._seen_taken = False

    def __repr__(self) -> str:
        return f"DeployLock(stack={self.stack!r}, path={self._docs.ref.path!r}, ttl={self.ttl})"

    # -- acquire ------------------------------------------------------------------------------

    def try_acquire(self, holder: HolderInfo | None = None) -> Lease | None:
        """Acquire the lock if no live lease exists; return the lease, or ``None`` if it is held.

        One round trip when the lock is free. An expired lease (its holder stopped renewing) is
        taken over (two round trips), recorded as a ``takeover`` event naming the previous
        holder. A revoked lease (force-released) is free only once its holder released it or it
        expired. The new lease's token is greater than every token granted before.

        :raises LockUnavailable: Firestore unreachable (the lock may or may not have been
            granted; if it was, it expires after the TTL).
        """
        lease, _ = _acquire.attempt(self, holder or HolderInfo.detect())
        return lease

    def acquire(
        self,
        holder: HolderInfo | None = None,
        *,
        wait: timedelta | float = 0,
        on_wait: WaitCallback | None = None,
    ) -> Lease:
        """Acquire the lock, waiting up to ``wait`` for the current holder to let go.

        While waiting, polls with exponential backoff and full jitter (0.2 s doubling up to 5 s,
        never sleeping past the holder's expiry) and calls ``on_wait(status)`` before each sleep
        so callers can show who holds it.

        :raises LockHeld: still held after ``wait`` (0, the default, means do not wait); the
            exception's ``status`` names the holder.
        :raises InvalidLockConfig: negative ``wait``.
        :raises LockUnavailable: Firestore unreachable.
        """
        wait_s = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
        if not wait_s >= 0:  # also rejects NaN
            raise InvalidLockConfig(f"wait must be zero or positive seconds, got {wait!r}")
        return _acquire.acquire_waiting(self, holder or HolderInfo.detect(), wait_s, on_wait)

    # -- verify, renew, release -----------------------------------------------------------------

    def verify(self, lease: Lease) -> LockStatus:
        """Re-verify ``lease`` before a step that changes the world (fencing at the mutation).

        One read: the lease document must still be this lease (its id, the holder secret's
        digest and the token match), not revoked, and not expired by Firestore's clock; and
        this process's clock must still be before the lease's safe time. Returns the status
        read; the caller should then act at once (a lease can be lost the moment after).

        :raises LeaseLost: superseded, force-released, released, expired, or past its safe
            time: stop before mutating anything.
        :raises LockUnavailable: Firestore unreachable (the lease cannot be confirmed: do not
            mutate).
        """
        _holding.check_safe_time(lease, self.margin)
        read = self._docs.read()
        _holding.check_holder(lease, read)
        if read.status.expired:
            raise LeaseLost(lease, read.status, "it expired (not renewed within its TTL)")
        _holding.check_safe_time(lease, self.margin)
        return read.status

    def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` by the TTL from now (Firestore time); updates and returns it, with
        its ``safe_until`` moved to this renewal's send time + TTL - margin.

        Succeeds while the lease is the current one, including after it expired if nobody took
        it over meanwhile (no one else held the lock, so exclusivity was never broken).

        :raises LeaseLost: taken over, force-released or released: stop at once.
        :raises LockUnavailable: Firestore unreachable (the lease may still expire: retry
            before ``lease.safe_until``).
        """
        return _holding.renew(self, lease)

    def release(self, lease: Lease) -> bool:
        """Release the lock held by ``lease`` (delete the lease document): the lock is free.

        A lease force-released while its holder ran is released too (acknowledging that the
        holder stopped, which frees the lock before the lease expires), then reported lost.

        :returns: True if released now; False if this lease had already been released
            (releasing twice is harmless).
        :raises LeaseLost: the lease is not the current one (taken over after expiring), or was
            force-released: its holder must not assume it held the lock until now.
        :raises LockUnavailable: Firestore unreachable; the lease expires after its TTL.
        """
        return _release.release(self, lease)

    def lease_for(self, token: int, holder_secret: str | None, *,
                  by: HolderInfo | None = None, action: str = "release") -> Lease:  # fmt: skip
        """The lease with fencing token ``token``, to renew or release it from another process
        than the one that acquired it (the CLI's ``renew``/``release``), given its holder
        secret (what ``acquire`` printed).

        :raises NotHolder: no secret, or the wrong one: refused, and the attempt is recorded
            in the history as ``{action}-refused`` with who tried (``by``).
        :raises LeaseLost: ``token`` is not the current lease (superseded, released).
        """
        return _holding.lease_for(self, token, holder_secret, by=by, action=action)

    # -- force release, status, history ----------------------------------------------------------

    def force_release(
        self, *, reason: str, by: HolderInfo | None = None, now: bool = False
    ) -> LockStatus | None:
        """Take the lock from whoever holds it, recording who did it and why.

        A live lease is *revoked*: its holder learns it at its next read (a few seconds, see
        :data:`~scripts.deploylock.REVOCATION_POLL`), stops its command and releases; the lock
        is free then, or when the lease expires if the holder is gone. So no one can acquire
        while the displaced holder's command may still run. An expired lease is removed at
        once (its holder's safe time is over).

        :param reason: required, non-empty: recorded in history and shown to the displaced
            holder (whose renew/release raises :class:`LeaseLost` naming it).
        :param now: free the lock at once, without waiting for the holder to stop or its lease
            to expire: only for a holder known to be gone (its machine is off). If its command
            still runs, the next holder overlaps it until its safe time. Recorded as such.
        :returns: the displaced lease's status (live or expired), or ``None`` if the lock was
            not held (nothing is written then).
        :raises InvalidLockConfig: empty reason.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidLockConfig("force-release needs a reason (who asked, and why)")
        by = by or HolderInfo.detect(reason=reason)
        return _release.force_release(self, reason=reason, by=by, now=now)

    def status(self) -> LockStatus:
        """The lock as Firestore has it now (holder, token, expiry), without acquiring it."""
        return self._docs.read().status

    def history(self, limit: int = 20) -> list[LockEvent]:
        """The last ``limit`` events, newest first: ``acquire`` (or ``takeover``), ``renew``,
        ``release``, ``force-release`` and refused attempts.

        A lease granted by a plain create wrote no event (one round trip); its ``acquire`` is
        shown from the lease document while it has no later event, then from the holder and
        grant time every later event of that lease carries.
        """
        if not isinstance(limit, int) or limit < 1:
            raise InvalidLockConfig(f"history limit must be a positive integer, got {limit!r}")
        return read_history(self._docs, limit)

    # -- heartbeat and context manager ----------------------------------------------------------

    def heartbeat(
        self,
        lease: Lease,
        *,
        interval: timedelta | None = None,
        stop_before: timedelta = timedelta(0),
        on_lost: LostCallback | None = None,
        on_renewed: RenewedCallback | None = None,
    ) -> Heartbeat:
        """A background renewer for ``lease`` (start it with ``with`` or :meth:`Heartbeat.start`).

        Renews every ``interval`` (default TTL/3) and reads the lease in between (every
        :data:`~scripts.deploylock.REVOCATION_POLL`) to learn of a force-release. It calls
        ``on_renewed(lease)`` after each confirmed renewal (``lease.safe_until`` moved), and,
        once, ``on_lost(error)`` when a renewal or read finds the lease lost, or when
        ``stop_before`` remains before the safe time with no renewal confirmed (Firestore
        unreachable): the caller's cue to stop its work so that it has ended by the safe time.
        Then :attr:`Heartbeat.lost` is set and renewals stop. Callbacks run in its threads.
        """
        return Heartbeat(self, lease, interval=interval, stop_before=stop_before,
                         on_lost=on_lost, on_renewed=on_renewed)  # fmt: skip

    @contextlib.contextmanager
    def hold(
        self,
        holder: HolderInfo | None = None,
        *,
        wait: timedelta | float = 0,
        on_wait: WaitCallback | None = None,
        on_lost: LostCallback | None = None,
    ) -> Iterator[Heartbeat]:
        """Acquire, heartbeat while the block runs, release on exit (also on exceptions).

        Yields the :class:`Heartbeat`: ``hb.lease.token`` is the fencing token; call
        ``hb.verify()`` before each step that changes the world (a read: raises
        :class:`LeaseLost` if superseded), ``hb.check()`` for the local state alone.

        :raises LockHeld: as :meth:`acquire`.
        :raises LeaseLost: on exit, if the lease was lost while the block ran (unless the block
            itself raised).
        """
        lease = self.acquire(holder, wait=wait, on_wait=on_wait)
        hb = self.heartbeat(lease, on_lost=on_lost)
        failed = True
        try:
            with hb:
                yield hb
            failed = False
        finally:
            if failed:
                with contextlib.suppress(DeployLockError):
                    self.release(hb.lease)
        if hb.error is not None:
            with contextlib.suppress(DeployLockError):
                self.release(hb.lease)
            raise hb.error
        self.release(hb.lease)
