"""The env contract: what each service's code needs from its environment, in one place.

The services check it at start-up (a missing variable stops the service with one message
listing all that are missing), and the Pulumi program reads the same contract to fail the
plan when a service's config omits a variable its code requires (a revision once shipped
without ``GCP_PROJECT_ID``). Secret variables must come from Secret Manager, never literals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "API_KEY_HEADER",
    "CONTRACTS",
    "START_PATH",
    "STATUS_PATH",
    "EnvContract",
    "MissingEnvironment",
    "contract_for",
]

#: The coordinator's API as its callers (operators, the post-deploy check) use it.
START_PATH = "/start"
STATUS_PATH = "/status"  # GET /status/{batch_id}
API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class EnvContract:
    service: str
    required: tuple[str, ...]  # plain variables: set by the program from config or wiring
    secrets: tuple[str, ...] = ()  # variables that must be Secret Manager references
    optional: tuple[str, ...] = ()  # read if present, with a default in the code
    # Whether the code reads or writes Firestore: the program grants datastore.user from the
    # config's uses_firestore, which must agree (a missing grant fails with 403 at run time;
    # an unused one is privilege nobody needs).
    uses_firestore: bool = False

    @property
    def all_required(self) -> tuple[str, ...]:
        return self.required + self.secrets

    def missing(self, environ: Mapping[str, str]) -> list[str]:
        return [name for name in self.all_required if not environ.get(name)]


class MissingEnvironment(RuntimeError):
    """Raised at start-up with every missing variable, not just the first."""

    def __init__(self, service: str, missing: list[str]):
        self.service = service
        self.missing = missing
        super().__init__(
            f"{service}: missing required environment variable(s): {', '.join(missing)}"
        )


CONTRACTS: dict[str, EnvContract] = {
    c.service: c
    for c in (
        EnvContract(
            service="prediction-coordinator",
            # REQUEST_TOPIC: where work items are published (the program sets it from config).
            required=("GCP_PROJECT_ID", "REQUEST_TOPIC"),
            secrets=("COORDINATOR_API_KEY",),
            uses_firestore=True,  # the batch store (shared/batch_store/)
            # Optional, with defaults in services/coordinator/settings.py: the Firestore
            # database id, the stall check's idle window (the local end-to-end tests shorten
            # it) and attempts per item, the batch age limits.
            optional=(
                "FIRESTORE_DATABASE",
                "LOG_LEVEL",
                "STALL_IDLE_SECONDS",
                "STALL_MAX_ATTEMPTS",
                "BATCH_MAX_AGE_SECONDS",
                "STUCK_AFTER_SECONDS",
                # Per-path request timings at /debug/timings (shared/timing.py): the local
                # benchmark's hop latencies; never set in the cloud.
                "REQUEST_TIMINGS",
            ),
        ),
        EnvContract(
            service="prediction-worker",
            # READY_TOPIC: where completions are published (the program sets it from config).
            required=("GCP_PROJECT_ID", "READY_TOPIC"),
            # FAULT_TRANSIENT_ITEMS: fault injection for the local end-to-end tests (item ids
            # answered 503 so Pub/Sub retries and dead-letters them); never set in the cloud.
            optional=("LOG_LEVEL", "FAULT_TRANSIENT_ITEMS", "REQUEST_TIMINGS"),
        ),
    )
}


def contract_for(service: str) -> EnvContract:
    try:
        return CONTRACTS[service]
    except KeyError:
        known = ", ".join(sorted(CONTRACTS))
        raise KeyError(f"no env contract for service '{service}' (known: {known})") from None
