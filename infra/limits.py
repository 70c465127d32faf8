"""Google Cloud's own limits, formats and enums: the one home of each, with its Google source.

Every rule here is Google's, not the platform's: the stack config (``infra/config``), the
preflight rules (``policy``) and the local platform (``scripts/local``) import them, none
copies them. The platform's own choices (defaults, caps below Google's) live with the config
models, each with its reason. ``tests/infra/test_discovery.py`` holds the enums and bounds
below to Google's discovery documents where those state them.

Patterns are used with ``re.fullmatch`` (``re.match(...$)`` accepts a trailing newline).
"""

from __future__ import annotations

import re

__all__ = [
    # Cloud Run
    "RUN_TIMEOUT_S",
    "RUN_DEFAULT_TIMEOUT_S",
    "RUN_MAX_CONCURRENCY",
    "RUN_DEFAULT_CONCURRENCY",
    "RUN_MAX_INSTANCES",
    "RUN_INTEGER_CPUS",
    "RUN_FRACTIONAL_CPU_MIN",
    "RUN_FRACTIONAL_CPU_STEP",
    "RUN_CPU_MEMORY_MIB",
    "RUN_MEMORY_MIB",
    "RUN_MEMORY_MIN_CPU",
    "RUN_FRACTIONAL_MEMORY_MAX_MIB",
    "RUN_ENV_MAX_COUNT",
    "RUN_ENV_NAME_MAX",
    "RUN_ENV_VALUE_MAX_BYTES",
    "RUN_ENV_TOTAL_MAX_BYTES",
    "RUN_RESERVED_ENV",
    "RUN_RESERVED_ENV_PREFIX",
    "RUN_SERVICE_NAME_RE",
    "RUN_INGRESS",
    # Pub/Sub
    "PUBSUB_ACK_DEADLINE_S",
    "PUBSUB_DEFAULT_ACK_DEADLINE_S",
    "PUBSUB_BACKOFF_S",
    "PUBSUB_DEFAULT_MIN_BACKOFF_S",
    "PUBSUB_DEFAULT_MAX_BACKOFF_S",
    "PUBSUB_DELIVERY_ATTEMPTS",
    "PUBSUB_DEFAULT_DELIVERY_ATTEMPTS",
    "PUBSUB_SUBSCRIPTION_RETENTION_S",
    "PUBSUB_DEFAULT_SUBSCRIPTION_RETENTION_S",
    "PUBSUB_NAME_RE",
    "PUBSUB_RESERVED_PREFIX",
    # Cloud Scheduler
    "SCHEDULER_HTTP_ATTEMPT_DEADLINE_S",
    "SCHEDULER_DEFAULT_HTTP_ATTEMPT_DEADLINE_S",
    "SCHEDULER_RETRY_COUNT",
    "SCHEDULER_DEFAULT_MIN_BACKOFF_S",
    "SCHEDULER_DEFAULT_MAX_BACKOFF_S",
    "SCHEDULER_DEFAULT_TIME_ZONE",
    "SCHEDULER_JOB_ID_RE",
    "SCHEDULER_HTTP_METHODS",
    "CRON_FIELDS",
    # Secret Manager
    "SECRET_ID_RE",
    # Firestore
    "FIRESTORE_DEFAULT_DATABASE",
    "FIRESTORE_DATABASE_ID_RE",
    "FIRESTORE_UUID_LIKE_RE",
    "FIRESTORE_MULTI_REGIONS",
    "FIRESTORE_REGIONS",
    "FIRESTORE_LOCATIONS",
    # IAM and projects
    "SERVICE_ACCOUNT_ID_RE",
    "SERVICE_ACCOUNT_EMAIL_RE",
    "USER_OR_GROUP_MEMBER_RE",
    "PROJECT_ID_RE",
    # Cloud Storage
    "BUCKET_NAME_RE",
    "REGION_RE",
    # Artifact Registry
    "REPOSITORY_ID_RE",
    # Cloud Monitoring and Logging
    "METRIC_PUBSUB_UNDELIVERED",
    "METRIC_PUBSUB_OLDEST_UNACKED_AGE",
    "METRIC_PUBSUB_PUSH_REQUESTS",
    "METRIC_PUBSUB_PUSH_LATENCIES",
    "METRIC_PUBSUB_TOPIC_SENDS",
    "METRIC_RUN_REQUESTS",
    "METRIC_RUN_INSTANCES",
    "USER_METRIC_PREFIX",
    "MONITORING_MIN_ALIGNMENT_S",
    "ALERT_DOCUMENTATION_MAX_CHARS",
    "LOG_METRIC_NAME_RE",
    "NOTIFICATION_CHANNEL_TYPES",
    # Labels
    "LABEL_VALUE_MAX",
    "MIB_PER_GIB",
]

MIB_PER_GIB = 1024

# --- Cloud Run (services) ------------------------------------------------------------------

# Request timeout 1-3600 s, default 300 s.
# https://cloud.google.com/run/docs/configuring/request-timeout
RUN_TIMEOUT_S = (1, 3600)
RUN_DEFAULT_TIMEOUT_S = 300
# Maximum concurrent requests per instance: 1-1000, default 80.
# https://cloud.google.com/run/docs/about-concurrency
RUN_MAX_CONCURRENCY = 1000
RUN_DEFAULT_CONCURRENCY = 80
# Maximum instances per revision without a quota increase.
# https://cloud.google.com/run/docs/configuring/max-instances
RUN_MAX_INSTANCES = 1000

# CPU: the current "Configure CPU limits for services" page lists 1, 2, 4, 6 and 8 vCPU, and
# any value from 0.08 to below 1 in steps of 0.001. The run v2 discovery document's
# ResourceRequirements.limits text still says "only 1, 2, 4 and 8": it predates 6 vCPU and
# fractional CPU, which the CPU page (and gcloud run deploy --cpu) accept today, so the page
# wins; tests/infra/test_discovery.py records this one disagreement explicitly.
# https://cloud.google.com/run/docs/configuring/services/cpu
RUN_INTEGER_CPUS = (1, 2, 4, 6, 8)
RUN_FRACTIONAL_CPU_MIN = 0.08
RUN_FRACTIONAL_CPU_STEP = 0.001
# Memory each whole CPU accepts (MiB, inclusive), from the same page's table.
RUN_CPU_MEMORY_MIB = {
    1: (128, 4 * MIB_PER_GIB),
    2: (128, 8 * MIB_PER_GIB),
    4: (2 * MIB_PER_GIB, 16 * MIB_PER_GIB),
    6: (4 * MIB_PER_GIB, 24 * MIB_PER_GIB),
    8: (4 * MIB_PER_GIB, 32 * MIB_PER_GIB),
}
# Below 1 vCPU: more than 512 MiB needs 0.5 vCPU, more than 1 GiB needs 1 vCPU; concurrency
# must be 1 and billing request-based (cpu_idle true). Same page.
RUN_FRACTIONAL_MEMORY_MAX_MIB = ((0.5, 512), (1.0, MIB_PER_GIB))  # (below this cpu, max MiB)
# Memory 128 MiB (first generation) to 32 GiB; more than 4/8/16/24 GiB needs 2/4/6/8 vCPU.
# https://cloud.google.com/run/docs/configuring/services/memory-limits
RUN_MEMORY_MIB = (128, 32 * MIB_PER_GIB)
RUN_MEMORY_MIN_CPU = ((4 * MIB_PER_GIB, 2), (8 * MIB_PER_GIB, 4), (16 * MIB_PER_GIB, 6))

# Environment variables: at most 1000 per container.
# https://cloud.google.com/run/docs/configuring/services/environment-variables
RUN_ENV_MAX_COUNT = 1000
# EnvVar.name "must not exceed 32768 characters"; EnvVar.value "maximum length is 32768
# bytes" (run v2 discovery document, GoogleCloudRunV2EnvVar).
RUN_ENV_NAME_MAX = 32768
RUN_ENV_VALUE_MAX_BYTES = 32768
# Names and values together: 32 KiB. Google states this total on the environment variables
# page for functions deployed to Cloud Run; no separate total is published for services, so
# the one published total is applied to every service (a platform service needs far less).
# https://cloud.google.com/run/docs/configuring/services/overview-environment-variables
RUN_ENV_TOTAL_MAX_BYTES = 32 * 1024
# Set by Cloud Run itself (the container runtime contract) and so reserved; names may not be
# empty, contain "=" or start with X_GOOGLE_.
# https://cloud.google.com/run/docs/container-contract#env-vars
# https://cloud.google.com/run/docs/configuring/services/overview-environment-variables
RUN_RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})
RUN_RESERVED_ENV_PREFIX = "X_GOOGLE_"

# Service id: begins with a letter, lowercase letters, digits and hyphens, does not end with a
# hyphen, fewer than 50 characters (run v2 discovery document: services.create serviceId).
# https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services/create
RUN_SERVICE_NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?")
# Config spelling -> the v2 Service.ingress enum value.
RUN_INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}

# --- Pub/Sub ---------------------------------------------------------------------------------

# Ack deadline 10-600 s; 10 s when unset.
# https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions
PUBSUB_ACK_DEADLINE_S = (10, 600)
PUBSUB_DEFAULT_ACK_DEADLINE_S = 10
# RetryPolicy backoff 0-600 s; defaults 10 s and 600 s.
# https://cloud.google.com/pubsub/docs/handling-failures
PUBSUB_BACKOFF_S = (0, 600)
PUBSUB_DEFAULT_MIN_BACKOFF_S = 10
PUBSUB_DEFAULT_MAX_BACKOFF_S = 600
# DeadLetterPolicy.maxDeliveryAttempts 5-100; 5 when unset.
# https://cloud.google.com/pubsub/docs/dead-letter-topics
PUBSUB_DELIVERY_ATTEMPTS = (5, 100)
PUBSUB_DEFAULT_DELIVERY_ATTEMPTS = 5
# A subscription retains unacknowledged messages 10 minutes to 31 days; 7 days when unset.
# https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions
PUBSUB_SUBSCRIPTION_RETENTION_S = (600, 31 * 24 * 3600)
PUBSUB_DEFAULT_SUBSCRIPTION_RETENTION_S = 7 * 24 * 3600
# Topic and subscription ids: 3-255 characters, start with a letter, letters, digits and
# - _ . ~ + %, and must not start with "goog".
# https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names
PUBSUB_NAME_RE = re.compile(r"[A-Za-z][-A-Za-z0-9_.~+%]{2,254}")
PUBSUB_RESERVED_PREFIX = "goog"

# --- Cloud Scheduler -------------------------------------------------------------------------

# HTTP targets: attempt deadline 15 s to 30 min (default 3 min); retryCount 0-5.
# https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs
SCHEDULER_HTTP_ATTEMPT_DEADLINE_S = (15, 1800)
SCHEDULER_DEFAULT_HTTP_ATTEMPT_DEADLINE_S = 180
SCHEDULER_RETRY_COUNT = (0, 5)
# RetryConfig defaults: minBackoffDuration 5 s, maxBackoffDuration 1 h (same page).
SCHEDULER_DEFAULT_MIN_BACKOFF_S = 5
SCHEDULER_DEFAULT_MAX_BACKOFF_S = 3600
# "The default time-zone is Etc/UTC"; the value must be a tz database name (same pages).
# https://cloud.google.com/scheduler/docs/configuring/cron-job-schedules
SCHEDULER_DEFAULT_TIME_ZONE = "Etc/UTC"
# Job id: letters, digits, hyphens, underscores; at most 500 characters (jobs reference).
SCHEDULER_JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,500}")
# HttpTarget.httpMethod values this platform may use (a subset of the API's enum).
SCHEDULER_HTTP_METHODS = ("POST", "GET")
# The unix-cron format Cloud Scheduler documents: five fields, each "*", a number, a range
# "a-b", a step after "*" or a range ("*/2", "0-23/2"), or a comma list of those. Months may
# be JAN-DEC, weekdays SUN-SAT (7 is Sunday too). Not documented, so refused: "?", "L", "W",
# "#", "H", macros such as "@daily", a seconds field, and the legacy App Engine syntax
# ("every 5 minutes", kept only for existing jobs).
# https://cloud.google.com/scheduler/docs/configuring/cron-job-schedules
CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    ),
    ("day of week", 0, 7, {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}),
)

# --- Cloud Monitoring and Logging -----------------------------------------------------------

# Built-in metric types (GCP metrics list), with the resource type each is written against.
# https://cloud.google.com/monitoring/api/metrics_gcp_p_z#gcp-pubsub
# https://cloud.google.com/monitoring/api/metrics_gcp_p_z#gcp-run
#: GAUGE INT64 on pubsub_subscription: messages retained and not acknowledged.
METRIC_PUBSUB_UNDELIVERED = "pubsub.googleapis.com/subscription/num_undelivered_messages"
#: GAUGE INT64 (seconds) on pubsub_subscription: age of the oldest unacknowledged message.
METRIC_PUBSUB_OLDEST_UNACKED_AGE = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
#: DELTA INT64 on pubsub_subscription, labels response_class ("ack", ...), response_code.
METRIC_PUBSUB_PUSH_REQUESTS = "pubsub.googleapis.com/subscription/push_request_count"
#: DELTA DISTRIBUTION (microseconds) on pubsub_subscription.
METRIC_PUBSUB_PUSH_LATENCIES = "pubsub.googleapis.com/subscription/push_request_latencies"
#: DELTA INT64 on pubsub_topic: publish requests.
METRIC_PUBSUB_TOPIC_SENDS = "pubsub.googleapis.com/topic/send_request_count"
#: DELTA INT64 on cloud_run_revision, label response_code_class ("2xx", "5xx", ...).
METRIC_RUN_REQUESTS = "run.googleapis.com/request_count"
#: GAUGE INT64 on cloud_run_revision, label state ("active", "idle").
METRIC_RUN_INSTANCES = "run.googleapis.com/container/instance_count"
#: Log-based (user-defined) metrics are read as logging.googleapis.com/user/<name>.
#: https://cloud.google.com/logging/docs/logs-based-metrics
USER_METRIC_PREFIX = "logging.googleapis.com/user/"
#: An alignment period below 60 s is not accepted for alerting (Aggregation.alignmentPeriod).
#: https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies
MONITORING_MIN_ALIGNMENT_S = 60
#: AlertPolicy.documentation.content: at most 8,192 characters (monitoring v3 discovery).
ALERT_DOCUMENTATION_MAX_CHARS = 8192
#: LogMetric name: up to 100 characters of A-Za-z0-9_-.,+!*',()%/ (no leading slash).
#: https://cloud.google.com/logging/docs/reference/v2/rest/v2/projects.metrics
LOG_METRIC_NAME_RE = re.compile(r"[A-Za-z0-9_\-.,+!*'()%][A-Za-z0-9_\-.,+!*'()%/]{0,99}")
#: Notification channel types the platform declares, with their labels.
#: https://cloud.google.com/monitoring/support/notification-options
NOTIFICATION_CHANNEL_TYPES = {
    "email": ("email_address",),
    "slack": ("channel_name", "auth_token"),
    "webhook_tokenauth": ("url",),
}

# --- Secret Manager --------------------------------------------------------------------------

# Secret id: at most 255 characters, letters, digits, hyphens and underscores.
# https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/create
SECRET_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")

# --- Firestore -------------------------------------------------------------------------------

# Database id: "(default)", or 4-63 characters of a-z, 0-9 and "-", starting with a letter and
# ending with a letter or digit, and not UUID-like (firestore v1 discovery document,
# projects.databases.create databaseId).
# https://cloud.google.com/firestore/docs/manage-databases
FIRESTORE_DEFAULT_DATABASE = "(default)"
FIRESTORE_DATABASE_ID_RE = re.compile(r"[a-z][-a-z0-9]{2,61}[a-z0-9]")
FIRESTORE_UUID_LIKE_RE = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}")
# Locations a database may be created in: the multi-regions and the regions Google lists.
# https://cloud.google.com/firestore/docs/locations
# https://cloud.google.com/firestore/docs/reference/rest/v1/projects.locations/get
FIRESTORE_MULTI_REGIONS = frozenset({"nam5", "nam7", "eur3"})
FIRESTORE_REGIONS = frozenset(
    """
    africa-south1 asia-east1 asia-east2 asia-northeast1 asia-northeast2 asia-northeast3
    asia-south1 asia-south2 asia-southeast1 asia-southeast2 asia-southeast3
    australia-southeast1 australia-southeast2 europe-central2 europe-north1 europe-north2
    europe-southwest1 europe-west1 europe-west10 europe-west12 europe-west15 europe-west2
    europe-west3 europe-west4 europe-west6 europe-west8 europe-west9 me-central1 me-central2
    me-west1 northamerica-northeast1 northamerica-northeast2 northamerica-south1
    southamerica-east1 southamerica-west1 us-central1 us-east1 us-east4 us-east5 us-south1
    us-west1 us-west2 us-west3 us-west4
    """.split()
)
FIRESTORE_LOCATIONS = FIRESTORE_MULTI_REGIONS | FIRESTORE_REGIONS

# --- IAM and projects ------------------------------------------------------------------------

# Service account id: 6-30 characters, lowercase letters, digits and hyphens, starting with a
# letter and not ending with a hyphen; unique in its project.
# https://cloud.google.com/iam/docs/service-accounts-create#creating
SERVICE_ACCOUNT_ID_RE = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
# A user-managed service account's email: ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com.
# https://cloud.google.com/iam/docs/service-account-overview#user-managed
SERVICE_ACCOUNT_EMAIL_RE = re.compile(
    r"(?P<account>[a-z][-a-z0-9]{4,28}[a-z0-9])"
    r"@(?P<project>[a-z][-a-z0-9]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com"
)
# An IAM principal that is a Google group or user: `group:EMAIL` / `user:EMAIL`.
# https://cloud.google.com/iam/docs/principal-identifiers
USER_OR_GROUP_MEMBER_RE = re.compile(
    r"(?P<kind>group|user):[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)
# Project id: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter
# and not ending with a hyphen.
# https://cloud.google.com/resource-manager/docs/creating-managing-projects
PROJECT_ID_RE = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
# --- Cloud Storage -------------------------------------------------------------------------

# Bucket name (without dots): 3-63 characters, lowercase letters, digits, '-' and '_', starting
# and ending with a letter or digit (Cloud Build's default source bucket is PROJECT_cloudbuild).
# https://cloud.google.com/storage/docs/buckets#naming
BUCKET_NAME_RE = re.compile(r"[a-z0-9][-_a-z0-9]{1,61}[a-z0-9]")

# A region id's shape (e.g. us-west2, northamerica-northeast1). Which regions offer Cloud Run
# changes as Google opens regions: the shape is checked, the list is not.
# https://cloud.google.com/run/docs/locations
REGION_RE = re.compile(r"[a-z]+-[a-z]+[0-9]{1,2}")

# --- Artifact Registry -----------------------------------------------------------------------

# Repository id: lowercase letters, digits and hyphens, starting with a letter and ending with
# a letter or digit, at most 63 characters.
# https://cloud.google.com/artifact-registry/docs/repositories/create-repos
REPOSITORY_ID_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")

# --- Labels ----------------------------------------------------------------------------------

# Label values: lowercase letters, digits, "-" and "_"; at most 63 characters.
# https://cloud.google.com/resource-manager/docs/labels-overview#requirements
LABEL_VALUE_MAX = 63
