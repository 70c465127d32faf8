"""How the rules join resources: by value when values are known, else by URN through
dependencies.

An invoker binding's member is ``serviceAccount:<the push identity's email>`` when the email
is known; in a real preview of new resources it is not, and the binding still depends on that
service account and on that service. Each join answers ``True``/``False`` when it can decide
and ``None`` when it cannot, so a rule can report **unverifiable** instead of passing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from infra.naming import service_account_member
from infra.roles import RUN_INVOKER
from policy.graph import UNKNOWN, Graph, Resource, T

__all__ = [
    "known",
    "stack_of",
    "service_accounts",
    "identity",
    "cloud_run_by_url",
    "targets_service",
    "member_is",
    "grant_members",
    "invoker_grants",
    "may_invoke",
    "topic_matches",
    "same_name",
    "push_subscriptions",
    "containers",
    "envs",
]


def known(value: Any) -> bool:
    return value is not None and value is not UNKNOWN


def stack_of(r: Resource) -> str:
    return r.urn.removeprefix("urn:pulumi:").split("::", 1)[0]


def service_accounts(graph: Graph) -> list[Resource]:
    return graph.of_type(T.SERVICE_ACCOUNT)


def identity(graph: Graph, r: Resource, email: Any) -> Resource | None:
    """The service-account resource behind ``email``, by value, else by dependency."""
    if known(email):
        for sa in service_accounts(graph):
            if sa.out("email") == email:
                return sa
    candidates = graph.deps(r, T.SERVICE_ACCOUNT)
    if not known(email) and len(candidates) == 1:
        return candidates[0]
    return None


def cloud_run_by_url(graph: Graph, r: Resource, url: Any) -> Resource | None:
    """The Cloud Run service a URL points at, by value, else by dependency."""
    services = graph.of_type(T.CLOUD_RUN)
    if known(url):
        for svc in services:
            uri = svc.out("uri")
            if known(uri) and uri and str(url).startswith(str(uri)):
                return svc
    deps = graph.deps(r, T.CLOUD_RUN)
    if len(deps) == 1:
        return deps[0]
    return None


def targets_service(grant: Resource, svc: Resource) -> bool | None:
    """Whether an IAM resource on a Cloud Run service is on ``svc`` (None: cannot tell)."""
    if svc.urn in grant.dependencies:
        return True
    name, svc_name = grant.get("name"), svc.get("name")
    if known(name) and known(svc_name):
        return str(name).rsplit("/", 1)[-1] == svc_name
    return None


def member_is(grant_member: Any, grant: Resource, sa: Resource | None, email: Any) -> bool | None:
    """Whether an IAM member is the given service account (None: cannot tell)."""
    if sa is not None and sa.urn in grant.dependencies:
        return True
    if known(grant_member) and known(email):
        return grant_member == service_account_member(email)
    if sa is not None and known(grant_member) and known(sa.out("email")):
        return grant_member == service_account_member(sa.out("email"))
    return None


def grant_members(grant: Resource) -> list[Any]:
    """Whom an IAM resource grants to: a binding's ``members``, a member resource's ``member``."""
    if grant.type.endswith(("IAMBinding", "IamBinding")):
        return list(grant.get("members") or ())
    return [grant.get("member")]


def invoker_grants(graph: Graph) -> Iterator[tuple[Resource, list[Any]]]:
    """Every roles/run.invoker grant on a Cloud Run service (member or binding resource), with
    its members (a whole ``ServiceIamPolicy`` is not a grant: rules judge it on its own)."""
    for grant in graph.of_type(T.RUN_INVOKER_MEMBER, T.RUN_IAM_BINDING):
        if grant.get("role") == RUN_INVOKER:
            yield grant, grant_members(grant)


def may_invoke(graph: Graph, svc: Resource, sa: Resource | None, email: Any) -> bool | None:
    """Whether ``sa``/``email`` holds roles/run.invoker on ``svc`` (None: undecidable)."""
    undecided = False
    for grant, members in invoker_grants(graph):
        on = targets_service(grant, svc)
        if on is False:
            continue
        for member in members:
            who = member_is(member, grant, sa, email)
            if who and on:
                return True
            if who is None or on is None:
                undecided = True
    for policy in graph.of_type(T.RUN_IAM_POLICY):
        if targets_service(policy, svc) is not False:
            undecided = True
    return None if undecided else False


def topic_matches(ref: Any, holder: Resource, topic: Resource) -> bool | None:
    """Whether a topic reference (id or name) on ``holder`` is ``topic``."""
    if topic.urn in holder.dependencies and not known(ref):
        return True
    if not known(ref):
        return None
    name = topic.get("name")
    ids = {str(topic.out("id") or ""), str(name or "")}
    ref = str(ref)
    return ref in ids or (known(name) and ref.endswith(f"/topics/{name}"))


def push_subscriptions(graph: Graph) -> list[Resource]:
    return [s for s in graph.of_type(T.SUBSCRIPTION) if s.get("pushConfig")]


def containers(svc: Resource) -> list[Any]:
    value = svc.get("template.containers")
    return list(value) if isinstance(value, tuple | list) else []


def envs(svc: Resource) -> Iterator[dict]:
    for c in containers(svc):
        yield from (c.get("envs") or ()) if hasattr(c, "get") else ()


def same_name(ref: Any, name: Any) -> bool:
    """Whether a reference (an id or a name) names the resource called ``name``."""
    return known(ref) and known(name) and str(ref).rsplit("/", 1)[-1] == str(name)
