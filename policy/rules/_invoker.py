"""Callers of a Cloud Run URL with an OIDC token (push subscriptions, PF01; scheduler jobs,
PF11): whether their identity holds roles/run.invoker on the service the URL points at."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from policy.findings import Finding, Rule
from policy.graph import Graph, Resource
from policy.joins import cloud_run_by_url, identity, known, may_invoke

__all__ = ["caller_may_invoke"]


def caller_may_invoke(
    graph: Graph,
    rule: Rule,
    caller: Resource,
    *,
    target: str,
    subject: str,
    no_token: str,
    denied: Callable[[str, Resource], str],
) -> Iterator[Finding]:
    """What is wrong with a resource that calls a Cloud Run URL with an OIDC token (a push
    subscription, a scheduler job): no token, or an identity without roles/run.invoker on the
    service the URL points at. Undecidable parts are unverifiable, never passed.

    ``target``: the URL's property path; its block holds the ``oidcToken`` (both APIs put
    them side by side: ``pushConfig.pushEndpoint``, ``httpTarget.uri``)."""
    block = target.rpartition(".")[0]
    url = caller.get(target)
    token = caller.get(f"{block}.oidcToken")
    email = caller.get(f"{block}.oidcToken.serviceAccountEmail")
    if not token:
        yield rule.finding(caller, no_token)
        return
    svc = cloud_run_by_url(graph, caller, url)
    if svc is None:
        if known(url) and ".run.app" not in str(url):
            return  # not a Cloud Run target: nothing for run.invoker to grant
        yield rule.unknown(caller, f"cannot tell which Cloud Run service {url} is")
        return
    sa = identity(graph, caller, email)
    verdict = may_invoke(graph, svc, sa, email)
    if verdict is None:
        yield rule.unknown(caller, f"cannot tell whether {subject} may invoke {svc.describe()}")
    elif not verdict:
        yield rule.finding(
            caller, denied(email if known(email) else (sa.name if sa else subject), svc)
        )
