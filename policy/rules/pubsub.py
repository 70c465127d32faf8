"""Topics, subscriptions and dead letters (PF01-PF04): every push delivery can be made,
nothing published is lost, a poison message ends in a dead-letter topic, a slow request is
not redelivered while it runs."""

from __future__ import annotations

import re
from collections.abc import Iterator

from infra import limits
from infra.durations import api_seconds
from infra.roles import PUBSUB_PUBLISHER, PUBSUB_SUBSCRIBER
from policy.findings import Finding, Rule
from policy.graph import Graph, Resource, T
from policy.joins import cloud_run_by_url, known, push_subscriptions, same_name, topic_matches

from ._invoker import caller_may_invoke
from ._registry import rule

ACK_DEADLINE_MAX_S = limits.PUBSUB_ACK_DEADLINE_S[1]
PUBSUB_DEFAULT_ACK_S = limits.PUBSUB_DEFAULT_ACK_DEADLINE_S
DELIVERY_ATTEMPTS = limits.PUBSUB_DELIVERY_ATTEMPTS
PUBSUB_AGENT_RE = re.compile(
    r"^serviceAccount:service-\d+@gcp-sa-pubsub\.iam\.gserviceaccount\.com$"
)


@rule("PF01")
def push_identity_can_invoke(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A push subscription's identity lacks roles/run.invoker on its target service"""
    for sub in push_subscriptions(graph):
        yield from caller_may_invoke(
            graph,
            rule,
            sub,
            target="pushConfig.pushEndpoint",
            subject="its push identity",
            no_token="push without an OIDC token: Cloud Run rejects every delivery; set "
            "push_config.oidc_token with an identity that has roles/run.invoker",
            denied=lambda who, svc: (
                f"push identity {who} has no roles/run.invoker on {svc.describe()}: every "
                "delivery fails with 403 until retries run out; grant it with a "
                "cloudrunv2.ServiceIamMember on exactly that service"
            ),
        )


@rule("PF02")
def every_topic_has_a_subscription(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A topic or dead-letter topic with no subscription"""
    subs = graph.of_type(T.SUBSCRIPTION)
    dead_letter_refs = [(s, s.get("deadLetterPolicy.deadLetterTopic")) for s in subs]
    for topic in graph.of_type(T.TOPIC):
        is_dl = any(ref is not None and topic_matches(ref, s, topic) for s, ref in dead_letter_refs)
        verdicts = [topic_matches(s.get("topic"), s, topic) for s in subs]
        if any(verdicts):
            continue
        what = "dead-letter topic" if is_dl else "topic"
        if any(v is None for v in verdicts):
            yield rule.unknown(topic, f"cannot tell whether this {what} has a subscription")
        else:
            fix = (
                "add a pull subscription that keeps dead letters"
                if is_dl
                else "add a subscription (or remove the topic)"
            )
            yield rule.finding(
                topic, f"{what} with no subscription: messages published to it are lost; {fix}"
            )


@rule("PF03")
def push_dead_letter_and_retry(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A push subscription without dead-letter policy, retry policy, max delivery attempts 5-100,
    or dead-letter IAM for the Pub/Sub agent"""
    topics = graph.of_type(T.TOPIC)
    for sub in push_subscriptions(graph):
        policy = sub.get("deadLetterPolicy")
        if not policy:
            yield rule.finding(
                sub,
                "no dead_letter_policy: a poison message is retried for 7 "
                "days; set a dead-letter topic and max_delivery_attempts",
            )
        if not sub.get("retryPolicy"):
            yield rule.finding(
                sub,
                "no retry_policy: failed deliveries are retried "
                "immediately; set minimum/maximum backoff",
            )
        if not policy:
            continue
        attempts = sub.get("deadLetterPolicy.maxDeliveryAttempts")
        low, high = DELIVERY_ATTEMPTS
        if known(attempts) and not (isinstance(attempts, int) and low <= attempts <= high):
            yield rule.finding(
                sub, f"max_delivery_attempts {attempts} is outside {low}-{high} (Pub/Sub's limits)"
            )
        dl_ref = sub.get("deadLetterPolicy.deadLetterTopic")
        dl_topic = next((t for t in topics if topic_matches(dl_ref, sub, t)), None)
        publisher = (
            _agent_grant(graph, T.TOPIC_IAM_MEMBER, PUBSUB_PUBLISHER, dl_topic, "topic")
            if dl_topic is not None
            else None
        )
        subscriber = _agent_grant(
            graph, T.SUBSCRIPTION_IAM_MEMBER, PUBSUB_SUBSCRIBER, sub, "subscription"
        )
        for verdict, what in (
            (publisher, "publisher on the dead-letter topic"),
            (subscriber, "subscriber on this subscription"),
        ):
            if verdict is None:
                yield rule.unknown(sub, f"cannot tell whether the Pub/Sub service agent is {what}")
            elif not verdict:
                yield rule.finding(
                    sub,
                    f"the Pub/Sub service agent (service-<project number>@gcp-sa-pubsub) is not "
                    f"{what}: dead-lettering fails silently; grant it",
                )


def _agent_grant(
    graph: Graph, typ: str, role: str, target: Resource | None, field: str
) -> bool | None:
    if target is None:
        return None
    undecided = False
    for grant in graph.of_type(typ):
        if grant.get("role") != role:
            continue
        on = target.urn in grant.dependencies or same_name(grant.get(field), target.get("name"))
        member = grant.get("member")
        agent = bool(PUBSUB_AGENT_RE.match(str(member))) if known(member) else None
        if on and agent:
            return True
        if on and agent is None:
            undecided = True
    return None if undecided else False


@rule("PF04")
def ack_deadline_and_expiry(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A push subscription's ack deadline below min(600 s, its target's timeout), or an expiring
    subscription"""
    for sub in graph.of_type(T.SUBSCRIPTION):
        ttl = sub.get("expirationPolicy.ttl")
        if not sub.get("expirationPolicy") or (known(ttl) and ttl != ""):
            yield rule.finding(
                sub,
                f"expires after {ttl or '31 days (the default)'} of inactivity and is then "
                'deleted; set expiration_policy.ttl = "" (never)',
            )
        if not sub.get("pushConfig"):
            continue
        ack = sub.get("ackDeadlineSeconds", PUBSUB_DEFAULT_ACK_S)
        svc = cloud_run_by_url(graph, sub, sub.get("pushConfig.pushEndpoint"))
        if svc is None:
            yield rule.unknown(sub, "cannot tell the push target's request timeout")
            continue
        timeout = api_seconds(svc.get("template.timeout", "300s"))
        if not known(ack) or timeout is None:
            yield rule.unknown(sub, "ack deadline or target timeout unknown")
            continue
        needed = min(ACK_DEADLINE_MAX_S, timeout)
        if ack < needed:
            yield rule.finding(
                sub,
                f"ack deadline {ack}s is below {int(needed)}s (min of 600 s and "
                f"{svc.describe()}'s timeout): a slow request is redelivered while still "
                f"running; set ack_deadline_seconds = {int(needed)}",
            )
