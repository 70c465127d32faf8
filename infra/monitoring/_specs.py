"""What is watched, derived from the typed topology: pure data, no Pulumi resources.

One :class:`AlertSpec` per policy: the components turn them into ``gcp.monitoring``
resources, the tests and the preflight rule read what they became. Physical names come from
the one naming function, so a filter names exactly the subscription or service the program
creates, and is known at preview time (the rule can judge a first preview).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from infra import limits
from infra.config import StackConfig, SubscriptionConfig
from infra.durations import api_duration
from infra.naming import Kind
from shared.events import EVENT_FIELD, STUCK_BATCH_EVENTS

__all__ = [
    "AlertKind",
    "AlertSpec",
    "RUNBOOK",
    "RUNBOOK_SECTIONS",
    "BATCH_EVENTS_METRIC",
    "alert_specs",
    "anchor",
    "backlog_threshold_seconds",
    "batch_events_filter",
    "batch_event_services",
    "dead_letter_subscriptions",
    "push_subscriptions",
]

RUNBOOK = "docs/runbooks.md"
#: The logical name of the log-based metric counting the coordinator's batch events.
BATCH_EVENTS_METRIC = "batch-events"
ALIGN_S = 300  # rates and counts over five minutes: smooth enough, still prompt


class AlertKind(StrEnum):
    DEAD_LETTERS = "dead-letters"
    BACKLOG_AGE = "backlog-age"
    PUSH_ERRORS = "push-errors"
    SERVER_ERRORS = "server-errors"
    AT_MAX_INSTANCES = "at-max-instances"
    STUCK_BATCHES = "stuck-batches"
    SCHEDULER_FAILING = "scheduler-failing"


#: Each alert's section in docs/runbooks.md (a test holds the runbook to these headings).
RUNBOOK_SECTIONS = {
    AlertKind.DEAD_LETTERS: "Alert: dead letters retained",
    AlertKind.BACKLOG_AGE: "Alert: push backlog too old",
    AlertKind.PUSH_ERRORS: "Alert: push deliveries failing",
    AlertKind.SERVER_ERRORS: "Alert: service 5xx share",
    AlertKind.AT_MAX_INSTANCES: "Alert: service at max instances",
    AlertKind.STUCK_BATCHES: "Alert: batches closed abnormally",
    AlertKind.SCHEDULER_FAILING: "Alert: scheduled job failing",
}


def anchor(heading: str) -> str:
    """The GitHub anchor of a markdown heading."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -")
    return kept.strip().replace(" ", "-")


@dataclass(frozen=True)
class AlertSpec:
    key: str  # the Pulumi resource name, unique in the stack
    kind: AlertKind
    display_name: str
    summary: str  # what it means, one sentence (the documentation's first line)
    watches: tuple[str, ...]  # physical names of what it covers (subscriptions, services, jobs)
    # Exactly one of: a metric threshold (the API's conditionThreshold, snake_case keys as the
    # Pulumi Args take them) or a log match (conditionMatchedLog).
    threshold: dict[str, Any] | None = None
    log_filter: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def runbook_section(self) -> str:
        return RUNBOOK_SECTIONS[self.kind]

    def documentation(self) -> str:
        section = self.runbook_section
        return (
            f"{self.summary}\n\n"
            f'Runbook: {RUNBOOK}, section "{section}" (#{anchor(section)}).\n'
            f"Watches: {', '.join(self.watches)}."
        )


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class _Monitored:
    """A monitored resource type and the label naming one resource of it."""

    type: str
    label: str

    def filter(self, metric: str, name: str, extra: str = "") -> str:
        return (
            f"metric.type = {_q(metric)} AND resource.type = {_q(self.type)} AND "
            f"{self.label} = {_q(name)}{extra}"
        )


_SUBSCRIPTION = _Monitored("pubsub_subscription", "resource.label.subscription_id")
_REVISION = _Monitored("cloud_run_revision", "resource.label.service_name")


def _agg(aligner: str, reducer: str, group_by: list[str], period: int = ALIGN_S) -> dict:
    return {
        "alignment_period": api_duration(period),
        "per_series_aligner": aligner,
        "cross_series_reducer": reducer,
        "group_by_fields": group_by,
    }


def backlog_threshold_seconds(sub: SubscriptionConfig, margin_s: int) -> int:
    """How old a push subscription's oldest message may get while delivery still works.

    A message may legitimately wait through every attempt: ``max_delivery_attempts`` times
    the ack deadline (a push request runs at most that long), plus Pub/Sub's exponential
    backoff between attempts (doubling from ``min_backoff`` up to ``max_backoff``); after the
    last attempt it is dead-lettered, leaving the backlog. Older than that (plus the margin
    for a large batch still draining) means nothing is being delivered at all.
    https://cloud.google.com/pubsub/docs/handling-failures#exponential_backoff
    """
    waits = sum(
        min(sub.max_backoff_seconds, sub.min_backoff_seconds * 2**k)
        for k in range(sub.max_delivery_attempts - 1)
    )
    return sub.max_delivery_attempts * sub.ack_deadline_seconds + waits + margin_s


def push_subscriptions(cfg: StackConfig) -> list[tuple[str, SubscriptionConfig]]:
    """(physical name, config) of every push subscription, in config order."""
    return [
        (cfg.name(Kind.SUBSCRIPTION, sub.logical_name(key)), sub)
        for key, topic in cfg.platform.topics.items()
        for sub in topic.subscriptions
    ]


def dead_letter_subscriptions(cfg: StackConfig) -> list[str]:
    return [cfg.name(Kind.DEAD_LETTER_SUBSCRIPTION, key) for key in cfg.platform.topics]


def batch_event_services(cfg: StackConfig) -> list[str]:
    """The Cloud Run services that log batch events: the batch coordinators (those with a
    stall-check path)."""
    return [
        cfg.name(Kind.SERVICE, name)
        for name, svc in cfg.platform.services.items()
        if svc.stall_check_path
    ]


def batch_events_filter(services: list[str]) -> str:
    """The log filter of the batch-events metric: the coordinator's structured events whose
    names are the contract in ``shared/events.py``."""
    names = " OR ".join(_q(str(e)) for e in STUCK_BATCH_EVENTS)
    where = " OR ".join(_q(s) for s in services)
    scope = f" AND resource.labels.service_name = ({where})" if services else ""
    return f'resource.type = "cloud_run_revision"{scope} AND jsonPayload.{EVENT_FIELD} = ({names})'


def _threshold(
    filter_: str,
    value: float,
    for_seconds: int,
    aggregations: list[dict[str, Any]],
    *,
    comparison: str = "COMPARISON_GT",
    denominator: str | None = None,
) -> dict[str, Any]:
    """A threshold condition: ``filter_`` (over ``denominator``, aggregated alike, for a
    ratio) compared with ``value`` for ``for_seconds``."""
    threshold: dict[str, Any] = {
        "filter": filter_,
        "comparison": comparison,
        "threshold_value": value,
        "duration": api_duration(for_seconds),
        "aggregations": aggregations,
    }
    if denominator is not None:
        threshold["denominator_filter"] = denominator
        threshold["denominator_aggregations"] = [dict(a) for a in aggregations]
    return threshold


def _peak_above(filter_: str, value: float, for_seconds: int) -> dict[str, Any]:
    """The series' maximum, at the finest alignment Monitoring allows, above ``value``."""
    align = {
        "alignment_period": api_duration(limits.MONITORING_MIN_ALIGNMENT_S),
        "per_series_aligner": "ALIGN_MAX",
    }
    return _threshold(filter_, value, for_seconds, [align])


def _share_above(
    on: _Monitored, metric: str, name: str, failed: str, ratio: float, for_seconds: int
) -> dict[str, Any]:
    """The rate of ``metric`` matching ``failed`` over its whole rate above ``ratio``."""
    return _threshold(
        on.filter(metric, name, failed),
        ratio,
        for_seconds,
        [_agg("ALIGN_RATE", "REDUCE_SUM", [on.label])],
        denominator=on.filter(metric, name),
    )


class _Wording(NamedTuple):
    title: str  # the display name, after "[<stack>] "
    summary: str


#: What each alert says: ``{name}`` is the physical name it watches, other fields its facts.
_WORDING = {
    AlertKind.DEAD_LETTERS: _Wording(
        "Dead letters retained in {name}",
        "Messages were dead-lettered into {name}: their deliveries failed every attempt, and "
        "the work they carry is not done.",
    ),
    AlertKind.BACKLOG_AGE: _Wording(
        "Push backlog of {name} older than {limit}s",
        "The oldest undelivered message of {name} is older than {limit} s, more than every "
        "delivery attempt and backoff could take: pushes are not reaching or not finishing in "
        "the service.",
    ),
    AlertKind.PUSH_ERRORS: _Wording(
        "Push errors on {name} above {ratio:.0%}",
        "More than {ratio:.0%} of the pushes of {name} were not acknowledged (5xx, 429, "
        "timeouts, refused tokens): messages are being retried and will be dead-lettered.",
    ),
    AlertKind.SERVER_ERRORS: _Wording(
        "{name}: 5xx above {ratio:.0%}",
        "More than {ratio:.0%} of the requests {name} answered were 5xx: the service itself is "
        "failing (permanent item failures are answered 2xx and do not count).",
    ),
    AlertKind.AT_MAX_INSTANCES: _Wording(
        "{name} at max_instances ({max_instances})",
        "{name} has run at its max_instances ({max_instances}) for {for_seconds} s: requests "
        "queue and are refused (429), so pushes retry and batches slow down.",
    ),
    AlertKind.STUCK_BATCHES: _Wording(
        "Batches closed abnormally",
        "The coordinator closed a batch abnormally ({events}): some of its items were never done.",
    ),
    AlertKind.SCHEDULER_FAILING: _Wording(
        "Scheduled job {name} failing",
        "An attempt of the Cloud Scheduler job {name} failed (an error status from the "
        "service, a refused token, or a deadline): the sweep it runs did not happen.",
    ),
}


def _spec(
    stack: str,
    kind: AlertKind,
    name: str | None,
    *,
    threshold: dict[str, Any] | None = None,
    log_filter: str | None = None,
    watches: tuple[str, ...] | None = None,
    **facts: Any,
) -> AlertSpec:
    """The alert of ``kind`` on ``name`` (None for one alert a stack), worded from the table.

    Its key (the Pulumi resource name) is ``alert-<kind>[-<name>]``.
    """
    wording = _WORDING[kind]
    return AlertSpec(
        key=f"alert-{kind}-{name}" if name else f"alert-{kind}",
        kind=kind,
        display_name=f"[{stack}] " + wording.title.format(name=name, **facts),
        summary=wording.summary.format(name=name, **facts),
        watches=watches if watches is not None else (name,),  # type: ignore[arg-type]
        threshold=threshold,
        log_filter=log_filter,
    )


def alert_specs(cfg: StackConfig) -> list[AlertSpec]:
    """Every alert policy the stack declares (none without ``platform.monitoring``)."""
    mon = cfg.platform.monitoring
    if mon is None:
        return []
    th = mon.thresholds
    stack = cfg.stack
    specs: list[AlertSpec] = []

    for dl in dead_letter_subscriptions(cfg):
        undelivered = _SUBSCRIPTION.filter(limits.METRIC_PUBSUB_UNDELIVERED, dl)
        specs.append(
            _spec(
                stack,
                AlertKind.DEAD_LETTERS,
                dl,
                threshold=_peak_above(undelivered, 0, th.dead_letter_for_seconds),
            )
        )
    for name, sub in push_subscriptions(cfg):
        limit = backlog_threshold_seconds(sub, th.backlog_margin_seconds)
        oldest = _SUBSCRIPTION.filter(limits.METRIC_PUBSUB_OLDEST_UNACKED_AGE, name)
        threshold = _peak_above(oldest, limit, th.backlog_for_seconds)
        specs.append(_spec(stack, AlertKind.BACKLOG_AGE, name, threshold=threshold, limit=limit))
        ratio = th.push_error_ratio
        threshold = _share_above(
            _SUBSCRIPTION,
            limits.METRIC_PUBSUB_PUSH_REQUESTS,
            name,
            ' AND metric.label.response_class != "ack"',
            ratio,
            th.push_error_for_seconds,
        )
        specs.append(_spec(stack, AlertKind.PUSH_ERRORS, name, threshold=threshold, ratio=ratio))
    for logical, svc in cfg.platform.services.items():
        name = cfg.name(Kind.SERVICE, logical)
        ratio = th.server_error_ratio
        threshold = _share_above(
            _REVISION,
            limits.METRIC_RUN_REQUESTS,
            name,
            ' AND metric.label.response_code_class = "5xx"',
            ratio,
            th.server_error_for_seconds,
        )
        specs.append(_spec(stack, AlertKind.SERVER_ERRORS, name, threshold=threshold, ratio=ratio))
        for_seconds = th.at_max_instances_for_seconds
        threshold = _threshold(
            _REVISION.filter(limits.METRIC_RUN_INSTANCES, name),
            svc.max_instances,
            for_seconds,
            [_agg("ALIGN_MAX", "REDUCE_SUM", [_REVISION.label], limits.MONITORING_MIN_ALIGNMENT_S)],
            comparison="COMPARISON_GE",
        )
        specs.append(
            _spec(
                stack,
                AlertKind.AT_MAX_INSTANCES,
                name,
                threshold=threshold,
                max_instances=svc.max_instances,
                for_seconds=for_seconds,
            )
        )
    coordinators = batch_event_services(cfg)
    if coordinators:
        metric = limits.USER_METRIC_PREFIX + cfg.name(Kind.LOG_METRIC, BATCH_EVENTS_METRIC)
        threshold = _threshold(
            f'metric.type = {_q(metric)} AND resource.type = "cloud_run_revision"',
            0,
            0,
            [_agg("ALIGN_SUM", "REDUCE_SUM", [f"metric.label.{EVENT_FIELD}"])],
        )
        events = ", ".join(f'"{e}"' for e in STUCK_BATCH_EVENTS)
        specs.append(
            _spec(
                stack,
                AlertKind.STUCK_BATCHES,
                None,
                threshold=threshold,
                watches=tuple(coordinators),
                events=events,
            )
        )
    for key in cfg.platform.schedules:
        job = cfg.name(Kind.SCHEDULER_JOB, key)
        # Cloud Scheduler logs each attempt on the job; failed ones at ERROR.
        # https://cloud.google.com/scheduler/docs/view-logs
        failed = (
            'resource.type = "cloud_scheduler_job" AND '
            f"resource.labels.job_id = {_q(job)} AND severity >= ERROR"
        )
        specs.append(_spec(stack, AlertKind.SCHEDULER_FAILING, job, log_filter=failed))
    return specs
