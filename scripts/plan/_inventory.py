"""The plan's inventory: its resources grouped by the component that declared them, each with
the settings an operator checks before a deploy (identity, limits, invokers, retries).

A resource's settings are a list of short ``key=value`` parts, so a reader can put each on a
line of its own (``platform plan``) or join them with spaces (``--json``'s ``settings``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infra.roles import RUN_INVOKER
from policy.graph import Graph, Resource, T, get

__all__ = ["InventoryGroup", "InventoryRow", "inventory"]

_IAM_MEMBERS = (
    T.RUN_INVOKER_MEMBER,
    T.TOPIC_IAM_MEMBER,
    T.SUBSCRIPTION_IAM_MEMBER,
    T.SECRET_IAM_MEMBER,
    T.PROJECT_IAM_MEMBER,
    T.SERVICE_ACCOUNT_IAM_MEMBER,
    T.REPOSITORY_IAM_MEMBER,
)


@dataclass(frozen=True)
class InventoryRow:
    type: str  # "cloudrunv2.Service"
    name: str  # the Pulumi resource name
    settings: tuple[str, ...]  # ("image=...", "sa=run-worker", ...)

    @property
    def settings_text(self) -> str:
        """The settings on one line (what ``--json`` reports)."""
        return " ".join(self.settings)


@dataclass(frozen=True)
class InventoryGroup:
    component: str  # "Service prediction-worker", or "stack" for top-level resources
    rows: list[InventoryRow]


def _member_name(member: Any) -> str:
    text = str(member)
    return text.removeprefix("serviceAccount:").split("@")[0] if "@" in text else text


def _short_type(typ: str) -> str:
    module, _, cls = typ.rpartition(":")
    pkg = module.split(":")[-1].split("/")[0]
    return f"{pkg}.{cls}"


def _last(path: Any) -> str:
    """``projects/P/topics/T`` -> ``T``."""
    return str(path).rsplit("/", 1)[-1]


def _cloud_run(r: Resource, graph: Graph) -> list[str]:
    g = r.get
    container = g("template.containers[0]") or {}
    limits = get(container, "resources.limits") or {}
    invokers = sorted(  # sorted: registrations arrive in any order, the output must not
        _member_name(m.get("member"))
        for m in graph.of_type(T.RUN_INVOKER_MEMBER)
        if r.urn in m.dependencies and m.get("role") == RUN_INVOKER
    )
    return [
        f"image={get(container, 'image')}",
        f"sa={_member_name(g('template.serviceAccount'))}",
        f"cpu={limits.get('cpu')}",
        f"mem={limits.get('memory')}",
        f"timeout={g('template.timeout')}",
        f"cpu_idle={get(container, 'resources.cpuIdle')}",
        f"ingress={g('ingress')}",
        f"invokers=[{', '.join(invokers)}]",
        f"deletion_protection={g('deletionProtection')}",
    ]


def _subscription(r: Resource) -> list[str]:
    g = r.get
    push, dl = g("pushConfig"), g("deadLetterPolicy")
    if push:
        parts = [
            f"push={get(push, 'pushEndpoint')}",
            f"as={_member_name(get(push, 'oidcToken.serviceAccountEmail'))}",
        ]
    else:
        parts = ["pull"]
    if g("ackDeadlineSeconds"):
        parts.append(f"ack={g('ackDeadlineSeconds')}s")
    if g("retryPolicy"):
        parts.append(f"retry={g('retryPolicy.minimumBackoff')}..{g('retryPolicy.maximumBackoff')}")
    if dl:
        topic = _last(get(dl, "deadLetterTopic"))
        parts.append(f"dead_letter={topic} after {get(dl, 'maxDeliveryAttempts')}")
    ttl = g("expirationPolicy.ttl")
    parts.append("expires=never" if ttl == "" else f"expires={ttl}")
    return parts


def _settings(r: Resource, graph: Graph) -> list[str]:
    g = r.get
    if r.type == T.CLOUD_RUN:
        return _cloud_run(r, graph)
    if r.type == T.SUBSCRIPTION:
        return _subscription(r)
    if r.type == T.SCHEDULER_JOB:
        return [
            f"schedule='{g('schedule')}'",
            f"tz={g('timeZone')}",
            f"target={g('httpTarget.uri')}",
            f"as={_member_name(g('httpTarget.oidcToken.serviceAccountEmail'))}",
            f"retries={g('retryConfig.retryCount')}",
            f"deadline={g('attemptDeadline')}",
        ]
    if r.type == T.IMAGE:
        return [
            f"tag={(g('tags') or ['?'])[0]}",
            f"context={g('context.location')}",
            f"dockerfile={g('dockerfile.location')}",
            f"build_on_preview={g('buildOnPreview')}",
        ]
    if r.type == T.SERVICE_ACCOUNT:
        return [f"email={r.out('email')}"]
    if r.type in _IAM_MEMBERS:
        on = (
            g("name")
            or g("topic")
            or g("subscription")
            or g("secretId")
            or g("serviceAccountId")
            or g("repository")
            or g("project")
        )
        return [f"{g('role')} -> {_member_name(g('member'))} on {_last(on)}"]
    if r.type == T.TOPIC:
        return [f"name={g('name')}"]
    if r.type == T.SECRET_VERSION:
        return [f"data={g('secretData')}", f"version={r.out('version')}"]
    if r.type == T.SECRET:
        return [f"secret_id={g('secretId')}", "replication=auto"]
    if r.type == T.FIRESTORE_DATABASE:
        return [
            f"name={g('name')}",
            f"location={g('locationId')}",
            str(g("deleteProtectionState")),
        ]
    if r.type == T.FIRESTORE_INDEX:
        fields = ", ".join(f"{f.get('fieldPath')} {f.get('order')}" for f in g("fields") or ())
        return [f"{g('collection')}: {fields}"]
    if r.type == T.REPOSITORY:
        return [f"{g('location')}/{g('repositoryId')}", f"format={g('format')}"]
    if r.type == T.PROJECT_SERVICE:
        return [str(g("service"))]
    return []


def _component_key(r: Resource) -> str:
    return f"{r.type.rsplit(':', 1)[-1]} {r.name}"


def inventory(resources: Iterable[Resource]) -> list[InventoryGroup]:
    """A plan's custom resources grouped by the component that declared them (components in
    the order they were registered; resources outside any component under ``stack``)."""
    graph = resources if isinstance(resources, Graph) else Graph(resources)
    groups: dict[str, list[InventoryRow]] = {}
    for r in graph:
        if not r.custom:
            groups.setdefault(_component_key(r), [])
    for r in (r for r in graph if r.custom):
        component = graph.component_of(r)
        key = _component_key(component) if component else "stack"
        row = InventoryRow(_short_type(r.type), r.name, tuple(_settings(r, graph)))
        groups.setdefault(key, []).append(row)
    return [InventoryGroup(k, rows) for k, rows in groups.items() if rows]
