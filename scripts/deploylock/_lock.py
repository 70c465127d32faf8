"""The lock itself: a lease document that exists only while held, and a token counter.

Layout (collection ``deploy_locks`` by default)::

    deploy_locks/{stack}                      the lease, only while held: lease_id (the holder
                                              secret's SHA-256), holder, ttl_seconds, seq, ...
    deploy_locks/{stack}/meta/tokens          the counter: last fencing token and its lease_id
    deploy_locks/{stack}/events/{token}-{seq} append-only history, ordered by document id

**A free lock costs one round trip**, from any process: acquire is one batched commit that
``create``\\ s the lease document (fails with ``AlreadyExists`` if someone holds it) and
``Increment``\\ s the counter, setting its ``lease_id``; the new token is read from the commit's
``transform_results``. Both writes land or neither does, so while a lease document exists the
counter's ``lease_id`` names it and its ``token`` is that lease's token. No read, no history
write in that commit: the grant *is* the lease document (its ``create_time``), and every later
event of that lease carries the grant's holder and time, from which :meth:`DeployLock.history`
shows its ``acquire``. Taking over an expired lease reads first (its expiry must be judged by
Firestore's ``read_time``) and then commits: two round trips.

**Every other write is conditioned** on the lease document being unchanged since it was read
or last written (``last_update_time``), in one batched commit (not a transaction: Google's
emulator stalls on concurrent ones) with the ``create`` of its history event. Two writers can
never both succeed from the same version, and history can neither miss nor duplicate a change.

**Time is always Firestore's** for expiry: a lease expires ``ttl`` after its document's
``update_time`` (last grant or renewal), judged against the ``read_time`` of the read that
observed it. The caller's clock is used only for durations: the *safe time* of a lease
(:attr:`Lease.safe_until`: the send time of its last confirmed write + TTL - margin, on the
holder's own clock, never compared with another machine's), waiting, heartbeat periods.

**Proof of holding**: the holder secret (random, returned only to the acquirer) is stored as
its SHA-256, which is also the lease's public id; renew, release and
:meth:`DeployLock.lease_for` compare it. A release or renew without it is refused and recorded
(``release-refused``). **Force-release revokes** a live
lease rather than deleting it: the lock becomes free when the holder, told at its next read
(every few seconds), has stopped its command and released, or when the lease expires,
whichever comes first; so a force-release never lets a second holder in while the first one's
command can still run.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import firestore

from ._errors import (
    DeployLockError,
    InvalidLockConfig,
    LeaseLost,
    LockHeld,
    LockUnavailable,
    NotHolder,
)
from ._model import (
    DEFAULT_COLLECTION,
    DEFAULT_TTL,
    EVENTS_SUBCOLLECTION,
    HEARTBEAT_FRACTION,
    RETRY_DEADLINE,
    REVOCATION_POLL,
    RPC_TIMEOUT,
    WAIT_BACKOFF_INITIAL,
    WAIT_BACKOFF_MAX,
    HolderInfo,
    Lease,
    LockEvent,
    LockStatus,
    digest_matches,
    holder_digest,
    new_holder_secret,
    safety_margin,
    validate_stack,
    validate_ttl,
)
from ._watchdog import clock

_SCHEMA = 2
#: The layout before this one: a lease document that always existed (state held/released)
#: with its token inside. Read, and migrated by the first acquire that finds it free.
_LEGACY_SCHEMA = 1
META_SUBCOLLECTION = "meta"
COUNTER_ID = "tokens"
#: A write that loses a race re-reads and tries again at most this many times; each retry
#: means another writer made progress, so this only bounds pathological churn.
_MAX_CONFLICTS = 16
#: Reads that saw the counter name another lease than the lease document (the emulator's
#: batch get is not one snapshot) are repeated this often before the documents are declared
#: inconsistent (edited by hand).
_SKEW_RETRIES = 5
# Another writer got in between our read and our write (or our own retried write landed).
_CONFLICTS = (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted)

WaitCallback = Callable[[LockStatus], None]
LostCallback = Callable[[LeaseLost], None]
RenewedCallback = Callable[[Lease], None]


def _event_id(token: int, seq: int) -> str:
    return f"{token:012d}-{seq:06d}"


class _Read:
    """One read of the lease document and the counter.

    Firestore reads both at one ``read_time``; Google's emulator does not always (measured:
    a few reads in a hundred under concurrent commits saw the two documents from different
    commits). Nothing here depends on it: the counter is only trusted for a lease whose id it
    names, and every counter write sets token and lease id together, so a counter that names
    this lease holds this lease's token whenever it was read.
    """

    def __init__(self, lock: DeployLock, lease_snap: Any, counter_snap: Any) -> None:
        self.snap = lease_snap
        self.counter = counter_snap.to_dict() if counter_snap.exists else {}
        self.data: dict[str, Any] = lease_snap.to_dict() if lease_snap.exists else {}
        self.skewed = (
            lease_snap.exists
            and self.data.get("schema") == _SCHEMA
            and not self.data.get("token")
            and self.counter.get("lease_id") != self.data.get("lease_id")
        )
        self.status = None if self.skewed else lock._status_of(self)

    @property
    def exists(self) -> bool:
        return bool(self.snap.exists)

    @property
    def update_time(self) -> Any:
        return self.snap.update_time


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
        self._client = client
        self._ref = client.collection(collection).document(stack)
        self._counter = self._ref.collection(META_SUBCOLLECTION).document(COUNTER_ID)
        self._events = self._ref.collection(EVENTS_SUBCOLLECTION)
        self._timeout = rpc_timeout.total_seconds()
        # This object's last read found a lease document: its next acquire attempt reads first
        # (a waiter polls with one read, and takes over an expired lease in two round trips)
        # instead of trying a create that would fail. Only a hint: every write is conditioned.
        self._seen_taken = False
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

    def _read(self) -> _Read:
        """The lease document and the counter in one ``BatchGetDocuments`` (one round trip)."""

        def get_both(*, retry: Any, timeout: float) -> list[Any]:
            refs = [self._ref, self._counter]
            return list(self._client.get_all(refs, retry=retry, timeout=timeout))

        for _ in range(_SKEW_RETRIES):
            snaps = self._rpc(f"reading the lock of stack {self.stack!r}", get_both)
            by_path = {s.reference.path: s for s in snaps}
            read = _Read(self, by_path[self._ref.path], by_path[self._counter.path])
            if not read.skewed:
                return read
            time.sleep(0.01)
        read.status = self._status_of(read)  # raises: the counter names another lease
        return read

    def _commit(self, what: str, batch: Any) -> list[Any]:
        return self._rpc(f"{what} the lock of stack {self.stack!r}", batch.commit)

    def _status_of(self, read: _Read) -> LockStatus:
        snap, data, counter = read.snap, read.data, read.counter
        read_at = snap.read_time
        counter_token = int(counter.get("token") or 0)
        if not snap.exists:
            return LockStatus(
                stack=self.stack, exists=False, held=False, expired=False, token=counter_token,
                holder=None, lease_id=None, ttl=None, acquired_at=None, renewed_at=None,
                expires_at=None, read_at=read_at,
            )  # fmt: skip
        schema = data.get("schema")
        if schema == _LEGACY_SCHEMA:
            return self._legacy_status(snap, data)
        if schema != _SCHEMA:
            raise DeployLockError(f"lock document {self._ref.path} has unknown schema {schema!r}")
        ttl = timedelta(seconds=float(data["ttl_seconds"]))
        revoked = data.get("state") == "revoked"
        # A revoked lease keeps the validity it had: it expires TTL after its last renewal.
        renewed_at = data.get("lease_renewed_at") if revoked else snap.update_time
        expires_at = renewed_at + ttl
        expired = read_at >= expires_at
        return LockStatus(
            stack=self.stack,
            exists=True,
            held=not expired and not revoked,
            expired=expired,
            token=self._token_of(data, counter),
            holder=HolderInfo.from_dict(data.get("holder")),
            lease_id=data.get("lease_id"),
            ttl=ttl,
            acquired_at=data.get("acquired_at") or snap.create_time,
            renewed_at=renewed_at,
            expires_at=expires_at,
            read_at=read_at,
            revoked=revoked,
            revoked_by=data.get("revoked_by") if revoked else None,
            seq=int(data.get("seq") or 0),
        )

    def _token_of(self, data: dict[str, Any], counter: dict[str, Any]) -> int:
        if counter.get("lease_id") == data.get("lease_id") and counter.get("token"):
            return int(counter["token"])
        if data.get("token"):  # written by every write after the grant
            return int(data["token"])
        raise DeployLockError(
            f"lock document {self._ref.path} (lease {data.get('lease_id')!r}) has no token and "
            f"the counter {self._counter.path} names another lease "
            f"({counter.get('lease_id')!r}): was a document edited by hand?"
        )

    def _legacy_status(self, snap: Any, data: dict[str, Any]) -> LockStatus:
        ttl = timedelta(seconds=float(data["ttl_seconds"]))
        is_held = data.get("state") == "held"
        expires_at = snap.update_time + ttl if is_held else None
        live = is_held and snap.read_time < expires_at
        return LockStatus(
            stack=self.stack, exists=is_held, held=live, expired=is_held and not live,
            token=int(data.get("token") or 0), holder=HolderInfo.from_dict(data.get("holder")),
            lease_id=data.get("lease_id"), ttl=ttl,
            acquired_at=data.get("acquired_at") or snap.update_time if is_held else None,
            renewed_at=snap.update_time if is_held else None, expires_at=expires_at,
            read_at=snap.read_time, seq=-1,
        )  # fmt: skip

    def _event(self, event: str, token: int, holder: HolderInfo | None, *,
               lease_id: str | None, acquired_at: Any, **extra: Any) -> dict[str, Any]:  # fmt: skip
        return {
            "event": event,
            "stack": self.stack,
            "token": token,
            "holder": holder.to_dict() if holder else None,
            # The grant, so history can show the acquire this lease's create-commit did not write.
            "lease_id": lease_id,
            "acquired_at": acquired_at,
            **extra,
        }

    def _add_event(self, batch: Any, key: str, event: dict[str, Any]) -> None:
        event["key"] = key  # what history orders by
        batch.create(self._events.document(key), event)

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
        secret = new_holder_secret()
        # The lease's public id is the secret's SHA-256: what verifies the secret, and unique
        # (256 random bits), in one field less per commit. Showing it reveals nothing.
        lease_id = holder_digest(secret)
        fields = {
            "schema": _SCHEMA,
            "lease_id": lease_id,
            # Empty fields left out: the emulator's commit time grows with the fields written.
            "holder": {k: v for k, v in holder.to_dict().items() if v is not None},
            "ttl_seconds": self.ttl.total_seconds(),
        }
        status: LockStatus | None = None
        sent = clock()
        for _ in range(_MAX_CONFLICTS):
            if not self._seen_taken:
                # Free (the usual case): create-if-absent + counter increment, one commit.
                batch = self._client.batch()
                batch.create(self._ref, fields)
                batch.set(self._counter, {"token": firestore.Increment(1),
                                          "lease_id": lease_id}, merge=True)  # fmt: skip
                sent = clock()
                try:
                    results = self._commit("acquiring", batch)
                except _CONFLICTS:
                    pass  # held, expired or revoked: read and judge
                else:
                    token = int(results[1].transform_results[0].integer_value)
                    update_time = results[0].update_time
                    return self._new_lease(token, lease_id, secret, holder, update_time,
                                           update_time, sent, seq=0), None  # fmt: skip
            read = self._read()
            status = read.status
            self._seen_taken = read.exists
            if read.exists and read.data.get("lease_id") == lease_id:
                # Our commit landed although its reply was lost (a retried RPC); the safe time
                # counts from before that commit was sent.
                return self._new_lease(status.token, lease_id, secret, holder, status.acquired_at,
                                       read.update_time, sent, seq=status.seq), None  # fmt: skip
            if not read.exists:
                continue  # released between our commit and our read: create again
            if status.held or status.revoked and not status.expired:
                return None, status
            lease = self._take_over(read, lease_id, secret, holder, fields)
            if lease is not None:
                return lease, None
        assert status is not None
        if status.held or status.revoked:
            return None, status
        raise DeployLockError(
            f"gave up acquiring the lock of stack {self.stack!r} after {_MAX_CONFLICTS} "
            "conflicting writes"
        )

    def _take_over(self, read: _Read, lease_id: str, secret: str, holder: HolderInfo,
                   fields: dict[str, Any]) -> Lease | None:  # fmt: skip
        """Replace an expired lease (or a legacy document that is not held) with ours, in one
        commit conditioned on the version just read. None if someone else wrote first."""
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
        if read.data.get("schema") == _LEGACY_SCHEMA:
            for legacy in ("stack", "released_by"):
                data[legacy] = firestore.DELETE_FIELD
        batch = self._client.batch()
        option = self._client.write_option(last_update_time=read.update_time)
        batch.update(self._ref, data, option=option)
        # The counter already names the old lease: no other grant can happen without changing
        # the lease document, which the precondition forbids, so it goes from old to old + 1.
        batch.set(self._counter, {"token": token, "lease_id": lease_id}, merge=True)
        if old.exists:  # an expired lease, not a released legacy document
            event = self._event(
                "takeover", token, holder, lease_id=lease_id,
                acquired_at=firestore.SERVER_TIMESTAMP,
                previous_holder=old.holder.to_dict() if old.holder else None,
                previous_token=old.token, previous_lease_id=old.lease_id,
                # The grant it ends, for history: with no write of its own (seq 0) this event
                # is the only record of that acquire.
                previous_acquired_at=old.acquired_at, previous_seq=old.seq,
            )  # fmt: skip
        else:
            event = self._event(
                "acquire", token, holder, lease_id=lease_id, acquired_at=firestore.SERVER_TIMESTAMP
            )
        self._add_event(batch, _event_id(token, 0), event)
        sent = clock()
        try:
            results = self._commit("taking over", batch)
        except _CONFLICTS:
            return None
        update_time = results[0].update_time
        return self._new_lease(token, lease_id, secret, holder, update_time, update_time, sent,
                               seq=0)  # fmt: skip

    def _new_lease(
        self, token: int, lease_id: str, secret: str, holder: HolderInfo, acquired_at: Any,
        update_time: Any, sent: float, *, seq: int,
    ) -> Lease:  # fmt: skip
        return Lease(
            stack=self.stack,
            token=token,
            lease_id=lease_id,
            holder=holder,
            ttl=self.ttl,
            acquired_at=acquired_at,
            expires_at=update_time + self.ttl,
            holder_secret=secret,
            safe_until=sent + (self.ttl - self.margin).total_seconds(),
            _update_time=update_time,
            _seq=seq,
        )

    # -- verify, renew, release -----------------------------------------------------------------

    def _check_holder(self, lease: Lease, read: _Read) -> None:
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
        self._check_safe_time(lease)
        read = self._read()
        self._check_holder(lease, read)
        if read.status.expired:
            raise LeaseLost(lease, read.status, "it expired (not renewed within its TTL)")
        self._check_safe_time(lease)
        return read.status

    def _check_safe_time(self, lease: Lease) -> None:
        late = clock() - lease.safe_until
        if lease.safe_until and late >= 0:
            raise LeaseLost(
                lease, None,
                f"its safe time passed {late:.1f} s ago (no renewal confirmed within TTL - "
                f"{self.margin.total_seconds():g} s): another client may take it over",
            )  # fmt: skip

    def _write_as_holder(self, lease: Lease, what: str, event_name: str,
                         make: Callable[[int], dict[str, Any] | None],
                         *, allow_revoked: bool = False) -> tuple[Any, float]:  # fmt: skip
        """Write ``make(seq)`` (the lease fields, or None to delete it) and its history event
        as ``lease``'s holder, in one round trip when nothing changed since this holder's last
        write. Returns the commit's update time and the local send time."""
        update_time, seq = lease._update_time, lease._seq
        for _ in range(_MAX_CONFLICTS):
            if update_time is None:
                read = self._read()
                try:
                    self._check_holder(lease, read)
                except LeaseLost:
                    if not (allow_revoked and read.exists and read.status.revoked
                            and read.data.get("lease_id") == lease.lease_id
                            and digest_matches(lease.holder_secret,
                                               read.data.get("lease_id"))):  # fmt: skip
                        raise
                update_time, seq = read.update_time, read.status.seq
            fields = make(seq + 1)
            batch = self._client.batch()
            option = self._client.write_option(last_update_time=update_time)
            if fields is None:
                batch.delete(self._ref, option=option)
            else:
                batch.update(self._ref, fields, option=option)
            event = self._event(event_name, lease.token, lease.holder, lease_id=lease.lease_id,
                                acquired_at=lease.acquired_at)  # fmt: skip
            self._add_event(batch, _event_id(lease.token, seq + 1), event)
            sent = clock()
            try:
                results = self._commit(what, batch)
            except _CONFLICTS:
                update_time = None  # changed since: re-read and check we still hold it
                continue
            lease._update_time, lease._seq = results[0].update_time, seq + 1
            return results[0].update_time, sent
        raise DeployLockError(
            f"gave up {what} the lock of stack {self.stack!r} after {_MAX_CONFLICTS} "
            "conflicting writes"
        )

    def renew(self, lease: Lease) -> Lease:
        """Extend ``lease`` by the TTL from now (Firestore time); updates and returns it, with
        its ``safe_until`` moved to this renewal's send time + TTL - margin.

        Succeeds while the lease is the current one, including after it expired if nobody took
        it over meanwhile (no one else held the lock, so exclusivity was never broken).

        :raises LeaseLost: taken over, force-released or released: stop at once.
        :raises LockUnavailable: Firestore unreachable (the lease may still expire: retry
            before ``lease.safe_until``).
        """
        if lease._released:
            raise LeaseLost(lease, None, "it was already released by its holder")

        def make(seq: int) -> dict[str, Any]:
            # The write moves update_time (the expiry); the token is kept in the document too.
            return {"seq": seq, "token": lease.token, "acquired_at": lease.acquired_at}

        update_time, sent = self._write_as_holder(lease, "renewing", "renew", make)
        lease.expires_at = update_time + lease.ttl
        lease.safe_until = sent + (lease.ttl - self.margin).total_seconds()
        return lease

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
        if lease._released:
            return False
        revoked: list[LockStatus] = []

        def make(seq: int) -> None:
            return None

        try:
            self._write_as_holder(lease, "releasing", "release", make)
        except LeaseLost as exc:
            if exc.status is not None and exc.status.revoked and self._ack_revoked(lease, exc):
                revoked.append(exc.status)
            elif exc.why == "it was already released":
                lease._released = True
                return False
            if not revoked:
                raise
        lease._released = True
        lease._update_time = None
        self._seen_taken = False
        if revoked:
            by = revoked[0].revoked_by or {}
            raise LeaseLost(
                lease, revoked[0],
                f"force-released by {by.get('who', '?')}: {by.get('reason', '')} (released now "
                "that the command stopped: the lock is free)",
            )  # fmt: skip
        return True

    def _ack_revoked(self, lease: Lease, exc: LeaseLost) -> bool:
        """Delete our own revoked lease document (the holder confirms it stopped)."""
        try:
            self._write_as_holder(lease, "releasing", "release", lambda seq: None,
                                  allow_revoked=True)  # fmt: skip
        except LeaseLost:
            return False
        return True

    def lease_for(self, token: int, holder_secret: str | None, *,
                  by: HolderInfo | None = None, action: str = "release") -> Lease:  # fmt: skip
        """The lease with fencing token ``token``, to renew or release it from another process
        than the one that acquired it (the CLI's ``renew``/``release``), given its holder
        secret (what ``acquire`` printed).

        :raises NotHolder: no secret, or the wrong one: refused, and the attempt is recorded
            in the history as ``{action}-refused`` with who tried (``by``).
        :raises LeaseLost: ``token`` is not the current lease (superseded, released).
        """
        read = self._read()
        status = read.status
        if not read.exists or status.token != token:
            stub = Lease(
                stack=self.stack, token=token, lease_id="", holder=HolderInfo(who="?", host="?",
                pid=0), ttl=self.ttl, acquired_at=status.read_at, expires_at=status.read_at,
                holder_secret="",
            )  # fmt: skip
            if not read.exists and status.token == token:
                raise LeaseLost(stub, status, "it was already released")
            self._check_holder(stub, read)  # raises LeaseLost naming the current holder
        if not digest_matches(holder_secret, read.data.get("lease_id")):
            why = "no holder secret given" if not holder_secret else "the holder secret is wrong"
            self._record_refused(read, action, why, by or HolderInfo.detect())
            raise NotHolder(
                self.stack, token,
                f"{why}; only the process that acquired the lease knows it (acquire printed "
                "it); to take the lock from its holder use force-release with a reason",
            )  # fmt: skip
        assert status.holder is not None and status.ttl is not None
        return Lease(
            stack=self.stack, token=token, lease_id=str(read.data["lease_id"]),
            holder=status.holder, ttl=status.ttl, acquired_at=status.acquired_at,
            expires_at=status.expires_at, holder_secret=str(holder_secret),
            # Another process: no safe time of its own (it never timed a write of this lease).
            # A revoked lease is written only after a read that reports the revocation.
            safe_until=0.0, _update_time=None if status.revoked else read.update_time,
            _seq=status.seq,
        )  # fmt: skip

    def _record_refused(self, read: _Read, action: str, why: str, by: HolderInfo) -> None:
        status = read.status
        event = self._event(
            f"{action}-refused", status.token, status.holder, lease_id=status.lease_id,
            acquired_at=status.acquired_at, by=f"{by.who}@{by.host}", reason=why,
            attempted_by=by.to_dict(),
        )  # fmt: skip
        key = f"{_event_id(status.token, status.seq)}-{secrets.token_hex(4)}"
        event["key"] = key
        self._rpc("recording a refused attempt on", self._events.document(key).create, event)

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
        for _ in range(_MAX_CONFLICTS):
            read = self._read()
            status = read.status
            if not status.exists:
                return None
            seq = status.seq + 1
            batch = self._client.batch()
            option = self._client.write_option(last_update_time=read.update_time)
            revoked_by = {"who": by.who, "host": by.host, "reason": reason}
            if read.data.get("schema") == _LEGACY_SCHEMA:
                # Tokens must go on from the legacy document's, which held the only count.
                batch.delete(self._ref, option=option)
                batch.set(self._counter, {"token": status.token, "lease_id": None}, merge=True)
            elif status.expired or now:
                batch.delete(self._ref, option=option)
            elif status.revoked:
                return status  # already told to stop; it frees itself or expires
            else:
                batch.update(self._ref, {
                    "state": "revoked", "revoked_by": revoked_by, "seq": seq,
                    "token": status.token, "lease_renewed_at": read.update_time,
                }, option=option)  # fmt: skip
            event = self._event(
                "force-release", status.token, status.holder, lease_id=status.lease_id,
                acquired_at=status.acquired_at, by=by.who, reason=reason,
                previous_holder=status.holder.to_dict() if status.holder else None,
                previous_token=status.token, immediate=bool(now and not status.expired),
            )  # fmt: skip
            self._add_event(batch, _event_id(status.token, max(seq, 1)), event)
            try:
                self._commit("force-releasing", batch)
            except _CONFLICTS:
                continue
            return status
        raise DeployLockError(f"gave up force-releasing stack {self.stack!r}: too many conflicts")

    def status(self) -> LockStatus:
        """The lock as Firestore has it now (holder, token, expiry), without acquiring it."""
        return self._read().status

    def history(self, limit: int = 20) -> list[LockEvent]:
        """The last ``limit`` events, newest first: ``acquire`` (or ``takeover``), ``renew``,
        ``release``, ``force-release`` and refused attempts.

        A lease granted by a plain create wrote no event (one round trip); its ``acquire`` is
        shown from the lease document while it has no later event, then from the holder and
        grant time every later event of that lease carries.
        """
        if not isinstance(limit, int) or limit < 1:
            raise InvalidLockConfig(f"history limit must be a positive integer, got {limit!r}")
        # By the ``key`` field (the document id): the emulator cannot scan ``__name__``
        # descending, and a single-field index is automatic in Firestore.
        query = self._events.order_by("key", direction=firestore.Query.DESCENDING).limit(limit)
        docs = self._rpc(f"reading the history of stack {self.stack!r}", query.get)
        events: list[LockEvent] = []
        firsts: dict[int, dict[str, Any]] = {}  # token -> its seq-1 event: shows the acquire
        stored: set[tuple[int, int]] = set()  # (token, seq) of the lease's own writes
        for doc in docs:
            d = doc.to_dict()
            token, _, rest = doc.id.partition("-")
            seq = int(rest.split("-")[0])
            events.append(self._to_event(d, int(token), seq, doc.create_time))
            if "-" not in rest:  # not a refused attempt (those add a random suffix)
                stored.add((int(token), seq))
                if seq == 1:
                    firsts[int(token)] = d
                if d.get("event") == "takeover" and d.get("previous_seq") == 0:
                    firsts.setdefault(int(d["previous_token"]), {
                        "holder": d.get("previous_holder"),
                        "acquired_at": d.get("previous_acquired_at"),
                        "lease_id": d.get("previous_lease_id"),
                    })  # fmt: skip
        for token, d in firsts.items():
            if (token, 0) not in stored:
                events.append(self._acquire_event(token, d.get("holder"), d.get("acquired_at"),
                                                  d.get("lease_id")))  # fmt: skip
        read = self._read()
        if read.exists and read.data.get("schema") == _SCHEMA:
            st = read.status
            if st.seq == 0 and (st.token, 0) not in stored:
                events.append(self._acquire_event(st.token, read.data.get("holder"),
                                                  st.acquired_at, st.lease_id))  # fmt: skip
        events.sort(key=lambda e: (e.token, e.seq, e.at or read.status.read_at), reverse=True)
        return events[:limit]

    def _acquire_event(self, token: int, holder: Any, at: Any, lease_id: Any) -> LockEvent:
        return LockEvent(
            seq=0, event="acquire", stack=self.stack, token=token, at=at,
            holder=HolderInfo.from_dict(holder) if holder else None, lease_id=lease_id,
        )  # fmt: skip

    def _to_event(self, d: dict[str, Any], token: int, seq: int, at: Any) -> LockEvent:
        def who(value: Any) -> HolderInfo | None:
            return HolderInfo.from_dict(value) if value else None

        return LockEvent(
            seq=seq,
            event=d["event"],
            stack=d.get("stack", self.stack),
            token=token,
            at=at,
            holder=who(d.get("holder")),
            by=d.get("by"),
            reason=d.get("reason"),
            previous_holder=who(d.get("previous_holder")),
            previous_token=d.get("previous_token"),
            lease_id=d.get("lease_id"),
            immediate=bool(d.get("immediate")),
        )

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


class Heartbeat:
    """Renews a lease in a daemon thread, and watches its safe time in another, until stopped
    or the lease is lost."""

    def __init__(
        self,
        lock: DeployLock,
        lease: Lease,
        *,
        interval: timedelta | None = None,
        stop_before: timedelta = timedelta(0),
        on_lost: LostCallback | None = None,
        on_renewed: RenewedCallback | None = None,
    ) -> None:
        self.lock = lock
        self.lease = lease
        self.interval = interval or lease.ttl / HEARTBEAT_FRACTION
        if self.interval <= timedelta(0) or self.interval >= lease.ttl:
            raise InvalidLockConfig(
                f"heartbeat interval must be positive and shorter than the TTL ({lease.ttl}), "
                f"got {self.interval}"
            )
        self.stop_before = stop_before.total_seconds()
        self.lost = threading.Event()
        self.error: LeaseLost | None = None
        self.renewals = 0
        self._on_lost = on_lost
        self._on_renewed = on_renewed
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._lose_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> Heartbeat:
        if not self._threads:
            name = f"deploy-lock-{self.lease.stack}"
            self._threads = [
                threading.Thread(target=self._renew_loop, name=f"{name}-renew", daemon=True),
                threading.Thread(target=self._deadline_loop, name=f"{name}-safe", daemon=True),
            ]
            for t in self._threads:
                t.start()
        return self

    def stop(self) -> None:
        """Stop renewing (waits for an in-flight renewal). Does not release the lease."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the lease was found lost, or its safe time has passed
        (no read: this process's own knowledge)."""
        if self.error is not None:
            raise self.error
        self.lock._check_safe_time(self.lease)

    def verify(self) -> LockStatus:
        """:meth:`check`, then :meth:`DeployLock.verify` (a read): call before each mutation."""
        self.check()
        return self.lock.verify(self.lease)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _renew_loop(self) -> None:
        interval = self.interval.total_seconds()
        poll = REVOCATION_POLL.total_seconds()
        margin_ttl = (self.lease.ttl - self.lock.margin).total_seconds()
        next_renew = self.lease.safe_until - margin_ttl + interval
        next_poll = clock() + poll
        while not self.lost.is_set():
            wake = min(next_renew, next_poll)
            if self._stop.wait(max(0.0, wake - clock())):
                return
            now = clock()
            if now >= next_renew:
                try:
                    self.lock.renew(self.lease)
                except LeaseLost as exc:
                    self._lose(exc)
                    return
                except Exception:  # LockUnavailable and the like: retry soon
                    next_renew = clock() + max(0.05, interval / 4)
                    continue
                self.renewals += 1
                next_renew = self.lease.safe_until - margin_ttl + interval
                next_poll = clock() + poll
                with self._changed:
                    self._changed.notify_all()
                if self._on_renewed is not None and not self._stop.is_set():
                    self._on_renewed(self.lease)
            else:
                try:
                    self.lock._check_holder(self.lease, self.lock._read())
                except LeaseLost as exc:
                    self._lose(exc)
                    return
                except Exception:  # unreachable: the safe-time watch covers it
                    pass
                next_poll = clock() + poll

    def _deadline_loop(self) -> None:
        with self._changed:
            while not self._stop.is_set() and not self.lost.is_set():
                left = self.lease.safe_until - self.stop_before - clock()
                if left <= 0:
                    break
                # Re-checked at least every 0.5 s: a Condition waits on CLOCK_MONOTONIC,
                # which does not count a suspended machine's sleep; clock() does.
                self._changed.wait(min(left, 0.5))
            else:
                return
        self._lose(
            LeaseLost(
                self.lease,
                None,
                f"no renewal confirmed in time: its safe time ends in "
                f"{max(0.0, self.lease.safe_until - clock()):.1f} s (Firestore unreachable?)",
            )  # fmt: skip
        )

    def _lose(self, exc: LeaseLost) -> None:
        with self._lose_lock:
            if self.error is not None:
                return
            self.error = exc
            self.lost.set()
        with self._changed:
            self._changed.notify_all()
        if self._on_lost is not None:
            self._on_lost(exc)
