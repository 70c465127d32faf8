"""Deployment records in Firestore (collection ``deployments``): what ran, when, with what result.

One document per deploy or rollback, created when the lock is held and before anything
changes (result ``running``), and finished exactly once with its result. A record left
``running`` means the process died without reaching its ``finally``: the lock's lease expiry
covers the lock, and the record says which run to look at.

Real Firestore needs a composite index for :meth:`DeploymentHistory.list` (``stack`` ASC,
``started_at`` DESC); the bootstrap program declares it beside the lock's database.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ._errors import DeployError

__all__ = [
    "COLLECTION",
    "Result",
    "Deployment",
    "DeploymentHistory",
    "last_good",
    "new_deployment_id",
]

COLLECTION = "deployments"
#: How many records ``deploy history`` shows by default.
DEFAULT_HISTORY_LIMIT = 20


class Result(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM or the lease lost mid-apply


@dataclass
class Deployment:
    """A deployment record; field names are the Firestore document's."""

    id: str
    stack: str
    commit: str
    who: str
    kind: str = "deploy"  # "deploy" | "rollback"
    images: dict[str, str] = field(default_factory=dict)  # service -> repo/path@sha256:...
    image_tags: dict[str, str] = field(default_factory=dict)  # service -> content-hash tag
    result: str = Result.RUNNING
    started_at: datetime | None = None
    ended_at: datetime | None = None
    lock_token: int | None = None
    builder: str | None = None
    ci_run_url: str | None = None
    host: str | None = None
    rollback_of: str | None = None
    summary: dict[str, int] = field(default_factory=dict)  # Pulumi update: op -> count
    error: str | None = None
    instructions: str | None = None  # what to do next (interrupted runs)
    verification: list[dict[str, Any]] = field(default_factory=list)
    check: dict[str, Any] | None = None  # the post-deploy synthetic batch's verdict
    rollout: list[dict[str, Any]] = field(default_factory=list)  # traffic steps per service
    warnings: list[str] = field(default_factory=list)  # e.g. notifications not delivered
    automatic: bool = False  # a rollback the pipeline started itself after a failed check
    rolled_back_by: str | None = None  # the automatic rollback's record, on a failed deploy

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Deployment:
        known = {f for f in cls.__dataclass_fields__}
        data = {k: v for k, v in doc.items() if k in known}
        return cls(**data)

    @property
    def digests(self) -> dict[str, str]:
        """service -> ``sha256:...`` part of each image reference."""
        return {s: ref.rpartition("@")[2] for s, ref in self.images.items() if "@" in ref}


def last_good(history: DeploymentHistory, stack: str, *, exclude: str | None = None):
    """The newest succeeded deployment of ``stack`` (other than ``exclude``), or None."""
    for d in history.list(stack, limit=50):
        if d.result == Result.SUCCEEDED and d.id != exclude:
            return d
    return None


def new_deployment_id(stack: str, now: datetime | None = None) -> str:
    """``<stack>-<UTC yyyymmddThhmmss>-<4 random hex>``: sortable, readable, unique."""
    now = now or datetime.now(UTC)
    return f"{stack}-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


class DeploymentHistory:
    """Deployment records over an official ``google.cloud.firestore.Client``."""

    def __init__(self, client: Any, *, collection: str = COLLECTION) -> None:
        self._client = client
        self._col = client.collection(collection)

    def start(self, deployment: Deployment) -> Deployment:
        """Create the record (result ``running``, ``started_at`` from Firestore's clock)."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        doc = deployment.to_doc()
        doc["result"] = str(Result.RUNNING)
        doc["started_at"] = firestore.SERVER_TIMESTAMP
        doc["ended_at"] = None
        try:
            self._col.document(deployment.id).create(doc)
        except gexc.AlreadyExists:
            raise DeployError(f"deployment record {deployment.id} already exists") from None
        except gexc.GoogleAPICallError as exc:
            raise DeployError(f"cannot record deployment {deployment.id}: {exc}") from None
        return self.get(deployment.id)

    def finish(self, deployment_id: str, result: Result, **fields: Any) -> Deployment:
        """Set the result, ``ended_at`` and any other fields (summary, error, images...)."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        update = {**fields, "result": str(result), "ended_at": firestore.SERVER_TIMESTAMP}
        ref = self._col.document(deployment_id)
        try:
            ref.update(update)  # update() requires the document to exist
        except gexc.NotFound:
            raise DeployError(f"no deployment record {deployment_id}") from None
        except gexc.GoogleAPICallError as exc:
            raise DeployError(f"cannot finish deployment record {deployment_id}: {exc}") from None
        return self.get(deployment_id)

    def get(self, deployment_id: str) -> Deployment:
        snap = self._col.document(deployment_id).get()
        if not snap.exists:
            raise DeployError(f"no deployment record '{deployment_id}'")
        return Deployment.from_doc(snap.to_dict())

    def list(self, stack: str, *, limit: int = DEFAULT_HISTORY_LIMIT) -> list[Deployment]:
        """The stack's records, newest first."""
        from google.cloud import firestore
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self._col.where(filter=FieldFilter("stack", "==", stack))
            .order_by("started_at", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return [Deployment.from_doc(s.to_dict()) for s in query.stream()]

    def last_successful(self, stack: str, *, before: str | None = None) -> Deployment | None:
        """The newest succeeded record of ``stack`` (older than record ``before`` if given)."""
        seen_before = before is None
        for dep in self.list(stack, limit=200):
            if not seen_before:
                seen_before = dep.id == before
                continue
            if dep.result == Result.SUCCEEDED:
                return dep
        return None
