"""The per-type lookups through Google's official clients, each a small adapter.

Credentials are resolved once, up front, with a bound (:func:`resolve_credentials`): off GCP
``google.auth.default`` probes the metadata server, which is kept to one short probe
(``GCE_METADATA_DETECT_RETRIES=1``) but never skipped: on Cloud Build the metadata server is
the only credential source, so ``NO_GCE_CHECK`` is left to the caller (tests set it). Without
credentials every cloud-only type answers "could not check: no credentials". Every call has
a short timeout and no retry, so a missing API or an unreachable endpoint fails fast.

``PUBSUB_EMULATOR_HOST`` / ``FIRESTORE_EMULATOR_HOST``: Google's clients talk to the emulator
by themselves when those are set; the lookups then use ``AnonymousCredentials`` for them.
The Firestore emulator serves any database id on first use, so a reachable emulator counts
as the database existing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policy.graph import Resource

from ._report import Check, Lookup, absent, exists, unchecked

__all__ = [
    "CALL_TIMEOUT_S",
    "CREDENTIALS_TIMEOUT_S",
    "Credentials",
    "GoogleLookups",
    "NO_CREDENTIALS",
    "resolve_credentials",
]

#: Per call: a lookup is one small GET; long enough for a slow link, short enough not to hang.
CALL_TIMEOUT_S = 10.0
#: ``google.auth.default`` with one metadata probe (3 s by default) fits well inside this.
CREDENTIALS_TIMEOUT_S = 8.0
NO_CREDENTIALS = (
    "no credentials (run `gcloud auth application-default login` or set "
    "GOOGLE_APPLICATION_CREDENTIALS)"
)
PUBSUB_EMULATOR = "PUBSUB_EMULATOR_HOST"
#: Pub/Sub kind (also the request's key) -> (client cache key, client class, get method).
_PUBSUB_GET = {
    "topic": ("publisher", "PublisherClient", "get_topic"),
    "subscription": ("subscriber", "SubscriberClient", "get_subscription"),
}
FIRESTORE_EMULATOR = "FIRESTORE_EMULATOR_HOST"


@dataclass(frozen=True)
class Credentials:
    """The result of the one credential lookup: ``credentials`` or ``problem``."""

    credentials: Any = None
    problem: str = ""


def resolve_credentials(
    *, timeout_s: float = CREDENTIALS_TIMEOUT_S, auth_default: Callable[[], Any] | None = None
) -> Credentials:
    """Application Default Credentials, looked up once within ``timeout_s``; never raises."""
    os.environ.setdefault("GCE_METADATA_DETECT_RETRIES", "1")
    import google.auth  # imported here, not in the bounded thread: a loaded CPU's import time

    result: dict[str, Any] = {}

    def lookup() -> None:
        try:
            if auth_default is not None:
                result["creds"] = auth_default()
            else:
                result["creds"], _ = google.auth.default()
        except Exception as exc:  # noqa: BLE001 - DefaultCredentialsError, bad key file
            result["error"] = exc

    thread = threading.Thread(target=lookup, name="adopt-credentials", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return Credentials(problem=f"{NO_CREDENTIALS}: the lookup took over {timeout_s:g} s")
    if "error" in result:
        exc = result["error"]
        name = type(exc).__name__
        if name == "DefaultCredentialsError":
            return Credentials(problem=NO_CREDENTIALS)
        return Credentials(problem=f"{NO_CREDENTIALS}: {name}: {exc}")
    return Credentials(credentials=result.get("creds"))


def _classify(exc: Exception) -> Check:
    """A Google API error as the lookup's answer."""
    from google.api_core import exceptions as gexc

    text = str(exc)
    if isinstance(exc, gexc.NotFound):
        return absent()
    if isinstance(exc, gexc.PermissionDenied):
        if "SERVICE_DISABLED" in text or "has not been used" in text or "is disabled" in text:
            return unchecked(f"API disabled: {text[:200]}")
        return unchecked(f"permission denied: {text[:200]}")
    if isinstance(exc, gexc.Unauthenticated):
        return unchecked(f"credentials rejected: {text[:200]}")
    if isinstance(exc, gexc.DeadlineExceeded | gexc.ServiceUnavailable | gexc.RetryError):
        return unchecked(f"unreachable: {type(exc).__name__}: {text[:200]}")
    if isinstance(exc, gexc.GoogleAPICallError):
        return unchecked(f"{type(exc).__name__}: {text[:200]}")
    return unchecked(f"lookup failed: {type(exc).__name__}: {text[:200]}")


class GoogleLookups:
    """The lookups for every supported type, over lazily built clients; close when done.

    ``lookups()`` gives the mapping :func:`scripts.adopt.plan_adoption` takes."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        clients: dict[str, Any] | None = None,
    ) -> None:
        """``clients``: ready clients by service key (``run``, ``secrets``, ``iam``,
        ``registry``, ``scheduler``, ``publisher``, ``subscriber``), e.g. on a test server."""
        self._creds = credentials
        self._timeout = timeout_s
        self._clients: dict[str, Any] = dict(clients or {})
        #: service -> the answer that showed it cannot be reached (or its API is off): the
        #: rest of that service's lookups give the same answer at once (fail fast per service).
        self._down: dict[str, Check] = {}

    # -- clients ------------------------------------------------------------------------
    def _client(self, key: str, make: Callable[[Any], Any], *, emulator: str = "") -> Any:
        if key not in self._clients:
            if emulator and os.environ.get(emulator):
                from google.auth.credentials import AnonymousCredentials

                self._clients[key] = make(AnonymousCredentials())
            else:
                self._clients[key] = make(self._creds.credentials)
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            transport = getattr(client, "transport", None) or getattr(client, "_transport", None)
            close = getattr(transport, "close", None) or getattr(client, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001, S110 - closing is best effort
                    pass
        self._clients.clear()

    def __enter__(self) -> GoogleLookups:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one adapter per type -------------------------------------------------------------
    def _get(self, service: str, call: Callable[[], Any]) -> Check:
        if service in self._down:
            return self._down[service]
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - classified
            check = _classify(exc)
            if check.reason.startswith(("unreachable", "API disabled")):
                self._down[service] = check
            return check
        return exists()

    def _cloud(self, key: str, make: Callable[[Any], Any], get: str) -> Lookup:
        """A lookup by resource path: ``client.<get>(name=id)``; needs credentials."""

        def lookup(_r: Resource, rid: str) -> Check:
            if self._creds.credentials is None:
                return unchecked(self._creds.problem or NO_CREDENTIALS)
            client = self._client(key, make)
            return self._get(
                key, lambda: getattr(client, get)(name=rid, timeout=self._timeout, retry=None)
            )

        return lookup

    def _pubsub(self, kind: str) -> Lookup:
        def lookup(_r: Resource, rid: str) -> Check:
            if not os.environ.get(PUBSUB_EMULATOR) and self._creds.credentials is None:
                return unchecked(self._creds.problem or NO_CREDENTIALS)
            from google.cloud import pubsub_v1

            key, client_class, get = _PUBSUB_GET[kind]
            client = self._client(
                key,
                lambda c: getattr(pubsub_v1, client_class)(credentials=c),
                emulator=PUBSUB_EMULATOR,
            )
            return self._get(
                "pubsub",
                lambda: getattr(client, get)(
                    request={kind: rid}, timeout=self._timeout, retry=None
                ),
            )

        return lookup

    def _firestore_database(self, r: Resource, rid: str) -> Check:
        if os.environ.get(FIRESTORE_EMULATOR):
            from google.cloud import firestore

            client = self._client(
                f"firestore:{r.inputs.get('name')}",
                lambda c: firestore.Client(
                    project=str(r.inputs.get("project")),
                    credentials=c,
                    database=str(r.inputs.get("name")),
                ),
                emulator=FIRESTORE_EMULATOR,
            )

            def probe() -> None:
                list(client.collections(timeout=self._timeout, retry=None))

            check = self._get("firestore", probe)
            if check.found:
                return exists("the emulator serves every database id")
            return check
        if self._creds.credentials is None:
            return unchecked(self._creds.problem or NO_CREDENTIALS)
        from google.cloud import firestore_admin_v1

        client = self._client(
            "firestore-admin", lambda c: firestore_admin_v1.FirestoreAdminClient(credentials=c)
        )
        return self._get(
            "firestore",
            lambda: client.get_database(name=rid, timeout=self._timeout, retry=None),
        )

    def _iam(self, key: str, make: Callable[[Any], Any], *, emulator: str = "") -> Lookup:
        """An IAM member: is ``member`` in the ``role`` binding of the resource's policy?"""

        def lookup(r: Resource, rid: str) -> Check:
            if emulator and os.environ.get(emulator):
                return unchecked("the emulator has no IAM")
            if self._creds.credentials is None:
                return unchecked(self._creds.problem or NO_CREDENTIALS)
            if key in self._down:
                return self._down[key]
            resource, role, member = rid.split(" ", 2)
            client = self._client(key, make)
            try:
                policy = client.get_iam_policy(
                    request={"resource": resource}, timeout=self._timeout, retry=None
                )
            except Exception as exc:  # noqa: BLE001 - classified
                check = _classify(exc)
                # No resource, no grant on it: created with the resource.
                return absent("its resource does not exist yet") if check.found is False else check
            for binding in policy.bindings:
                if binding.role == role and member in binding.members:
                    return exists()
            return absent(f"{member} does not hold {role}")

        return lookup

    def lookups(self) -> dict[str, Lookup]:
        from google.cloud import (
            artifactregistry_v1,
            iam_admin_v1,
            pubsub_v1,
            run_v2,
            scheduler_v1,
            secretmanager_v1,
        )

        run = ("run", lambda c: run_v2.ServicesClient(credentials=c))
        secrets = ("secrets", lambda c: secretmanager_v1.SecretManagerServiceClient(credentials=c))
        registry = ("registry", lambda c: artifactregistry_v1.ArtifactRegistryClient(credentials=c))
        iam = ("iam", lambda c: iam_admin_v1.IAMClient(credentials=c))
        return {
            "gcp:pubsub/topic:Topic": self._pubsub("topic"),
            "gcp:pubsub/subscription:Subscription": self._pubsub("subscription"),
            "gcp:firestore/database:Database": self._firestore_database,
            "gcp:cloudrunv2/service:Service": self._cloud(*run, "get_service"),
            "gcp:secretmanager/secret:Secret": self._cloud(*secrets, "get_secret"),
            "gcp:serviceaccount/account:Account": self._cloud(*iam, "get_service_account"),
            "gcp:artifactregistry/repository:Repository": self._cloud(*registry, "get_repository"),
            "gcp:cloudscheduler/job:Job": self._cloud(
                "scheduler", lambda c: scheduler_v1.CloudSchedulerClient(credentials=c), "get_job"
            ),
            "gcp:pubsub/topicIAMMember:TopicIAMMember": self._iam(
                "publisher-iam",
                lambda c: pubsub_v1.PublisherClient(credentials=c),
                emulator=PUBSUB_EMULATOR,
            ),
            "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": self._iam(
                "subscriber-iam",
                lambda c: pubsub_v1.SubscriberClient(credentials=c),
                emulator=PUBSUB_EMULATOR,
            ),
            "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": self._iam(*run),
            "gcp:secretmanager/secretIamMember:SecretIamMember": self._iam(*secrets),
            "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": self._iam(*registry),
            "gcp:serviceaccount/iAMMember:IAMMember": self._iam(*iam),
        }
