"""What the local platform runs, read from the registered resource graph (the offline plan).

No second description of the topology: topics, subscriptions, services and scheduler jobs are
taken from the resources ``infra/`` registers (:func:`scripts.plan.evaluate_stack`), in
the provider's camelCase input names. Cloud Run URLs (the mock's ``uri`` output) are kept as
they are here; :meth:`Topology.localise` rewrites them to the local services' ports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infra import limits
from infra.durations import api_seconds
from policy.graph import Graph, Resource, T

__all__ = [
    "TopicSpec",
    "SubscriptionSpec",
    "ServiceSpec",
    "JobSpec",
    "AlertWatch",
    "Topology",
    "TopologyError",
    "topology_from_resources",
    "dangling_topics",
    "NOT_APPLIED",
]


class TopologyError(ValueError):
    """The graph cannot run locally (e.g. a push endpoint that is not one of its services)."""


#: What the local platform does instead of creating each resource type the program registers.
NOT_APPLIED: dict[str, str] = {
    T.FIRESTORE_INDEX: "skipped: the emulator needs no composite index (and does not enforce them)",
    T.FIRESTORE_DATABASE: "the Firestore emulator's (default) database",
    T.CLOUD_RUN: "a local uvicorn process, started from its Dockerfile's CMD",
    T.IMAGE: "not built: services run from the checkout, as their Dockerfile's CMD names",
    T.SCHEDULER_JOB: "the local scheduler (same cron, same path)",
    T.SECRET: "a value from .local/secrets.yaml (generated if absent)",
    T.SECRET_VERSION: "a value from .local/secrets.yaml (generated if absent)",
    T.SERVICE_ACCOUNT: "not enforced by the emulators (no IAM)",
    T.RUN_INVOKER_MEMBER: "not enforced by the emulators (no IAM): the preflight's job",
    T.TOPIC_IAM_MEMBER: "not enforced by the emulators (no IAM): the preflight's job",
    T.SUBSCRIPTION_IAM_MEMBER: "not enforced by the emulators (no IAM): the preflight's job",
    T.SECRET_IAM_MEMBER: "not enforced by the emulators (no IAM): the preflight's job",
    T.PROJECT_IAM_MEMBER: "not enforced by the emulators (no IAM): the preflight's job",
    T.SERVICE_ACCOUNT_IAM_MEMBER: "not enforced by the emulators (no IAM): the preflight's job",
    T.REPOSITORY_IAM_MEMBER: "not enforced by the emulators (no IAM): the preflight's job",
    T.PROJECT_SERVICE: "nothing to enable locally",
    T.REPOSITORY: "no registry locally",
    **dict.fromkeys(
        (T.ALERT_POLICY, T.NOTIFICATION_CHANNEL, T.DASHBOARD, T.LOG_METRIC),
        "Cloud Monitoring has no emulator: alerts, channels, dashboard and log metrics apply "
        "only in the cloud; `platform local status` shows the local equivalents",
    ),
}


def _seconds(value: Any, default: int | None = None) -> int | None:
    """A Duration input (``"600s"``, the API's JSON form; or a number) in whole seconds;
    ``""``/``None`` -> ``default``."""
    if value is None or value == "":
        return default
    seconds = api_seconds(value)
    if seconds is None:
        raise ValueError(f"{value!r} is not a duration (e.g. 600s)")
    return int(seconds)


def _short(path: str) -> str:
    """``projects/P/topics/T`` -> ``T``."""
    return str(path).rsplit("/", 1)[-1]


@dataclass(frozen=True)
class TopicSpec:
    name: str  # the topic id (the physical name)
    resource: str  # the logical resource name in the graph


@dataclass(frozen=True)
class SubscriptionSpec:
    name: str
    resource: str
    topic: str  # topic id
    push_endpoint: str | None = None  # None: a pull subscription
    ack_deadline_seconds: int = limits.PUBSUB_DEFAULT_ACK_DEADLINE_S
    min_backoff_seconds: int | None = None  # None: no retry policy (immediate redelivery)
    max_backoff_seconds: int | None = None
    dead_letter_topic: str | None = None  # topic id
    max_delivery_attempts: int | None = None
    retain_acked_messages: bool = False
    message_retention_seconds: int | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """A Cloud Run service as the program declares it."""

    name: str
    resource: str
    url: str  # the Cloud Run URL (a mock value offline)
    env: Mapping[str, str]  # plain env vars, exactly as the program sets them
    secret_env: Mapping[str, str]  # env var -> secret id
    dockerfile: Path | None  # from the image the service depends on
    timeout_seconds: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class JobSpec:
    """A Cloud Scheduler job as the program declares it."""

    name: str
    resource: str
    schedule: str
    time_zone: str
    method: str
    uri: str  # the job's target (Cloud Run URL + path) until localised
    body: str | None = None
    retry_count: int = 0
    min_backoff_seconds: int = limits.SCHEDULER_DEFAULT_MIN_BACKOFF_S
    max_backoff_seconds: int = limits.SCHEDULER_DEFAULT_MAX_BACKOFF_S
    attempt_deadline_seconds: int = limits.SCHEDULER_DEFAULT_HTTP_ATTEMPT_DEADLINE_S


@dataclass(frozen=True)
class AlertWatch:
    """A cloud alert policy the local status can judge from the emulators (its kind is
    ``infra.monitoring.AlertKind``'s value)."""

    kind: str
    policy: str  # the alert policy's resource name
    watches: tuple[str, ...]  # physical names: subscriptions or services
    condition: str  # the cloud condition, in words
    threshold: float
    section: str  # its section of the runbook
    runbook: str  # ``docs/runbooks.md#anchor``


@dataclass(frozen=True)
class Topology:
    project: str
    topics: tuple[TopicSpec, ...]
    subscriptions: tuple[SubscriptionSpec, ...]
    services: tuple[ServiceSpec, ...]
    jobs: tuple[JobSpec, ...]
    #: (type, name, what happens instead) for each resource not applied to an emulator.
    notes: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    #: The declared alerts with a local equivalent (:func:`scripts.local._monitoring.watches`).
    alerts: tuple[AlertWatch, ...] = field(default_factory=tuple)

    def service(self, name: str) -> ServiceSpec:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(f"no service {name!r} (known: {', '.join(s.name for s in self.services)})")

    def secret_ids(self) -> set[str]:
        """The Secret Manager ids the services read (what ``secrets.yaml`` must hold)."""
        return {s for svc in self.services for s in svc.secret_env.values()}

    def coordinator(self) -> ServiceSpec | None:
        """The service that takes ``/start``: the one reading the API-key secret."""
        return next((s for s in self.services if s.secret_env), None)

    def alert(self, kind: str, watched: str) -> AlertWatch | None:
        """The declared alert of ``kind`` watching ``watched`` (a physical name), if any."""
        return next((a for a in self.alerts if a.kind == kind and watched in a.watches), None)

    def dead_letter_subscriptions(self) -> list[SubscriptionSpec]:
        """Pull subscriptions on a topic some subscription dead-letters to."""
        dl_topics = {s.dead_letter_topic for s in self.subscriptions if s.dead_letter_topic}
        return [s for s in self.subscriptions if s.topic in dl_topics and not s.push_endpoint]

    def localise(self, bases: Mapping[str, str]) -> Topology:
        """Rewrite every Cloud Run URL (push endpoints, job targets) to a local base URL.

        ``bases``: service name -> ``http://127.0.0.1:PORT``. Raises TopologyError for an
        endpoint that is not one of the graph's services (it would push to the internet).
        """
        by_url = {s.url.rstrip("/"): bases[s.name].rstrip("/") for s in self.services}

        def rewrite(url: str, what: str) -> str:
            for cloud, local in by_url.items():
                if url == cloud or url.startswith(cloud + "/"):
                    return local + url[len(cloud) :]
            raise TopologyError(
                f"{what}: endpoint {url!r} is not the URL of a service of this stack "
                f"(known: {', '.join(sorted(by_url)) or 'none'}); it cannot run locally"
            )

        subs = tuple(
            replace(s, push_endpoint=rewrite(s.push_endpoint, f"subscription {s.name}"))
            if s.push_endpoint
            else s
            for s in self.subscriptions
        )
        jobs = tuple(replace(j, uri=rewrite(j.uri, f"scheduler job {j.name}")) for j in self.jobs)
        return replace(self, subscriptions=subs, jobs=jobs)


def program_dir(root: Path) -> Path:
    """Where Pulumi runs the program (``main:`` in ``Pulumi.yaml``): relative paths in the
    program's inputs (a build context, a Dockerfile) are relative to it."""
    import yaml

    try:
        doc = yaml.safe_load((root / "Pulumi.yaml").read_text()) or {}
    except OSError:
        return root
    return (root / str(doc.get("main") or ".")).resolve()


def _dockerfile(graph: Graph, service: Resource, root: Path) -> Path | None:
    for image in graph.deps(service, T.IMAGE):
        location = image.get("dockerfile.location")
        if location:
            context = image.get("context.location")
            if context:
                # The Dockerfile's place in its build context does not depend on where the
                # program ran: under `root` as the context root (a release tree of a commit,
                # or a checkout evaluated by another checkout's program).
                inside = os.path.relpath(os.path.normpath(location), os.path.normpath(context))
                if not inside.startswith(".."):
                    path = (root / inside).resolve()
                    if path.exists():
                        return path
            for base in (program_dir(root), root):
                path = (base / str(location)).resolve()
                if path.exists():
                    return path
            return (program_dir(root) / str(location)).resolve()
    return None


def _service(graph: Graph, r: Resource, root: Path) -> ServiceSpec:
    container = r.get("template.containers[0]") or {}
    env: dict[str, str] = {}
    secret_env: dict[str, str] = {}
    for item in container.get("envs") or ():
        name = item.get("name")
        ref = (item.get("valueSource") or {}).get("secretKeyRef")
        if ref:
            secret_env[name] = _short(ref.get("secret", ""))
        else:
            env[name] = "" if item.get("value") is None else str(item.get("value"))
    return ServiceSpec(
        name=str(r.get("name") or r.name),
        resource=r.name,
        url=str(r.out("uri") or ""),
        env=env,
        secret_env=secret_env,
        dockerfile=_dockerfile(graph, r, root),
        timeout_seconds=_seconds(r.get("template.timeout")),
        concurrency=r.get("template.maxInstanceRequestConcurrency"),
    )


def _subscription(r: Resource) -> SubscriptionSpec:
    """A subscription's inputs; what it leaves unset takes Pub/Sub's own default."""
    retry = r.get("retryPolicy") or None
    dead = r.get("deadLetterPolicy") or None
    backoff = (
        (
            _seconds(retry.get("minimumBackoff"), limits.PUBSUB_DEFAULT_MIN_BACKOFF_S),
            _seconds(retry.get("maximumBackoff"), limits.PUBSUB_DEFAULT_MAX_BACKOFF_S),
        )
        if retry
        else (None, None)  # no retry policy: immediate redelivery
    )
    attempts = dead.get("maxDeliveryAttempts") if dead else None
    return SubscriptionSpec(
        name=str(r.get("name") or r.name),
        resource=r.name,
        topic=_short(r.get("topic")),
        push_endpoint=r.get("pushConfig.pushEndpoint") or None,
        ack_deadline_seconds=int(
            r.get("ackDeadlineSeconds") or limits.PUBSUB_DEFAULT_ACK_DEADLINE_S
        ),
        min_backoff_seconds=backoff[0],
        max_backoff_seconds=backoff[1],
        dead_letter_topic=_short(dead["deadLetterTopic"]) if dead else None,
        max_delivery_attempts=int(attempts or limits.PUBSUB_DEFAULT_DELIVERY_ATTEMPTS)
        if dead
        else None,
        retain_acked_messages=bool(r.get("retainAckedMessages") or False),
        message_retention_seconds=_seconds(r.get("messageRetentionDuration")),
    )


def _job(r: Resource) -> JobSpec:
    target = r.get("httpTarget") or {}
    retry = r.get("retryConfig") or {}
    return JobSpec(
        name=str(r.get("name") or r.name),
        resource=r.name,
        schedule=str(r.get("schedule")),
        time_zone=str(r.get("timeZone") or limits.SCHEDULER_DEFAULT_TIME_ZONE),
        method=str(target.get("httpMethod") or "POST"),
        uri=str(target.get("uri") or ""),
        body=target.get("body") or None,
        retry_count=int(retry.get("retryCount") or 0),
        min_backoff_seconds=_seconds(
            retry.get("minBackoffDuration"), limits.SCHEDULER_DEFAULT_MIN_BACKOFF_S
        ),
        max_backoff_seconds=_seconds(
            retry.get("maxBackoffDuration"), limits.SCHEDULER_DEFAULT_MAX_BACKOFF_S
        ),
        attempt_deadline_seconds=_seconds(
            r.get("attemptDeadline"), limits.SCHEDULER_DEFAULT_HTTP_ATTEMPT_DEADLINE_S
        ),
    )


def topology_from_resources(resources: list[Resource], *, project: str, root: Path) -> Topology:
    """The local topology of a registered resource graph (Cloud Run URLs not yet rewritten)."""
    graph = Graph(resources)
    topics = tuple(
        TopicSpec(name=str(r.get("name") or r.name), resource=r.name)
        for r in graph.of_type(T.TOPIC)
    )
    subs = tuple(_subscription(r) for r in graph.of_type(T.SUBSCRIPTION))
    services = tuple(_service(graph, r, root) for r in graph.of_type(T.CLOUD_RUN))
    jobs = tuple(_job(r) for r in graph.of_type(T.SCHEDULER_JOB))
    notes = tuple(
        (r.type, r.name, NOT_APPLIED[r.type])
        for r in resources
        if r.custom and r.type in NOT_APPLIED
    )
    unknown = sorted(
        {r.type for r in resources if r.custom and r.type not in NOT_APPLIED}
        - {T.TOPIC, T.SUBSCRIPTION}
    )
    notes += tuple((t, "*", "no local equivalent: ignored") for t in unknown)
    return Topology(
        project=project,
        topics=topics,
        subscriptions=subs,
        services=services,
        jobs=jobs,
        notes=notes,
    )


def dangling_topics(topology: Topology) -> list[str]:
    """Topics (dead-letter topics included) that no subscription reads: messages lost."""
    read = {s.topic for s in topology.subscriptions}
    return [t.name for t in topology.topics if t.name not in read]
