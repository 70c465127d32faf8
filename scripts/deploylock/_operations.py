"""What the ``deploy-lock`` commands do, over the lock: open it for a stack, renew or release a
lease named by its fencing token, one line per history event."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ._errors import LeaseLost, LockUnavailable
from ._lock import DeployLock
from ._records import Lease, LockEvent, LockStatus


def lock_client(project: str | None, database: str, stack: str) -> Any:
    """The Firestore client of ``stack``'s lock: the running local platform's for the local
    stack (no emulator, no project given), the emulator when ``FIRESTORE_EMULATOR_HOST`` is set,
    else Google's with Application Default Credentials. Raises what the client raises
    (``scripts.local.NotRunning``, ``DefaultCredentialsError``, ...)."""
    from scripts.local import LOCAL_STACK

    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if stack == LOCAL_STACK and not emulator and not project:
        # The local platform's lock: the Firestore and project `deploy --stack local` use.
        from scripts.local import running_firestore

        return running_firestore(database)
    if emulator:
        from scripts.emulators import firestore_client

        return firestore_client(emulator, project or "demo-local", database=database)
    from google.cloud import firestore

    return firestore.Client(project=project, database=database)


def open_lock(*, project: str | None, database: str, stack: str, ttl: timedelta) -> DeployLock:
    """The lock of ``stack`` on :func:`lock_client`'s Firestore. Raises :class:`LockUnavailable`
    saying what to do when no client can be made (local platform not running, no credentials)."""
    from scripts.local import NotRunning

    try:
        client = lock_client(project, database, stack)
    except NotRunning as exc:
        raise LockUnavailable(str(exc)) from None
    except Exception as exc:  # DefaultCredentialsError, "project could not be determined"
        raise LockUnavailable(
            f"cannot create a Firestore client: {exc}. Run `gcloud auth application-default "
            "login` (or set GOOGLE_APPLICATION_CREDENTIALS) and pass --project; for the "
            "emulator set FIRESTORE_EMULATOR_HOST."
        ) from None
    return DeployLock(client, stack=stack, ttl=ttl)


def release_token(lock: DeployLock, token: int, secret: str | None) -> bool:
    """Release the lease with ``token``, proven by its holder ``secret``: True if this released
    it, False if it was already released. Raises :class:`NotHolder` without the right secret,
    :class:`LeaseLost` if it is no longer the current lease."""
    try:
        lease = lock.lease_for(token, secret, action="release")
    except LeaseLost as exc:
        if exc.why != "it was already released":
            raise
        return False
    return lock.release(lease)


def renew_token(lock: DeployLock, token: int, secret: str | None) -> Lease:
    """Extend the lease with ``token`` by its TTL, proven by its holder ``secret``; raises as
    :func:`release_token` does."""
    return lock.renew(lock.lease_for(token, secret, action="renew"))


def once_per_holder(show: Callable[[LockStatus], None]) -> Callable[[LockStatus], None]:
    """An ``on_wait`` callback calling ``show`` once per holder (fencing token), not per poll."""
    last: dict[str, int] = {}

    def on_wait(status: LockStatus) -> None:
        if last.get("token") != status.token:
            last["token"] = status.token
            show(status)

    return on_wait


def event_row(ev: LockEvent) -> tuple[str, str, str, str, str, str]:
    """One history event as text: seq, time (UTC), event, token, holder, details."""
    details = ""
    if ev.event == "force-release":
        details = f"by {ev.by}{' (--now)' if ev.immediate else ''}: {ev.reason}"
    elif ev.event == "takeover" and ev.previous_holder:
        details = f"expired lease {ev.previous_token} of {ev.previous_holder.who}"
    elif ev.event.endswith("-refused"):
        details = f"by {ev.by}: {ev.reason}"
    return (
        str(ev.seq),
        f"{ev.at:%Y-%m-%d %H:%M:%S}" if ev.at else "?",
        ev.event,
        str(ev.token),
        f"{ev.holder.who}@{ev.holder.host}" if ev.holder else "",
        details,
    )
