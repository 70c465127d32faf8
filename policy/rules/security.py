"""Least privilege (PF08, PF09, PF13, PF14): services run as their own accounts, nobody holds
basic roles, no public invoker on a private service, runtime identities reach only their
stack's Firestore database, and ingress is no wider than the callers need.

These security rules fail closed (issue 18): a grant or a caller they cannot place is a
violation, never advisory; only a value that is genuinely unknown in a first preview (a
condition computed from a new resource) stays unverifiable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from infra.roles import BASIC_ROLES
from policy.findings import Finding, Rule
from policy.graph import UNKNOWN, Graph, Resource, T, get
from policy.joins import (
    grant_members,
    identity,
    invoker_grants,
    known,
    push_subscriptions,
    targets_service,
)

from ._registry import rule

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
DEFAULT_COMPUTE_RE = re.compile(r"^\d+-compute@developer\.gserviceaccount\.com$")
FIRESTORE_ROLE_PREFIXES = ("roles/datastore.", "roles/firebase.")
DATABASE_CONDITION_RE = re.compile(
    r'\s*resource\.name\s*==\s*"projects/(?P<project>[^/"]+)/databases/(?P<database>[^/"]+)"\s*'
)
INGRESS_ALL = "INGRESS_TRAFFIC_ALL"
INGRESS_INTERNAL = "INGRESS_TRAFFIC_INTERNAL_ONLY"
INGRESS_INTERNAL_LB = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"


@rule("PF08")
def least_privilege_identity(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A service running as the default compute account, or project-level editor/owner granted"""
    for svc in graph.of_type(T.CLOUD_RUN):
        sa = svc.get("template.serviceAccount")
        if sa is None or sa == "":
            yield rule.finding(
                svc,
                "no service account: it runs as the default compute account (project "
                "Editor); give it its own account",
            )
        elif known(sa) and DEFAULT_COMPUTE_RE.match(str(sa)):
            yield rule.finding(svc, f"runs as the default compute account {sa}; give it its own")
        elif not known(sa) and not graph.deps(svc, T.SERVICE_ACCOUNT):
            # Fail closed: an identity that is neither known nor one this program creates.
            yield rule.finding(
                svc,
                "runs as an account this check cannot place (unknown, and not a service "
                "account of this program): give it its own account, created here",
            )
    for grant in graph.of_type(T.PROJECT_IAM_MEMBER, T.PROJECT_IAM_BINDING):
        role = grant.get("role")
        if role in BASIC_ROLES:
            who = grant.get("member") or ", ".join(map(str, grant.get("members") or ()))
            yield rule.finding(
                grant,
                f"grants {role} on the project to {who}: grant the predefined roles "
                "it uses instead",
            )


@rule("PF09")
def no_public_invoker(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """allUsers / allAuthenticatedUsers may invoke a service not declared public"""
    services = graph.of_type(T.CLOUD_RUN)
    for grant, members in invoker_grants(graph):
        public = [m for m in members if m in PUBLIC_MEMBERS]
        if not public:
            continue
        targets = [s for s in services if targets_service(grant, s)]
        if not targets:
            # Fail closed: a public grant on a service not in this stack (or one the check
            # cannot find) is exactly what must never slip through on a technicality.
            yield rule.finding(
                grant,
                f"{public[0]} may invoke {_service_ref(grant)}, which this stack does not "
                "declare public (the service is not in the stack, or cannot be found): remove "
                "the binding, or declare the service here with services.<name>.public: true",
            )
        for svc in targets:
            if (svc.get("labels") or {}).get("public") != "true":
                yield rule.finding(
                    grant,
                    f"{public[0]} may invoke {svc.describe()}, which is not declared public: "
                    "remove the binding, or set services.<name>.public: true if intended",
                )

    for policy in graph.of_type(T.RUN_IAM_POLICY):
        data = policy.get("policyData")
        if not known(data):
            yield rule.unknown(policy, "a whole IAM policy whose bindings are unknown")
            continue
        public = [m for m in PUBLIC_MEMBERS if m in str(data)]
        if public:
            yield rule.finding(
                policy,
                f"a whole IAM policy granting {public[0]} on {_service_ref(policy)}: replace it "
                "with one member resource per grant (a policy also drops every other grant)",
            )


def _service_ref(grant: Resource) -> str:
    name = grant.get("name")
    return f"service '{str(name).rsplit('/', 1)[-1]}'" if known(name) else "a service"


def runtime_accounts(graph: Graph) -> dict[str, Resource]:
    """The service accounts some Cloud Run service runs as, by URN (value, else dependency)."""
    found: dict[str, Resource] = {}
    for svc in graph.of_type(T.CLOUD_RUN):
        email = svc.get("template.serviceAccount")
        sa = identity(graph, svc, email)
        if sa is not None:
            found[sa.urn] = sa
    return found


def _runtime_member(
    graph: Graph, grant: Resource, member: Any, runtime: dict[str, Resource]
) -> bool | None:
    """Whether ``member`` of ``grant`` is a runtime identity (None: cannot place it)."""
    if known(member):
        emails = {sa.out("email") for sa in runtime.values() if known(sa.out("email"))}
        if str(member).removeprefix("serviceAccount:") in emails:
            return True
        if any(not known(sa.out("email")) for sa in runtime.values()):
            return None if str(member).startswith("serviceAccount:") else False
        return False
    accounts = graph.deps(grant, T.SERVICE_ACCOUNT)
    if not accounts:
        return None
    return any(sa.urn in runtime for sa in accounts)


@rule("PF13")
def firestore_scoped_to_its_database(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A runtime identity holding a project-wide Firestore role without a condition on its
    stack's own database"""
    runtime = runtime_accounts(graph)
    names = [db.get("name") for db in graph.of_type(T.FIRESTORE_DATABASE)]
    databases = {str(n) for n in names if known(n)}
    some_unknown = any(not known(n) for n in names)
    for grant in graph.of_type(T.PROJECT_IAM_MEMBER, T.PROJECT_IAM_BINDING):
        role = grant.get("role")
        if not known(role):
            yield rule.unknown(grant, "role unknown: cannot tell whether it reaches Firestore")
            continue
        if not str(role).startswith(FIRESTORE_ROLE_PREFIXES):
            continue
        verdicts = [_runtime_member(graph, grant, m, runtime) for m in grant_members(grant)]
        if not any(v is not False for v in verdicts):
            continue  # not a runtime identity: not this rule's concern
        who = "a runtime identity" if any(verdicts) else "an identity this check cannot place"
        condition = grant.get("condition")
        expression = get(condition, "expression") if condition else None
        if expression is UNKNOWN:
            yield rule.unknown(grant, f"{role}: the condition is unknown in this preview")
            continue
        m = DATABASE_CONDITION_RE.fullmatch(str(expression)) if expression else None
        if m is None:
            yield rule.finding(
                grant,
                f"{role} on the whole project for {who}: it also reaches the deploy-lock "
                "database (the lock and deploy history); condition it on the stack's database "
                '(condition.expression = resource.name == "projects/P/databases/D")',
            )
        elif m["database"] not in databases and some_unknown:
            yield rule.unknown(grant, f"{role}: this stack's database name is unknown")
        elif m["database"] not in databases:
            yield rule.finding(
                grant,
                f"{role} for {who} is conditioned on database '{m['database']}', which this "
                f"stack does not declare (its databases: {', '.join(sorted(databases)) or 'none'})"
                ": condition it on the stack's own database",
            )


def _callers(graph: Graph, svc: Resource) -> tuple[set[str], bool]:
    """Who may invoke ``svc``: kinds among {"internal", "operator", "public", "external"}, and
    whether some invoker grant on it could not be told apart (then the caller set is partial).

    Internal callers are the identities its push subscriptions and scheduler jobs in this stack
    sign as (Pub/Sub and Cloud Scheduler in the same project count as internal traffic)."""
    internal_emails: set[str] = set()
    internal_accounts: set[str] = set()
    for caller in [*push_subscriptions(graph), *graph.of_type(T.SCHEDULER_JOB)]:
        email = caller.get("pushConfig.oidcToken.serviceAccountEmail") or caller.get(
            "httpTarget.oidcToken.serviceAccountEmail"
        )
        if known(email):
            internal_emails.add(str(email))
        internal_accounts.update(sa.urn for sa in graph.deps(caller, T.SERVICE_ACCOUNT))
    kinds: set[str] = set()
    partial = False
    for grant, members in invoker_grants(graph):
        if not targets_service(grant, svc):
            continue
        for member in members:
            if not known(member):
                if any(sa.urn in internal_accounts for sa in graph.deps(grant, T.SERVICE_ACCOUNT)):
                    kinds.add("internal")
                else:
                    partial = True
            elif member in PUBLIC_MEMBERS:
                kinds.add("public")
            elif str(member).startswith(("group:", "user:", "domain:")):
                kinds.add("operator")
            elif str(member).removeprefix("serviceAccount:") in internal_emails:
                kinds.add("internal")
            else:
                kinds.add("external")  # another identity may call from anywhere
    return kinds, partial


@rule("PF14")
def ingress_no_wider_than_callers(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A service whose ingress is wider than its callers need (only Pub/Sub pushes and scheduler
    jobs: internal), or narrower than a declared caller can reach"""
    for svc in graph.of_type(T.CLOUD_RUN):
        # Cloud Run's default when unset is all traffic.
        # https://cloud.google.com/run/docs/securing/ingress#settings
        ingress = svc.get("ingress") or INGRESS_ALL
        if not known(ingress):
            yield rule.unknown(svc, "ingress unknown in this preview")
            continue
        kinds, partial = _callers(graph, svc)
        outside = kinds & {"operator", "public", "external"}
        if ingress in (INGRESS_ALL, INGRESS_INTERNAL_LB) and not outside:
            if partial:
                yield rule.unknown(svc, f"ingress {ingress}: cannot tell who all its callers are")
                continue
            yield rule.finding(
                svc,
                f"ingress {ingress} but only Pub/Sub pushes and scheduler jobs of this project "
                "call it (internal traffic): set ingress internal (the config default for such "
                "a service) so it is not reachable from the internet",
            )
        elif ingress == INGRESS_INTERNAL and outside:
            yield rule.finding(
                svc,
                f"ingress {ingress} but {', '.join(sorted(outside))} callers are granted "
                "roles/run.invoker and call from outside Google's network: they cannot reach "
                "it; set ingress all, or remove their grants",
            )
