"""The lock itself: one Firestore document per stack, written only under preconditions.

Layout (collection ``deploy_locks`` by default)::

    deploy_locks/{stack}                 the lease: token, seq, state, holder, ttl_seconds, ...
    deploy_locks/{stack}/events/{seq}    append-only history, one document per write

Every write is a *batched write* (one atomic Commit, not a transaction) of the lease document,
conditioned on it being absent (``create``) or unchanged since it was read
(``last_update_time``), together with the ``create`` of the next history document. So two
writers can never both succeed from the same version, and history cannot miss or duplicate a
change. Transactions are not used: Google's emulator stalls on concurrent ones, while
preconditions behave the same there and in production.

Time is always Firestore's: a lease expires ``ttl`` after the lease document's ``update_time``
(its last acquire or renewal), judged against the ``read_time`` of the read that observed it.
Acquire, release and renewal times are the document's ``update_time``, an event's time its
``create_time``: no server-timestamp transforms, which made every commit slower. (The grant's
time is the acquire commit's ``update_time``; the first renewal copies it into ``acquired_at``,
which is empty until then.) The caller's clock is used only for local durations (waiting,
heartbeat deadlines).

Fast path: each :class:`DeployLock` remembers the last version of the lease document it wrote
or read. When that version is *released*, acquire writes at once, conditioned on that
``update_time``, without reading first: one round trip instead of two. It is safe for the same
reason every other write is: if anything changed since (someone acquired, took over, deleted
the document), the precondition fails, nothing is written, and acquire falls back to reading.
A released lease never expires, so no time judgement is skipped; a lease last seen *held* is
always read again (its expiry must be judged by the server's ``read_time``).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, NamedTuple

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import firestore

from ._errors import DeployLockError, InvalidLockConfig, LeaseLost, LockHeld, LockUnavailable
from ._model import (
    DEFAULT_COLLECTION,
    DEFAULT_TTL,
    EVENTS_SUBCOLLECTION,
    HEARTBEAT_FRACTION,
    RETRY_DEADLINE,
    RPC_TIMEOUT,
    WAIT_BACKOFF_INITIAL,
    WAIT_BACKOFF_MAX,
    HolderInfo,
    Lease,
    LockEvent,
    LockStatus,
    validate_stack,
    validate_ttl,
)

_SCHEMA = 1
#: A write that loses a race re-reads and tries again at most this many times; each retry
#: means another writer made progress, so this only bounds pathological churn.
_MAX_CONFLICTS = 16
# Another writer got in between our read and our write (or our own retried write landed).
_CONFLICTS = (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted)

WaitCallback = Callable[[LockStatus], None]
LostCallback = Callable[[LeaseLost], None]


def _event_id(seq: int) -> str:
    return f"{seq:012d}"


class _Version(NamedTuple):
    """A version of the lease document this process wrote or read (for the acquire fast path)."""

    update_time: Any
    token: int
    seq: int
    state: str
    ttl_seconds: float


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
        self._client = client
        self._ref = client.collection(collection).document(stack)
        self._events = self._ref.collection(EVENTS_SUBCOLLECTION)
        # Last version of the lease document seen by this object (None: unknown or absent).
        # Only a hint: every write is still conditioned on it, so a stale one costs a retry.
        self._known: _Version | None = None
        self._timeout = rpc_timeout.total_seconds()
        # Only "unavailable" is retried, briefly: it is what a dead or restarting server gives.
        self._retry = gretry.Retry(
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            predicate=gretry.if_exception_type(gexc.ServiceUnavailable),
            timeout=retry_deadline.total_seconds(),
        )

    def __repr__(self) -> str:
        return f"DeployLock(stack={self.stack!r}, path={self._ref.path!r}, ttl={self.ttl})"

    # -- Firestore calls, with explicit timeouts and errors mapped to LockUnavailable ---------

    def _rpc(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, retry=self._retry, timeout=self._timeout, **kwargs)
        except _CONFLICTS:
            raise
        except gexc.RetryError as exc:
            cause = exc.cause or exc
            raise LockUnavailable(self._unavailable(what, cause)) from exc
        except (gexc.GoogleAPICallError, OSError) as exc:
            raise LockUnavailable(self._unavailable(what, exc)) from exc
        except Exception as exc:  # google.auth errors (no/expired credentials) and the like
            if type(exc).__module__.startswith("google.auth"):
                raise LockUnavailable(self._unavailable(what, exc)) from exc
            raise

    def _unavailable(self, what: str, exc: BaseException) -> str:
        target = getattr(self._client, "_emulator_host", None) or "firestore.googleapis.com"
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"Firestore unavailable while {what} (project {self._client.project!r}, "
            f"database {self._client._database!r}, at {target}): {message}"
        )

    def _get(self) -> Any:
        return self._rpc(f"reading the lock of stack {self.stack!r}", self._ref.get)

    def _commit(self, what: str, batch: Any) -> list[Any]:
        return self._rpc(f"{what} the lock of stack {self.stack!r}", batch.commit)

    def _status(self, snap: Any) -> LockStatus:
        read_at = snap.read_time
        if not snap.exists:
            self._known = None
            return LockStatus(
                stack=self.stack, exists=False, held=False, expired=False, token=0, holder=None,
                lease_id=None, ttl=None, acquired_at=None, renewed_at=None, expires_at=None,
                read_at=read_at,
            )  # fmt: skip
        data = snap.to_dict()
        if data.get("schema") != _SCHEMA:
            raise DeployLockError(
                f"lock document {self._ref.path} has unknown schema {data.get('schema')!r}"
            )
        ttl = timedelta(seconds=float(data["ttl_seconds"]))
        is_held = data["state"] == "held"
        expires_at = snap.update_time + ttl if is_held else None
        live = is_held and read_at < expires_at
        self._known = _Version(
            snap.update_time,
            int(data["token"]),
            int(data["seq"]),
            data["state"],
            ttl.total_seconds(),
        )
        # Empty until the first renewal copies the grant's time in: until then the document's
        # update_time is the grant's commit time.
        acquired_at = data.get("acquired_at") or (snap.update_time if is_held else None)
        return LockStatus(
            stack=self.stack,
            exists=True,
            held=live,
            expired=is_held and not live,
            token=int(data["token"]),
            holder=HolderInfo.from_dict(data.get("holder")),
            lease_id=data.get("lease_id"),
            ttl=ttl,
            acquired_at=acquired_at,
            renewed_at=snap.update_time if is_held else None,
            expires_at=expires_at,
            read_at=read_at,
            released_at=None if is_held else snap.update_time,
            # A new lease leaves the previous release's record in place (one field less to
            # write): it describes the document only while it is released.
            released_by=None if is_held else data.get("released_by"),
            seq=int(data["seq"]),
        )

    def _last_recorded(self) -> tuple[int, int]:
        """(token, seq) of the newest history event: numbering survives a deleted lock doc."""
        query = self._events.order_by("seq", direction=firestore.Query.DESCENDING).limit(1)
        docs = self._rpc(f"reading the history of stack {self.stack!r}", query.get)
        if not docs:
            return 0, 0
        data = docs[0].to_dict()
        return int(data.get("token", 0)), int(data.get("seq", 0))

    def _event(self, seq: int, event: str, token: int, holder: HolderInfo | None,
               **extra: Any) -> dict[str, Any]:  # fmt: skip
        return {
            "seq": seq,
            "event": event,
            "stack": self.stack,
            "token": token,
            "holder": holder.to_dict() if holder else None,
            **extra,
        }

    # -- acquire ------------------------------------------------------------------------------

    def try_acquire(self, holder: HolderInfo | None = None) -> Lease | None:
        """Acquire the lock if no live lease exists; return the lease, or ``None`` if it is held.

        An expired lease (its holder stopped renewing) is taken over; that is recorded as a
        ``takeover`` event naming the previous holder. The new lease's token is greater than
        every token granted before for this stack.

        :raises LockUnavailable: Firestore unreachable (the lock may or may not have been
            granted; if it was, it expires after the TTL).
        """
        lease, _ = self._attempt(holder or HolderInfo.detect())
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
        holder = holder or HolderInfo.detect()
        deadline = time.monotonic() + wait_s
        backoff = WAIT_BACKOFF_INITIAL.total_seconds()
        while True:
            lease, status = self._attempt(holder)
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

    def _attempt(self, holder: HolderInfo) -> tuple[Lease | None, LockStatus | None]:
        """One acquire attempt: ``(lease, None)`` when granted, ``(None, status)`` when held."""
        lease_id = uuid.uuid4().hex
        holder_dict = holder.to_dict()
        known = self._known
        if known is not None and known.state == "released":
            # Fast path: released when we last saw it. Write without reading, conditioned on
            # that version; any change since makes the commit fail and we read below.
            event = self._event(known.seq + 1, "acquire", known.token + 1, None)
            event["holder"] = holder_dict
            lease = self._grant(
                known, known.token + 1, known.seq + 1, lease_id, holder, holder_dict, event
            )
            if lease is not None:
                return lease, None
        status: LockStatus | None = None
        for _ in range(_MAX_CONFLICTS):
            snap = self._get()
            status = self._status(snap)
            if status.exists and status.lease_id == lease_id:
                # Our previous commit landed although its reply was lost (a retried RPC).
                return self._lease(status, holder, snap.update_time), None
            if status.held:
                return None, status
            if status.exists:
                token, seq = status.token, status.seq
            else:
                token, seq = self._last_recorded()
            token, seq = token + 1, seq + 1
            if status.expired:
                event = self._event(
                    seq, "takeover", token, None, previous_holder=status.holder.to_dict()
                    if status.holder else None, previous_token=status.token,
                )  # fmt: skip
            else:
                event = self._event(seq, "acquire", token, None)
            event["holder"] = holder_dict
            # The version just judged (not self._known, which another thread may change).
            version = None
            if status.exists:
                assert status.ttl is not None
                version = _Version(
                    snap.update_time, status.token, status.seq, "", status.ttl.total_seconds()
                )
            lease = self._grant(version, token, seq, lease_id, holder, holder_dict, event)
            if lease is not None:
                return lease, None
        assert status is not None
        if status.held:
            return None, status
        raise DeployLockError(
            f"gave up acquiring the lock of stack {self.stack!r} after {_MAX_CONFLICTS} "
            "conflicting writes"
        )

    def _grant(
        self,
        version: _Version | None,
        token: int,
        seq: int,
        lease_id: str,
        holder: HolderInfo,
        holder_dict: dict[str, Any],
        event: dict[str, Any],
    ) -> Lease | None:
        """Write the lease ``token`` and its event in one commit, conditioned on the lease
        document being at ``version`` (absent if None). None if that precondition failed.

        An update writes only the fields a new lease changes: the emulator's commit time grows
        with the fields written (measured: with 10 fields about 2.0x a raw create, with 3 1.4x).
        """
        ttl_s = self.ttl.total_seconds()
        data: dict[str, Any] = {
            "token": token,
            "seq": seq,
            "state": "held",
            "lease_id": lease_id,
            "holder": holder_dict,
            # The grant's time is this commit's update_time; the first renewal records it.
            "acquired_at": None,
        }
        batch = self._client.batch()
        if version is None:
            data.update(schema=_SCHEMA, stack=self.stack, ttl_seconds=ttl_s, released_by=None)
            batch.create(self._ref, data)
        else:
            # schema and stack never change; released_by is ignored while held.
            if version.ttl_seconds != ttl_s:
                data["ttl_seconds"] = ttl_s
            option = self._client.write_option(last_update_time=version.update_time)
            batch.update(self._ref, data, option=option)
        batch.create(self._events.document(_event_id(seq)), event)
        try:
            results = self._commit("acquiring", batch)
        except _CONFLICTS:
            self._known = None  # someone else wrote first (or the document is gone): read
            return None
        update_time = results[0].update_time
        self._known = _Version(update_time, token, seq, "held", ttl_s)
        return Lease(
            stack=self.stack,
            token=token,
            lease_id=lease_id,
            holder=holder,
            ttl=self.ttl,
            acquired_at=update_time,
            expires_at=update_time + self.ttl,
            _update_time=update_time,
            _seq=seq,
        )

    def _lease(self, status: LockStatus, holder: HolderInfo, update_time: Any) -> Lease:
        assert status.lease_id is not None and status.ttl is not None
        return Lease(
            stack=self.stack,
            token=status.token,
            lease_id=status.lease_id,
            holder=holder,
            ttl=status.ttl,
            acquired_at=status.acquired_at or update_time,
            expires_at=update_time + status.ttl,
            _update_time=update_time,
            _seq=status.seq,
        )

    # -- renew, release ------------------------------------------------------------------------

    def _check_owner(self, lease: Lease, status: LockStatus) -> bool:
        """True if ``lease`` is still the current one; False if this same lease was already
        released by its holder; raise :class:`LeaseLost` otherwise."""
        if not status.exists:
            raise LeaseLost(lease, status, "the lock document no longer exists")
        if status.token != lease.token:
            holder = status.holder.describe() if status.holder else "?"
            raise LeaseLost(
                lease, status,
                f"superseded by token {status.token}, granted to {holder}",
            )  # fmt: skip
        released_by = status.released_by or {}
        if status.exists and not (status.held or status.expired):
            if released_by.get("kind") == "force":
                raise LeaseLost(
                    lease, status,
                    f"force-released by {released_by.get('who', '?')}: "
                    f"{released_by.get('reason', '')}",
                )  # fmt: skip
            return False
        return True

    def _write_as_holder(
        self,
        lease: Lease,
        what: str,
        make: Callable[[int], tuple[dict[str, Any], dict[str, Any]]],
        state: str,
    ) -> Any | None:
        """Write ``make(seq)`` = (lock fields, event) as ``lease``'s holder, in one round trip
        when nothing changed since this holder's last write. Returns the commit's update time,
        or ``None`` if the lease had already been released by its holder."""
        update_time, seq = lease._update_time, lease._seq
        for _ in range(_MAX_CONFLICTS):
            if update_time is None:
                snap = self._get()
                if not self._check_owner(lease, self._status(snap)):
                    return None
                update_time, seq = snap.update_time, int(snap.get("seq"))
            fields, event = make(seq + 1)
            batch = self._client.batch()
            batch.update(
                self._ref, fields, option=self._client.write_option(last_update_time=update_time)
            )
            batch.create(self._events.document(_event_id(seq + 1)), event)
            try:
                results = self._commit(what, batch)
            except _CONFLICTS:
                update_time = None  # changed since: re-read and check we still hold it
                continue
            lease._update_time, lease._seq = results[0].update_time, seq + 1
            self._known = _Version(
                results[0].update_time, lease.token, seq + 1, state, lease.ttl.total_seconds()
            )
            return results[0].update_time
        raise DeployLockError(
            f"gave up {what} the lock of stack {self.stack!r} after {_MAX_CONFLICTS} "
            "conflicting writes"
        )

    def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` by the TTL from now (Firestore time); updates and returns it.

        Succeeds while the lease is the current one, including after it expired if nobody took
        it over meanwhile (no one else held the lock, so exclusivity was never broken).

        :raises LeaseLost: taken over, force-released or already released: stop at once.
        :raises LockUnavailable: Firestore unreachable (the lease may still expire: retry
            before ``lease.expires_at``).
        """
        ttl_s = lease.ttl.total_seconds()

        def make(seq: int) -> tuple[dict[str, Any], dict[str, Any]]:
            # The write moves update_time; acquired_at is empty until the first renewal.
            fields = {"seq": seq, "ttl_seconds": ttl_s, "acquired_at": lease.acquired_at}
            return fields, self._event(seq, "renew", lease.token, lease.holder)

        update_time = self._write_as_holder(lease, "renewing", make, "held")
        if update_time is None:
            raise LeaseLost(lease, None, "it was already released by its holder")
        lease.expires_at = update_time + lease.ttl
        return lease

    def release(self, lease: Lease | int) -> bool:
        """Release the lock held by ``lease`` (or by the lease with this fencing token).

        :returns: True if released now; False if this lease had already been released by its
            holder (releasing twice is harmless).
        :raises LeaseLost: the lease is not the current one (taken over after expiring, or
            force-released): its holder must not assume it held the lock until now.
        :raises LockUnavailable: Firestore unreachable; the lease expires after its TTL.
        """
        if isinstance(lease, int) and not isinstance(lease, bool):
            lease = self.lease_for_token(lease)

        def make(seq: int) -> tuple[dict[str, Any], dict[str, Any]]:
            fields = {
                "state": "released",
                "seq": seq,
                "released_by": {"kind": "release", "who": lease.holder.who, "token": lease.token},
            }
            return fields, self._event(seq, "release", lease.token, lease.holder)

        released = self._write_as_holder(lease, "releasing", make, "released") is not None
        # Forget the version: a second release (or a renew) must read and find it released.
        lease._update_time = None
        return released

    def lease_for_token(self, token: int) -> Lease:
        """The lease with fencing token ``token``, to renew or release it from another process
        than the one that acquired it (the CLI's ``renew``/``release --token``).

        :raises LeaseLost: ``token`` is not the current lease's (superseded, force-released).
        """
        status = self._status(self._get())
        holder = status.holder or HolderInfo(who="?", host="?", pid=0)
        stub = Lease(
            stack=self.stack, token=token, lease_id=status.lease_id or "", holder=holder,
            ttl=status.ttl or self.ttl, acquired_at=status.acquired_at or status.read_at,
            expires_at=status.read_at,
        )  # fmt: skip
        self._check_owner(stub, status)  # raises LeaseLost for a stale token
        return stub

    # -- force release, status, history ----------------------------------------------------------

    def force_release(self, *, reason: str, by: HolderInfo | None = None) -> LockStatus | None:
        """Release the lock whoever holds it, recording who did it and why.

        :param reason: required, non-empty: recorded in history and shown to the displaced
            holder (whose next renew/release raises :class:`LeaseLost` naming it).
        :returns: the displaced lease's status (live or expired), or ``None`` if the lock was
            not held (nothing is written then).
        :raises InvalidLockConfig: empty reason.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidLockConfig("force-release needs a reason (who asked, and why)")
        by = by or HolderInfo.detect(reason=reason)
        for _ in range(_MAX_CONFLICTS):
            snap = self._get()
            status = self._status(snap)
            if not status.exists or not (status.held or status.expired):
                return None
            seq = status.seq + 1
            fields = {
                "state": "released",
                "seq": seq,
                "released_by": {
                    "kind": "force",
                    "who": by.who,
                    "host": by.host,
                    "reason": reason,
                    "token": status.token,
                },
            }
            event = self._event(
                seq, "force-release", status.token, status.holder, by=by.who, reason=reason,
                previous_holder=status.holder.to_dict() if status.holder else None,
                previous_token=status.token,
            )  # fmt: skip
            batch = self._client.batch()
            option = self._client.write_option(last_update_time=snap.update_time)
            batch.update(self._ref, fields, option=option)
            batch.create(self._events.document(_event_id(seq)), event)
            try:
                results = self._commit("force-releasing", batch)
            except _CONFLICTS:
                continue
            assert status.ttl is not None
            self._known = _Version(
                results[0].update_time, status.token, seq, "released", status.ttl.total_seconds()
            )
            return status
        raise DeployLockError(f"gave up force-releasing stack {self.stack!r}: too many conflicts")

    def status(self) -> LockStatus:
        """The lock as Firestore has it now (holder, token, expiry), without acquiring it."""
        return self._status(self._get())

    def history(self, limit: int = 20) -> list[LockEvent]:
        """The last ``limit`` events (acquire, takeover, renew, release, force-release), newest
        first."""
        if not isinstance(limit, int) or limit < 1:
            raise InvalidLockConfig(f"history limit must be a positive integer, got {limit!r}")
        query = self._events.order_by("seq", direction=firestore.Query.DESCENDING).limit(limit)
        docs = self._rpc(f"reading the history of stack {self.stack!r}", query.get)
        events = []
        for doc in docs:
            d = doc.to_dict()
            events.append(
                LockEvent(
                    seq=int(d["seq"]),
                    event=d["event"],
                    stack=d.get("stack", self.stack),
                    token=int(d.get("token", 0)),
                    at=doc.create_time,
                    holder=HolderInfo.from_dict(d["holder"]) if d.get("holder") else None,
                    by=d.get("by"),
                    reason=d.get("reason"),
                    previous_holder=HolderInfo.from_dict(d["previous_holder"])
                    if d.get("previous_holder")
                    else None,
                    previous_token=d.get("previous_token"),
                )
            )
        return events

    # -- heartbeat and context manager ----------------------------------------------------------

    def heartbeat(
        self,
        lease: Lease,
        *,
        interval: timedelta | None = None,
        on_lost: LostCallback | None = None,
    ) -> Heartbeat:
        """A background renewer for ``lease`` (start it with ``with`` or :meth:`Heartbeat.start`).

        Renews every ``interval`` (default TTL/3). When a renewal finds the lease lost, or no
        renewal has succeeded for a whole TTL (Firestore unreachable), it stops, sets
        :attr:`Heartbeat.lost` and calls ``on_lost(error)`` from its thread.
        """
        return Heartbeat(self, lease, interval=interval, on_lost=on_lost)

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
        ``hb.check()`` before each fenced write to stop as soon as the lease is lost.

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
        hb.check()
        self.release(hb.lease)


class Heartbeat:
    """Renews a lease in a daemon thread until stopped or the lease is lost."""

    def __init__(
        self,
        lock: DeployLock,
        lease: Lease,
        *,
        interval: timedelta | None = None,
        on_lost: LostCallback | None = None,
    ) -> None:
        self.lock = lock
        self.lease = lease
        self.interval = interval or lease.ttl / HEARTBEAT_FRACTION
        if self.interval <= timedelta(0) or self.interval >= lease.ttl:
            raise InvalidLockConfig(
                f"heartbeat interval must be positive and shorter than the TTL ({lease.ttl}), "
                f"got {self.interval}"
            )
        self.lost = threading.Event()
        self.error: LeaseLost | None = None
        self.renewals = 0
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"deploy-lock-heartbeat-{self.lease.stack}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (waits for an in-flight renewal). Does not release the lease."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def check(self) -> None:
        """Raise the :class:`LeaseLost` error if the heartbeat found the lease lost."""
        if self.error is not None:
            raise self.error

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        interval = self.interval.total_seconds()
        ttl = self.lease.ttl.total_seconds()
        # Local monotonic time when the last successful renewal was *sent*: the server's
        # update_time is later, so the lease lives at least until this + TTL.
        renewed_from = time.monotonic()
        delay = interval
        while not self._stop.wait(delay):
            sent = time.monotonic()
            try:
                self.lock.renew(self.lease)
            except LeaseLost as exc:
                self._lose(exc)
                return
            except Exception as exc:  # LockUnavailable and anything unexpected: retry soon
                if time.monotonic() - renewed_from >= ttl:
                    self._lose(LeaseLost(self.lease, None, f"not renewed for a whole TTL: {exc}"))
                    return
                delay = max(min(interval / 3, ttl - (time.monotonic() - renewed_from)), 0.05)
                continue
            renewed_from = sent
            self.renewals += 1
            delay = interval

    def _lose(self, exc: LeaseLost) -> None:
        self.error = exc
        self.lost.set()
        if self._on_lost is not None:
            self._on_lost(exc)
