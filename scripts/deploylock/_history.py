"""Reading a lock's history: its events, newest first, with the acquires no event recorded.

A lease granted by a plain create wrote no event (one round trip); its ``acquire`` is shown
from the lease document while it has no later event, then from the holder and grant time
every later event of that lease carries (a ``takeover`` carries the grant it ends).
"""

from __future__ import annotations

from typing import Any

from google.cloud import firestore

from ._documents import SCHEMA, LockDocuments
from ._holder import HolderInfo
from ._records import LockEvent


def read_history(docs: LockDocuments, limit: int) -> list[LockEvent]:
    """The last ``limit`` events, newest first (see :meth:`DeployLock.history`)."""
    # By the ``key`` field (the document id): the emulator cannot scan ``__name__``
    # descending, and a single-field index is automatic in Firestore.
    query = docs.events.order_by("key", direction=firestore.Query.DESCENDING).limit(limit)
    snaps = docs.rpc(f"reading the history of stack {docs.stack!r}", query.get)
    events: list[LockEvent] = []
    firsts: dict[int, dict[str, Any]] = {}  # token -> its seq-1 event: shows the acquire
    stored: set[tuple[int, int]] = set()  # (token, seq) of the lease's own writes
    for doc in snaps:
        d = doc.to_dict()
        token, _, rest = doc.id.partition("-")
        seq = int(rest.split("-")[0])
        events.append(_to_event(docs.stack, d, int(token), seq, doc.create_time))
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
            events.append(_acquire_event(docs.stack, token, d.get("holder"),
                                         d.get("acquired_at"), d.get("lease_id")))  # fmt: skip
    read = docs.read()
    if read.exists and read.data.get("schema") == SCHEMA:
        st = read.status
        if st.seq == 0 and (st.token, 0) not in stored:
            events.append(_acquire_event(docs.stack, st.token, read.data.get("holder"),
                                         st.acquired_at, st.lease_id))  # fmt: skip
    events.sort(key=lambda e: (e.token, e.seq, e.at or read.status.read_at), reverse=True)
    return events[:limit]


def _acquire_event(stack: str, token: int, holder: Any, at: Any, lease_id: Any) -> LockEvent:
    return LockEvent(
        seq=0, event="acquire", stack=stack, token=token, at=at,
        holder=HolderInfo.from_dict(holder) if holder else None, lease_id=lease_id,
    )  # fmt: skip


def _to_event(stack: str, d: dict[str, Any], token: int, seq: int, at: Any) -> LockEvent:
    def who(value: Any) -> HolderInfo | None:
        return HolderInfo.from_dict(value) if value else None

    return LockEvent(
        seq=seq,
        event=d["event"],
        stack=d.get("stack", stack),
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
