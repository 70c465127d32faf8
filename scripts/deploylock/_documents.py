"""The lock's Firestore documents: their layout, the one door every call goes through, and
reading them into a :class:`LockStatus`.

Layout (collection ``deploy_locks`` by default)::

    deploy_locks/{stack}                      the lease, only while held: lease_id (the holder
                                              secret's SHA-256), holder, ttl_seconds, seq, ...
    deploy_locks/{stack}/meta/tokens          the counter: last fencing token and its lease_id
    deploy_locks/{stack}/events/{token}-{seq} append-only history, ordered by document id

**Every write but a free acquire is conditioned** on the lease document being unchanged since
it was read or last written (``last_update_time``), in one batched commit (not a transaction:
Google's emulator stalls on concurrent ones) with the ``create`` of its history event. Two
writers can never both succeed from the same version, and history can neither miss nor
duplicate a change.

**Time is always Firestore's** for expiry: a lease expires ``ttl`` after its document's
``update_time`` (last grant or renewal), judged against the ``read_time`` of the read that
observed it. The caller's clock is used only for durations: the *safe time* of a lease
(:attr:`Lease.safe_until`: the send time of its last confirmed write + TTL - margin, on the
holder's own clock, never compared with another machine's), waiting, heartbeat periods.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import firestore

from ._defaults import EVENTS_SUBCOLLECTION
from ._errors import DeployLockError, LockUnavailable
from ._holder import HolderInfo
from ._records import LockStatus

SCHEMA = 2
#: The layout before this one: a lease document that always existed (state held/released)
#: with its token inside. Read, and migrated by the first acquire that finds it free.
LEGACY_SCHEMA = 1
META_SUBCOLLECTION = "meta"
COUNTER_ID = "tokens"
#: A write that loses a race re-reads and tries again at most this many times; each retry
#: means another writer made progress, so this only bounds pathological churn.
MAX_CONFLICTS = 16
#: Reads that saw the counter name another lease than the lease document (the emulator's
#: batch get is not one snapshot) are repeated this often before the documents are declared
#: inconsistent (edited by hand).
_SKEW_RETRIES = 5
# Another writer got in between our read and our write (or our own retried write landed).
CONFLICTS = (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted)


def event_id(token: int, seq: int) -> str:
    return f"{token:012d}-{seq:06d}"


class LockRead:
    """One read of the lease document and the counter.

    Firestore reads both at one ``read_time``; Google's emulator does not always (measured:
    a few reads in a hundred under concurrent commits saw the two documents from different
    commits). Nothing here depends on it: the counter is only trusted for a lease whose id it
    names, and every counter write sets token and lease id together, so a counter that names
    this lease holds this lease's token whenever it was read.
    """

    def __init__(self, docs: LockDocuments, lease_snap: Any, counter_snap: Any) -> None:
        self.snap = lease_snap
        self.counter = counter_snap.to_dict() if counter_snap.exists else {}
        self.data: dict[str, Any] = lease_snap.to_dict() if lease_snap.exists else {}
        self.skewed = (
            lease_snap.exists
            and self.data.get("schema") == SCHEMA
            and not self.data.get("token")
            and self.counter.get("lease_id") != self.data.get("lease_id")
        )
        self.status = None if self.skewed else docs.status_of(self)

    @property
    def exists(self) -> bool:
        return bool(self.snap.exists)

    @property
    def update_time(self) -> Any:
        return self.snap.update_time


class LockDocuments:
    """The documents of one stack's lock, and every Firestore call made on them: explicit
    timeouts, errors mapped to :class:`LockUnavailable`, bounded retries."""

    def __init__(
        self,
        client: firestore.Client,
        *,
        stack: str,
        collection: str,
        rpc_timeout: timedelta,
        retry_deadline: timedelta,
    ) -> None:
        self.stack = stack
        self.client = client
        self.ref = client.collection(collection).document(stack)
        self.counter = self.ref.collection(META_SUBCOLLECTION).document(COUNTER_ID)
        self.events = self.ref.collection(EVENTS_SUBCOLLECTION)
        self._timeout = rpc_timeout.total_seconds()
        # Only "unavailable" is retried, briefly: it is what a dead or restarting server gives.
        self._retry = gretry.Retry(
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            predicate=gretry.if_exception_type(gexc.ServiceUnavailable),
            timeout=retry_deadline.total_seconds(),
        )

    # -- Firestore calls, with explicit timeouts and errors mapped to LockUnavailable ---------

    def rpc(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, retry=self._retry, timeout=self._timeout, **kwargs)
        except CONFLICTS:
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
        target = getattr(self.client, "_emulator_host", None) or "firestore.googleapis.com"
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"Firestore unavailable while {what} (project {self.client.project!r}, "
            f"database {self.client._database!r}, at {target}): {message}"
        )

    def read(self) -> LockRead:
        """The lease document and the counter in one ``BatchGetDocuments`` (one round trip)."""

        def get_both(*, retry: Any, timeout: float) -> list[Any]:
            refs = [self.ref, self.counter]
            return list(self.client.get_all(refs, retry=retry, timeout=timeout))

        for _ in range(_SKEW_RETRIES):
            snaps = self.rpc(f"reading the lock of stack {self.stack!r}", get_both)
            by_path = {s.reference.path: s for s in snaps}
            read = LockRead(self, by_path[self.ref.path], by_path[self.counter.path])
            if not read.skewed:
                return read
            time.sleep(0.01)
        read.status = self.status_of(read)  # raises: the counter names another lease
        return read

    def commit(self, what: str, batch: Any) -> list[Any]:
        return self.rpc(f"{what} the lock of stack {self.stack!r}", batch.commit)

    def conditioned_batch(self, read_update_time: Any) -> tuple[Any, Any]:
        """A new batch, and the write option that conditions it on the lease document's
        ``update_time`` (the version last read or written)."""
        return self.client.batch(), self.client.write_option(last_update_time=read_update_time)

    # -- the documents as a LockStatus ----------------------------------------------------------

    def status_of(self, read: LockRead) -> LockStatus:
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
        if schema == LEGACY_SCHEMA:
            return self._legacy_status(snap, data)
        if schema != SCHEMA:
            raise DeployLockError(f"lock document {self.ref.path} has unknown schema {schema!r}")
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
            f"lock document {self.ref.path} (lease {data.get('lease_id')!r}) has no token and "
            f"the counter {self.counter.path} names another lease "
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

    # -- history events -------------------------------------------------------------------------

    def event(self, event: str, token: int, holder: HolderInfo | None, *,
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

    def add_event(self, batch: Any, key: str, event: dict[str, Any]) -> None:
        event["key"] = key  # what history orders by
        batch.create(self.events.document(key), event)
