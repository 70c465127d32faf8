"""Monitoring coverage (PF15): every dead-letter and push subscription has an alert watching
it by the metric that shows its trouble, and every alert notifies someone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from infra import limits
from policy.findings import Finding, Rule
from policy.graph import UNKNOWN, Graph, Resource, T, get
from policy.joins import known, topic_matches

from ._registry import rule

_FILTER_TERM_RE = re.compile(
    r'(?P<key>metric\.type|resource\.labels?\.subscription_id)\s*=\s*"(?P<value>[^"]*)"'
)
#: What "covered" means per kind of subscription: the metric an alert must watch it by.
COVERING_METRIC = {
    "dead-letter": limits.METRIC_PUBSUB_UNDELIVERED,
    "push": limits.METRIC_PUBSUB_OLDEST_UNACKED_AGE,
}


def _alert_filters(policy: Resource) -> list[Any]:
    conditions = policy.get("conditions")
    if not known(conditions):
        return [UNKNOWN]
    out = []
    for c in conditions or ():
        for path in ("conditionThreshold.filter", "conditionMatchedLog.filter"):
            value = get(c, path)
            if value is not None:
                out.append(value)
    return out


def _watches(filter_: Any) -> tuple[set[str], set[str]] | None:
    """(metric types, subscription ids) a filter names; None if the filter is unknown."""
    if not known(filter_):
        return None
    metrics, subs = set(), set()
    for m in _FILTER_TERM_RE.finditer(str(filter_)):
        (metrics if m["key"] == "metric.type" else subs).add(m["value"])
    return metrics, subs


def _covered(policies: list[Resource], metric: str, subscription: str) -> bool | None:
    undecided = False
    for policy in policies:
        if policy.get("enabled") is False:
            continue
        for f in _alert_filters(policy):
            seen = _watches(f)
            if seen is None:
                undecided = True
            elif metric in seen[0] and subscription in seen[1]:
                return True
    return None if undecided else False


@rule("PF15")
def alert_coverage(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A dead-letter or push subscription no alert watches, or an alert that notifies nobody"""
    policies = graph.of_type(T.ALERT_POLICY)
    subs = graph.of_type(T.SUBSCRIPTION)
    topics = graph.of_type(T.TOPIC)
    dl_topics = [
        t
        for t in topics
        if any(
            topic_matches(s.get("deadLetterPolicy.deadLetterTopic"), s, t)
            for s in subs
            if s.get("deadLetterPolicy")
        )
    ]
    for sub in subs:
        if sub.get("pushConfig"):
            kind = "push"
        elif any(topic_matches(sub.get("topic"), sub, t) for t in dl_topics):
            kind = "dead-letter"
        else:
            continue
        name, metric = sub.get("name"), COVERING_METRIC[kind]
        if not known(name):
            yield rule.unknown(sub, f"cannot tell which alert watches this {kind} subscription")
            continue
        verdict = _covered(policies, metric, name)
        if verdict is None:
            yield rule.unknown(sub, f"cannot tell whether an alert watches {metric} of {name}")
        elif not verdict:
            what = "dead letters pile up" if kind == "dead-letter" else "a stuck backlog ages"
            yield rule.finding(
                sub,
                f"no alert on {metric} for this {kind} subscription: {what} unnoticed; "
                "declare platform.monitoring (infra/monitoring derives the alerts)",
            )
    for policy in policies:
        channels = policy.get("notificationChannels")
        if not known(channels):
            yield rule.unknown(policy, "cannot tell whom this alert notifies")
        elif not channels:
            yield rule.finding(
                policy,
                "an alert that notifies nobody: give platform.monitoring.notify a channel",
            )
        elif not all(known(c) and c for c in channels):
            # A new channel's name is the API's: unknown until it exists.
            yield rule.unknown(policy, "cannot tell whom this alert notifies")
