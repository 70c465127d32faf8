"""The platform's stack config, parsed once into typed, immutable objects.

The topology lives in ``Pulumi.<stack>.yaml`` under the project key ``platform`` (plus
``gcp:project`` and ``gcp:region``). :func:`parse_stack_config` validates all of it and
raises one :class:`ConfigError` carrying every problem with its key path (and, for a file
read by :func:`load_stack_file`, its line), e.g.::

    platform.topics.prediction-request.subscriptions[0].service (Pulumi.prod.yaml:61):
    unknown service 'wrker' (known: prediction-coordinator, prediction-worker)

The modules, by job:

* the pydantic models, each with its per-field rules and the platform's named defaults:
  ``_services`` (Cloud Run), ``_topics`` (topics and push subscriptions), ``_schedules``
  (Cloud Scheduler jobs), ``_deploy`` and ``_monitoring`` (those blocks), ``_stack`` (the
  root, with Firestore and secrets), over ``_frozen`` (the strict, immutable base);
* ``_formats``: CPU, memory, cron, time zone and placeholder parsers;
* the rules across fields and across the stack, by what they check: ``_run_checks`` (a
  Cloud Run service), ``_pubsub_checks`` (topics, dead letters, subscriptions),
  ``_identity_checks`` (service accounts), ``_stack_checks`` (the order they run in, and
  secrets, schedules, repository, Firestore, monitoring), over ``_parts`` (what they share);
* ``_issues``: :class:`ConfigIssue` / :class:`ConfigError`, pydantic's errors in our words;
* ``_loader``: reading a stack file as strictly as Pulumi does (duplicate keys, YAML 1.1
  scalars), with lines;
* ``_parse``: the entry points.

Google's limits themselves live in :mod:`infra.limits`, with their sources.
"""

from infra.config._deploy import (
    CloudBuildConfig,
    DeployCheckConfig,
    DeployConfig,
    DeployNotifyConfig,
    DeployRolloutConfig,
)
from infra.config._formats import PLACEHOLDERS, substitute
from infra.config._issues import ConfigError, ConfigIssue
from infra.config._loader import StackFile, load_stack_file, load_stack_text
from infra.config._monitoring import AlertThresholds, MonitoringConfig, NotifyConfig
from infra.config._parse import DEFAULT_PROJECT_NAME, parse_config, parse_stack_config
from infra.config._run_checks import cpu_memory_problems
from infra.config._schedules import ScheduleConfig
from infra.config._services import DIGEST_REF_RE, ServiceConfig
from infra.config._stack import (
    PLATFORM_KEY,
    FirestoreConfig,
    PlatformConfig,
    SecretConfig,
    StackConfig,
)
from infra.config._topics import (
    DEAD_LETTER_RETENTION,
    DEFAULT_ACK_DEADLINE_S,
    SubscriptionConfig,
    TopicConfig,
)

__all__ = [
    "CloudBuildConfig",
    "ConfigError",
    "ConfigIssue",
    "DEAD_LETTER_RETENTION",
    "DEFAULT_ACK_DEADLINE_S",
    "DEFAULT_PROJECT_NAME",
    "DIGEST_REF_RE",
    "DeployCheckConfig",
    "DeployConfig",
    "DeployNotifyConfig",
    "DeployRolloutConfig",
    "AlertThresholds",
    "FirestoreConfig",
    "MonitoringConfig",
    "NotifyConfig",
    "PLACEHOLDERS",
    "PLATFORM_KEY",
    "PlatformConfig",
    "ScheduleConfig",
    "SecretConfig",
    "ServiceConfig",
    "StackConfig",
    "StackFile",
    "SubscriptionConfig",
    "TopicConfig",
    "cpu_memory_problems",
    "load_stack_file",
    "load_stack_text",
    "parse_config",
    "parse_stack_config",
    "substitute",
]
