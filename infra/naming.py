"""The one naming function: every physical GCP name the program creates comes from here.

Rule: a name carries the stack (``-<stack>``) where GCP names must differ between stacks that
may share a scope. Pub/Sub topics and subscriptions and Cloud Scheduler jobs carry it (the
production topics were created as ``prediction-request-prod`` before this program, and a dev
stack pointed at the same project must not deliver into production's topics). Cloud Run
services, service accounts, secrets, the Artifact Registry repository and the Firestore
database keep their bare names: each stack runs in its own project (``gcp:project``), and
the service names are what dashboards, the deploy pipeline and the services' URLs use.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Kind",
    "physical_name",
    "short_service",
    "STACK_SCOPED",
    "DEAD_LETTER_SUFFIX",
    "SERVICE_PREFIX",
    "service_account_email",
    "service_account_member",
]

DEAD_LETTER_SUFFIX = "dead-letter"
#: The platform's service names start with it; ids and file names drop it (see short_service).
SERVICE_PREFIX = "prediction-"


class Kind(StrEnum):
    SERVICE = "service"  # Cloud Run service
    RUNTIME_ACCOUNT = "runtime-account"  # a service's own identity
    PUSH_ACCOUNT = "push-account"  # the identity a push subscription signs its OIDC token as
    SCHEDULER_ACCOUNT = "scheduler-account"  # the identity a scheduler job calls as
    TOPIC = "topic"
    DEAD_LETTER_TOPIC = "dead-letter-topic"
    SUBSCRIPTION = "subscription"
    DEAD_LETTER_SUBSCRIPTION = "dead-letter-subscription"
    SCHEDULER_JOB = "scheduler-job"
    SECRET = "secret"
    REPOSITORY = "repository"
    IMAGE = "image"  # image name inside the Artifact Registry repository
    LOG_METRIC = "log-metric"  # a log-based metric (project-scoped, like topics)


STACK_SCOPED = frozenset(
    {
        Kind.TOPIC,
        Kind.DEAD_LETTER_TOPIC,
        Kind.SUBSCRIPTION,
        Kind.DEAD_LETTER_SUBSCRIPTION,
        Kind.SCHEDULER_JOB,
        Kind.LOG_METRIC,
    }
)

# Service account ids are 6-30 characters: short prefixes keep derived ids inside the limit.
_ACCOUNT_PREFIX = {
    Kind.RUNTIME_ACCOUNT: "run-",
    Kind.PUSH_ACCOUNT: "push-",
    Kind.SCHEDULER_ACCOUNT: "sched-",
}


def short_service(name: str) -> str:
    """``prediction-coordinator`` -> ``coordinator`` (a short name is returned as it is).

    The platform prefix adds nothing to an id already scoped to the platform's project, and
    service account ids are limited to 30 characters; Dockerfiles and default subscription
    names use the short name too.
    """
    return name.removeprefix(SERVICE_PREFIX)


def physical_name(kind: Kind, logical: str, stack: str) -> str:
    """The GCP name of the ``kind`` resource called ``logical`` in the config, in ``stack``.

    ``logical`` is the config key (service name, topic key, subscription name, job name...).
    """
    if kind in _ACCOUNT_PREFIX:
        return f"{_ACCOUNT_PREFIX[kind]}{short_service(logical)}"
    if kind is Kind.IMAGE:
        return logical
    if kind is Kind.DEAD_LETTER_TOPIC:
        return f"{logical}-{stack}-{DEAD_LETTER_SUFFIX}"
    if kind is Kind.DEAD_LETTER_SUBSCRIPTION:
        return f"{logical}-{stack}-{DEAD_LETTER_SUFFIX}-sub"
    if kind in STACK_SCOPED:
        return f"{logical}-{stack}"
    return logical


def service_account_email(account_id: str, project: str) -> str:
    """A user-managed service account's email: ``ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com``.

    https://cloud.google.com/iam/docs/service-account-overview#user-managed
    (``infra.limits.SERVICE_ACCOUNT_EMAIL_RE`` is its grammar).
    """
    return f"{account_id}@{project}.iam.gserviceaccount.com"


def service_account_member(email: str) -> str:
    """The IAM principal of a service account: ``serviceAccount:EMAIL``.

    https://cloud.google.com/iam/docs/principal-identifiers
    """
    return f"serviceAccount:{email}"
