"""Cloud Run services and what keeps them running (PF07, PF11, PF12): the env their code
requires, scheduled calls that may invoke them, background work with CPU, a scheduled stall
check for a batch coordinator, and deletion protection in production."""

from __future__ import annotations

from collections.abc import Iterator

from policy.findings import Finding, Rule
from policy.graph import Graph, Resource, T, get
from policy.joins import containers, envs, known, stack_of

from ._invoker import caller_may_invoke
from ._registry import rule

PRODUCTION_STACKS = frozenset({"prod"})


@rule("PF07")
def env_contract(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A variable the service's code requires (shared/contract.py) missing from its Cloud Run
    config"""
    from shared.contract import CONTRACTS

    for svc in graph.of_type(T.CLOUD_RUN):
        name = svc.get("name")
        contract = CONTRACTS.get(name if known(name) else "") or CONTRACTS.get(svc.name)
        if contract is None:
            continue
        present = {e.get("name"): e for e in envs(svc)}
        missing = [v for v in contract.all_required if v not in present]
        not_secret = [
            v for v in contract.secrets if v in present and not get(present[v], "valueSource")
        ]
        if missing:
            yield rule.finding(
                svc,
                f"missing {', '.join(missing)}, required by {contract.service}'s code "
                "(shared/contract.py): the revision would stop at start-up; set it in "
                f"services.{contract.service}.env/publishes/secret_env",
            )
        if not_secret:
            yield rule.finding(
                svc, f"{', '.join(not_secret)} must come from Secret Manager (secret_env)"
            )


@rule("PF11")
def scheduled_calls_and_background_work(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A scheduler job without OIDC or whose identity may not invoke its target; background work
    with CPU throttled; a batch coordinator without a scheduled stall check"""
    jobs = graph.of_type(T.SCHEDULER_JOB)
    for job in jobs:
        yield from caller_may_invoke(
            graph,
            rule,
            job,
            target="httpTarget.uri",
            subject="its identity",
            no_token="calls without an OIDC token: Cloud Run rejects it; set "
            "http_target.oidc_token with an invoker identity",
            denied=lambda who, svc: (
                f"identity {who} has no roles/run.invoker on {svc.describe()}: every "
                "run fails with 403; grant it on exactly that service"
            ),
        )
    for svc in graph.of_type(T.CLOUD_RUN):
        labels = svc.get("labels") or {}
        if labels.get("background-work") == "true":
            for c in containers(svc):
                idle = get(c, "resources.cpuIdle")
                if idle is not False:
                    yield rule.finding(
                        svc,
                        "does work after answering (background-work) but CPU is "
                        "throttled between requests (cpu_idle true): that work stalls; "
                        "set cpu_idle: false",
                    )
        stall = labels.get("stall-check")
        if stall:
            path = "/" + str(stall)
            url = svc.out("uri")
            called = []
            for job in jobs:
                job_uri = job.get("httpTarget.uri")
                if known(job_uri) and known(url):
                    if job_uri == f"{url}{path}":
                        called.append(True)
                elif svc.urn in job.dependencies:
                    called.append(None)
            if True in called:
                continue
            if None in called:
                yield rule.unknown(svc, f"cannot tell whether a job calls {path}")
            else:
                yield rule.finding(
                    svc,
                    f"a batch coordinator with no scheduled stall check: nothing calls "
                    f"{path}, so a stalled batch is never noticed; add a schedule",
                )


@rule("PF12")
def deletion_protection(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """The Firestore database or a production service without deletion protection"""
    for db in _in_production(graph, T.FIRESTORE_DATABASE):
        state = db.get("deleteProtectionState")
        if known(state) and state != "DELETE_PROTECTION_ENABLED":
            yield rule.finding(
                db,
                "the database holding batch state can be deleted: "
                "set delete_protection_state = DELETE_PROTECTION_ENABLED",
            )
    for svc in _in_production(graph, T.CLOUD_RUN):
        if svc.get("deletionProtection") is not True and known(svc.get("deletionProtection")):
            yield rule.finding(
                svc,
                "a production service without deletion_protection: a rename or destroy "
                "deletes it; set deletion_protection: true",
            )


def _in_production(graph: Graph, typ: str) -> list[Resource]:
    return [r for r in graph.of_type(typ) if stack_of(r) in PRODUCTION_STACKS]
