"""Rules across fields and across the stack, over the typed config objects: the order they
run in (:func:`stack_issues`), and the rules for secrets, schedules, the image repository,
Firestore and monitoring (Cloud Run, Pub/Sub and identities have modules of their own).

Each part of the config (a service, a subscription, a job...) is validated on its own first
(``_parse.py``), so these rules see typed objects with their defaults applied, and still run
for every part that is valid when another is not: every problem is reported at once. A part
that failed its own validation is ``None`` here and its own errors are already reported.

The rule that matters most here is about physical names: what GCP sees after
:func:`infra.naming.physical_name` derives them must be valid and unique in the project.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from infra import limits
from infra.config._identity_checks import account_issues, deploy_identity_issues
from infra.config._issues import ConfigIssue
from infra.config._monitoring import MonitoringConfig
from infra.config._parts import Names, Parts, known, target_issues
from infra.config._pubsub_checks import topic_issues
from infra.config._run_checks import service_issues
from infra.config._stack import PLATFORM_KEY, FirestoreConfig
from infra.naming import Kind, physical_name

__all__ = ["stack_issues"]

# A Pulumi config key's name part (without the namespace): what `pulumi config set` takes.
CONFIG_KEY_RE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*")


def stack_issues(parts: Parts, prefix: str = PLATFORM_KEY) -> Iterator[ConfigIssue]:
    """Every cross-field and stack-wide problem of ``parts``."""
    for name, svc in parts.services.items():
        yield from service_issues(parts, prefix, name, svc)
    names = Names()
    yield from topic_issues(parts, prefix, names)
    yield from account_issues(parts, prefix, names)

    for secret, spec in parts.secrets.items():
        path = f"{prefix}.secrets.{secret}"
        if not limits.SECRET_ID_RE.fullmatch(physical_name(Kind.SECRET, secret, parts.stack)):
            yield ConfigIssue(
                f"{path} (key)",
                "not a valid Secret Manager secret id (1-255 letters, digits, '-' and '_')",
            )
        key = spec.config_key if spec is not None and spec.config_key else secret
        if key == PLATFORM_KEY:
            yield ConfigIssue(
                f"{path}.config_key" if spec is not None and spec.config_key else f"{path} (key)",
                f"'{key}' is the config key holding the platform topology itself: give the "
                "secret's value its own key (config_key: <name>-value)",
            )
        elif not CONFIG_KEY_RE.fullmatch(key):
            yield ConfigIssue(
                f"{path}.config_key" if spec is not None and spec.config_key else f"{path} (key)",
                f"'{key}' is not a Pulumi config key name (letters, digits, '-', '_', '.'; "
                "no namespace: the project's own namespace is used)",
            )

    for job, spec in parts.schedules.items():
        path = f"{prefix}.schedules.{job}"
        if not limits.SCHEDULER_JOB_ID_RE.fullmatch(
            physical_name(Kind.SCHEDULER_JOB, job, parts.stack)
        ):
            yield ConfigIssue(
                f"{path} (key)",
                "not a valid Cloud Scheduler job id (letters, digits, '-' and '_', at most "
                "500 characters with the stack suffix)",
            )
        if spec is not None:
            yield from target_issues(parts, path, spec.service, spec.path)

    if parts.repository is not None and not limits.REPOSITORY_ID_RE.fullmatch(parts.repository):
        yield ConfigIssue(
            f"{prefix}.artifact_repository",
            f"'{parts.repository}' is not a repository id (lowercase letters, digits, hyphens; "
            "starting with a letter, at most 63 characters)",
        )

    if parts.firestore is not None:
        yield from _firestore_issues(parts, prefix, parts.firestore)

    if parts.monitoring is not None:
        yield from _monitoring_issues(parts, prefix, parts.monitoring)

    yield from deploy_identity_issues(parts, prefix)


def _firestore_issues(parts: Parts, prefix: str, fs: FirestoreConfig) -> Iterator[ConfigIssue]:
    db = fs.database
    if db != limits.FIRESTORE_DEFAULT_DATABASE and (
        not limits.FIRESTORE_DATABASE_ID_RE.fullmatch(db)
        or limits.FIRESTORE_UUID_LIKE_RE.fullmatch(db)
    ):
        yield ConfigIssue(
            f"{prefix}.firestore.database",
            f"'{db}' is not a Firestore database id: '(default)', or 4-63 lowercase letters, "
            "digits and hyphens starting with a letter, not ending with a hyphen, not a UUID",
        )
    location = fs.location or parts.region
    if location and location not in limits.FIRESTORE_LOCATIONS:
        where = "firestore.location" if fs.location else "gcp:region (the default location)"
        multi = ", ".join(sorted(limits.FIRESTORE_MULTI_REGIONS))
        yield ConfigIssue(
            f"{prefix}.firestore.location",
            f"{where} '{location}' is not a Firestore location: a multi-region ({multi}) or a "
            "region Firestore lists (https://cloud.google.com/firestore/docs/locations)",
        )


def _monitoring_issues(parts: Parts, prefix: str, mon: MonitoringConfig) -> Iterator[ConfigIssue]:
    path = f"{prefix}.monitoring.notify"
    if not mon.notify.any:
        yield ConfigIssue(
            path,
            "the stack's alerts would notify nobody: give at least one of emails, slack, webhook",
        )
    refs = []
    if mon.notify.slack is not None:
        refs.append(("slack.token_secret", mon.notify.slack.token_secret))
    if mon.notify.webhook is not None:
        refs.append(("webhook.url_secret", mon.notify.webhook.url_secret))
    for key, secret in refs:
        if secret not in parts.secrets:
            yield ConfigIssue(
                f"{path}.{key}",
                f"unknown secret '{secret}' (known: {known(parts.secrets)}): declare it under "
                "platform.secrets so its value lives in Secret Manager",
            )
        used_by = [
            name
            for name, svc in parts.services.items()
            if svc is not None and secret in svc.secret_env.values()
        ]
        if used_by:
            yield ConfigIssue(
                f"{path}.{key}",
                f"secret '{secret}' is also read by {', '.join(used_by)}: a channel's "
                "credential gets a secret of its own, readable by no service",
            )
