"""Rules across fields and across the stack, over the typed config objects.

Each part of the config (a service, a subscription, a job...) is validated on its own first
(``_parse.py``), so these rules see typed objects with their defaults applied, and still run
for every part that is valid when another is not: every problem is reported at once. A part
that failed its own validation is ``None`` here and its own errors are already reported.

The rule that matters most here is about physical names: what GCP sees after
:func:`infra.naming.physical_name` derives them must be valid and unique in the project.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from infra import limits
from infra.config._deploy import DeployConfig
from infra.config._formats import placeholder_problems, substitute
from infra.config._issues import ConfigIssue
from infra.config._monitoring import MonitoringConfig
from infra.config._schedules import ScheduleConfig
from infra.config._services import ServiceConfig
from infra.config._stack import PLATFORM_KEY, FirestoreConfig, SecretConfig
from infra.config._topics import SubscriptionConfig
from infra.naming import DEAD_LETTER_SUFFIX, Kind, physical_name

__all__ = ["Parts", "stack_issues", "cpu_memory_problems"]

# The platform's own env-name rule (stricter than Cloud Run's): a POSIX-portable name, so the
# same variable works in the services' shells, the local platform and the test harness.
# https://pubs.opengroup.org/onlinepubs/9699919799/basedefs/V1_chap08.html
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A Pulumi config key's name part (without the namespace): what `pulumi config set` takes.
CONFIG_KEY_RE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*")


@dataclass(frozen=True)
class Parts:
    """The stack's parts, each typed on its own (``None``: invalid, already reported)."""

    stack: str
    project: str | None
    region: str | None
    services: Mapping[str, ServiceConfig | None] = field(default_factory=dict)
    # topic key -> its subscriptions (None: the topic's subscriptions are not a list)
    topics: Mapping[str, list[SubscriptionConfig | None] | None] = field(default_factory=dict)
    secrets: Mapping[str, SecretConfig | None] = field(default_factory=dict)
    schedules: Mapping[str, ScheduleConfig | None] = field(default_factory=dict)
    firestore: FirestoreConfig | None = None
    deploy: DeployConfig | None = None
    repository: str | None = None
    monitoring: MonitoringConfig | None = None


def _known(names: object) -> str:
    return ", ".join(sorted(map(str, names))) or "none declared"  # type: ignore[call-overload]


def cpu_memory_problems(svc: ServiceConfig) -> list[str]:
    """What Cloud Run would reject in this cpu/memory/concurrency/billing combination.

    https://cloud.google.com/run/docs/configuring/services/cpu and .../memory-limits
    """
    cpu, mem = svc.cpu_vcpus, svc.memory_mib
    errors = []
    if cpu < 1:
        for below, max_mib in limits.RUN_FRACTIONAL_MEMORY_MAX_MIB:
            if cpu < below and mem > max_mib:
                errors.append(
                    f"memory {svc.memory} needs at least {below:g} vCPU (cpu is {svc.cpu})"
                )
                break
        if svc.concurrency != 1:
            errors.append(f"cpu below 1 requires concurrency 1 (got {svc.concurrency})")
        if not svc.cpu_idle:
            errors.append("cpu below 1 requires cpu_idle: true (request-based billing)")
        return errors
    low, high = limits.RUN_CPU_MEMORY_MIB[int(cpu)]
    if not low <= mem <= high:
        errors.append(
            f"memory {svc.memory} is outside {low}Mi-{high // limits.MIB_PER_GIB}Gi, "
            f"the range Cloud Run accepts for {int(cpu)} vCPU"
        )
    return errors


def _env_name_problems(var: str) -> list[str]:
    # Cloud Run's rules first (reserved, X_GOOGLE_, "="), then the platform's stricter shape.
    if var in limits.RUN_RESERVED_ENV:
        return [
            f"'{var}' is set by Cloud Run itself (container runtime contract): use another name"
        ]
    if var.startswith(limits.RUN_RESERVED_ENV_PREFIX):
        return [f"names starting with {limits.RUN_RESERVED_ENV_PREFIX} are reserved by Cloud Run"]
    if not ENV_NAME_RE.fullmatch(var):
        return ["not a valid env var name (letters, digits and '_', not starting with a digit)"]
    if len(var) > limits.RUN_ENV_NAME_MAX:
        return [f"longer than Cloud Run's {limits.RUN_ENV_NAME_MAX} characters"]
    return []


def _service_issues(
    parts: Parts, prefix: str, name: str, svc: ServiceConfig | None
) -> Iterator[ConfigIssue]:
    from shared.contract import CONTRACTS

    path = f"{prefix}.services.{name}"
    if not limits.RUN_SERVICE_NAME_RE.fullmatch(physical_name(Kind.SERVICE, name, parts.stack)):
        yield ConfigIssue(
            f"{path} (key)",
            f"'{name}' is not a Cloud Run service name: lowercase letters, digits and "
            "hyphens, starting with a letter, at most 49 characters",
        )
    for kind in (Kind.RUNTIME_ACCOUNT, Kind.PUSH_ACCOUNT, Kind.SCHEDULER_ACCOUNT):
        account = physical_name(kind, name, parts.stack)
        if not limits.SERVICE_ACCOUNT_ID_RE.fullmatch(account):
            yield ConfigIssue(
                f"{path} (key)",
                f"derived service account id '{account}' is not valid (6-30 lowercase "
                "letters, digits, hyphens): shorten the service name",
            )
            break
    if svc is None:
        return
    for problem in cpu_memory_problems(svc):
        yield ConfigIssue(f"{path}.cpu", problem)

    sections = (("env", svc.env), ("secret_env", svc.secret_env), ("publishes", svc.publishes))
    seen: dict[str, str] = {}
    for section, values in sections:
        for var in values:
            for problem in _env_name_problems(var):
                yield ConfigIssue(f"{path}.{section}.{var}", problem)
            if var in seen:
                yield ConfigIssue(
                    f"{path}.{section}.{var}", f"also set in {path}.{seen[var]}: set it once"
                )
            seen.setdefault(var, section)
    count = len(seen)
    if count > limits.RUN_ENV_MAX_COUNT:
        yield ConfigIssue(
            f"{path}.env",
            f"{count} variables: Cloud Run allows at most {limits.RUN_ENV_MAX_COUNT} per container",
        )

    total = 0
    for var, value in svc.env.items():
        for problem in placeholder_problems(value):
            yield ConfigIssue(f"{path}.env.{var}", problem)
        final = substitute(
            value, project=parts.project or "", region=parts.region or "", stack=parts.stack
        )
        size = len(final.encode())
        total += len(var.encode()) + size
        if size > limits.RUN_ENV_VALUE_MAX_BYTES:
            yield ConfigIssue(
                f"{path}.env.{var}",
                f"value is {size} bytes: Cloud Run allows {limits.RUN_ENV_VALUE_MAX_BYTES} per "
                "variable (put large data in a secret or a file in the image)",
            )
    for var, topic in svc.publishes.items():
        total += len(var.encode()) + len(physical_name(Kind.TOPIC, topic, parts.stack).encode())
    total += sum(len(var.encode()) for var in svc.secret_env)
    if total > limits.RUN_ENV_TOTAL_MAX_BYTES:
        yield ConfigIssue(
            f"{path}.env",
            f"names and values total {total} bytes, above the {limits.RUN_ENV_TOTAL_MAX_BYTES} "
            "bytes Google documents for Cloud Run environment variables",
        )

    for var, secret in svc.secret_env.items():
        if secret not in parts.secrets:
            yield ConfigIssue(
                f"{path}.secret_env.{var}",
                f"unknown secret '{secret}' (declared: {_known(parts.secrets)}; declare it "
                f"under platform.secrets)",
            )
    for var, topic in svc.publishes.items():
        if topic not in parts.topics:
            yield ConfigIssue(
                f"{path}.publishes.{var}",
                f"unknown topic '{topic}' (known: {_known(parts.topics)})",
            )

    contract = CONTRACTS.get(name)
    if contract is None:
        return
    if svc.uses_firestore != contract.uses_firestore:
        yield ConfigIssue(
            f"{path}.uses_firestore",
            f"is {str(svc.uses_firestore).lower()}, but the service's code "
            f"{'uses' if contract.uses_firestore else 'does not use'} Firestore "
            f"(shared/contract.py): set it to {str(contract.uses_firestore).lower()}"
            + ("" if contract.uses_firestore else " (no unused datastore.user grant)"),
        )
    plain = set(svc.env) | set(svc.publishes)
    missing = [v for v in contract.required if v not in plain and v not in svc.secret_env]
    if missing:
        yield ConfigIssue(
            f"{path}.env",
            f"missing {', '.join(missing)}, required by the service's code "
            "(shared/contract.py): set it in env, or publishes for a topic",
        )
    for var in contract.secrets:
        if var in svc.env:
            yield ConfigIssue(
                f"{path}.env.{var}",
                "must be a secret reference (secret_env), never a literal value",
            )
        elif var not in svc.secret_env:
            yield ConfigIssue(
                f"{path}.secret_env",
                f"missing {var}, a secret required by the service's code (shared/contract.py)",
            )


def _target_issues(parts: Parts, path: str, service: str, target: str) -> Iterator[ConfigIssue]:
    if service not in parts.services:
        yield ConfigIssue(
            f"{path}.service", f"unknown service '{service}' (known: {_known(parts.services)})"
        )
        return
    svc = parts.services[service]
    if svc is not None and target not in svc.paths:
        yield ConfigIssue(
            f"{path}.path",
            f"'{target}' is not a path of service '{service}' "
            f"(its paths: {', '.join(svc.paths)}; add it to "
            f"platform.services.{service}.paths if the service serves it)",
        )


def _pubsub_name_ok(name: str) -> bool:
    return bool(limits.PUBSUB_NAME_RE.fullmatch(name)) and not name.startswith(
        limits.PUBSUB_RESERVED_PREFIX
    )


class _Names:
    """Physical names per GCP namespace: the first owner of each, and a clash for the next."""

    def __init__(self) -> None:
        self.owners: dict[tuple[str, str], str] = {}

    def claim(self, namespace: str, name: str, owner: str, what: str) -> ConfigIssue | None:
        first = self.owners.setdefault((namespace, name), owner)
        if first == owner:
            return None
        return ConfigIssue(
            owner,
            f"{what} '{name}' is also the {namespace} of {first}: names must be unique in the "
            "project; rename one",
        )


def _topic_issues(parts: Parts, prefix: str, names: _Names) -> Iterator[ConfigIssue]:
    for topic, subs in parts.topics.items():
        path = f"{prefix}.topics.{topic}"
        for kind in (Kind.TOPIC, Kind.DEAD_LETTER_TOPIC, Kind.DEAD_LETTER_SUBSCRIPTION):
            physical = physical_name(kind, topic, parts.stack)
            if not _pubsub_name_ok(physical):
                yield ConfigIssue(
                    f"{path} (key)",
                    f"'{physical}' is not a valid Pub/Sub name (3-255 letters, digits and "
                    "-_.~+%, starting with a letter, not with 'goog')",
                )
                break
        for issue in (
            names.claim(
                "topic", physical_name(Kind.TOPIC, topic, parts.stack), f"{path} (key)", "topic"
            ),
            names.claim(
                "topic",
                physical_name(Kind.DEAD_LETTER_TOPIC, topic, parts.stack),
                f"{path} (key)",
                "dead-letter topic",
            ),
            names.claim(
                "subscription",
                physical_name(Kind.DEAD_LETTER_SUBSCRIPTION, topic, parts.stack),
                f"{path} (key)",
                "dead-letter subscription",
            ),
            # Pulumi resource names: the dead-letter topic and subscription are "<key>-dead-letter".
            names.claim("Pulumi topic", topic, f"{path} (key)", "Pulumi resource name"),
            names.claim(
                "Pulumi topic",
                f"{topic}-{DEAD_LETTER_SUFFIX}",
                f"{path} (key)",
                "Pulumi resource name",
            ),
            names.claim(
                "Pulumi subscription",
                f"{topic}-{DEAD_LETTER_SUFFIX}",
                f"{path} (key)",
                "Pulumi resource name",
            ),
        ):
            if issue is not None:
                yield issue
        for i, sub in enumerate(subs or []):
            if sub is None:
                continue
            sub_path = f"{path}.subscriptions[{i}]"
            yield from _target_issues(parts, sub_path, sub.service, sub.path)
            logical = sub.logical_name(topic)
            physical = physical_name(Kind.SUBSCRIPTION, logical, parts.stack)
            if not _pubsub_name_ok(physical):
                yield ConfigIssue(
                    f"{sub_path}.name",
                    f"'{physical}' is not a valid Pub/Sub subscription name (3-255 letters, "
                    "digits and -_.~+%, starting with a letter, not with 'goog')",
                )
            for issue in (
                names.claim("subscription", physical, sub_path, "subscription"),
                names.claim("Pulumi subscription", logical, sub_path, "Pulumi resource name"),
            ):
                if issue is not None:
                    yield issue


def _account_issues(parts: Parts, prefix: str, names: _Names) -> Iterator[ConfigIssue]:
    pushed = {s.service for subs in parts.topics.values() for s in subs or [] if s is not None}
    scheduled = {j.service for j in parts.schedules.values() if j is not None}
    if parts.deploy is not None:
        m = limits.SERVICE_ACCOUNT_EMAIL_RE.fullmatch(parts.deploy.service_account)
        if m is not None and m["project"] == parts.project:
            names.claim("service account id", m["account"], f"{prefix}.deploy.service_account", "")
    for name in parts.services:
        created = [Kind.RUNTIME_ACCOUNT]
        created += [Kind.PUSH_ACCOUNT] if name in pushed else []
        created += [Kind.SCHEDULER_ACCOUNT] if name in scheduled else []
        for kind in created:
            account = physical_name(kind, name, parts.stack)
            issue = names.claim(
                "service account id",
                account,
                f"{prefix}.services.{name} (key)",
                "derived account id",
            )
            if issue is not None:
                yield issue


def stack_issues(parts: Parts, prefix: str = PLATFORM_KEY) -> Iterator[ConfigIssue]:
    """Every cross-field and stack-wide problem of ``parts``."""
    for name, svc in parts.services.items():
        yield from _service_issues(parts, prefix, name, svc)
    names = _Names()
    yield from _topic_issues(parts, prefix, names)
    yield from _account_issues(parts, prefix, names)

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
            yield from _target_issues(parts, path, spec.service, spec.path)

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

    if parts.deploy is not None and parts.project:
        m = limits.SERVICE_ACCOUNT_EMAIL_RE.fullmatch(parts.deploy.service_account)
        if m is not None and m["project"] != parts.project:
            yield ConfigIssue(
                f"{prefix}.deploy.service_account",
                f"belongs to project '{m['project']}', not this stack's gcp:project "
                f"'{parts.project}': the bootstrap creates the deploy identity in the stack's "
                "own project",
            )
        builder = parts.deploy.cloudbuild
        m = limits.SERVICE_ACCOUNT_EMAIL_RE.fullmatch(builder.service_account) if builder else None
        if m is not None and m["project"] != parts.project:
            yield ConfigIssue(
                f"{prefix}.deploy.cloudbuild.service_account",
                f"belongs to project '{m['project']}', not this stack's gcp:project "
                f"'{parts.project}': the bootstrap creates the build identity in the stack's "
                "own project",
            )


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
                f"unknown secret '{secret}' (known: {_known(parts.secrets)}): declare it under "
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
