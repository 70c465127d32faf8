"""Preflight rules: every past production incident, as a check over the resource graph.

Written once, as plain functions over :class:`policy.graph.Resource` records, and run by
``platform plan`` (the offline plan's graph), by the deploy pipeline before it takes the lock,
and by the policy pack in a real ``pulumi preview --policy-pack policy`` (``policy/__main__``).

How the rules join resources (:mod:`policy.joins`): by value when values are known, else by
URN through dependencies. In a real preview, emails and URLs of new resources are unknown; a
check neither way can decide is reported **unverifiable**, never as passed.

What the graph cannot show comes in as :class:`policy.findings.Facts`, found out by the
operator layer: the offline image check's result per image (``scripts.plan.preflight`` runs
it on :func:`policy.images.image_builds` and passes it in). The rules never run it: without
those facts (the policy pack), PF10 reports the image check as unverifiable.

Each finding names the resource and the fix. Rule ids are stable (``PF01``...``PF15``) and
documented in the README's rule table.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from infra import limits
from infra.durations import api_seconds
from infra.roles import BASIC_ROLES, PUBSUB_PUBLISHER, PUBSUB_SUBSCRIBER, RUN_INVOKER
from policy.findings import Facts, Finding, Rule, RuleResult, Severity
from policy.graph import UNKNOWN, Graph, Resource, T, get
from policy.images import image_build
from policy.joins import (
    cloud_run_by_url,
    containers,
    envs,
    identity,
    known,
    may_invoke,
    push_subscriptions,
    same_name,
    stack_of,
    targets_service,
    topic_matches,
)

__all__ = [
    "Facts",
    "Finding",
    "Rule",
    "RuleResult",
    "Severity",
    "RULES",
    "PRODUCTION_STACKS",
    "run_rules",
    "rule_results",
    "has_errors",
]

PRODUCTION_STACKS = frozenset({"prod"})
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
ACK_DEADLINE_MAX_S = limits.PUBSUB_ACK_DEADLINE_S[1]
PUBSUB_DEFAULT_ACK_S = limits.PUBSUB_DEFAULT_ACK_DEADLINE_S
DELIVERY_ATTEMPTS = limits.PUBSUB_DELIVERY_ATTEMPTS
DEFAULT_COMPUTE_RE = re.compile(r"^\d+-compute@developer\.gserviceaccount\.com$")
PUBSUB_AGENT_RE = re.compile(
    r"^serviceAccount:service-\d+@gcp-sa-pubsub\.iam\.gserviceaccount\.com$"
)
CREDENTIAL_NAME_RE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)


RULES: list[Rule] = []


def rule(
    id: str,  # noqa: A002 - the rule's id
    name: str,
    title: str,
    severity: Severity = Severity.ERROR,
    *,
    facts: bool = False,
) -> Callable[[Callable[..., Iterable[Finding]]], Callable]:
    """Register the decorated check as a rule (``facts=True``: it reads :class:`Facts` too)."""

    def register(fn: Callable[..., Iterable[Finding]]) -> Callable:
        RULES.append(Rule(id, name, severity, title, fn, uses_facts=facts))
        return fn

    return register


# --- Rules ----------------------------------------------------------------------------------


@rule(
    "PF01",
    "push-identity-can-invoke",
    "A push subscription's identity lacks roles/run.invoker on its target service",
)
def push_identity_can_invoke(graph: Graph, rule: Rule) -> Iterator[Finding]:
    for sub in push_subscriptions(graph):
        yield from _caller_may_invoke(
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


def _caller_may_invoke(
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


@rule("PF02", "every-topic-has-a-subscription", "A topic or dead-letter topic with no subscription")
def every_topic_has_a_subscription(graph: Graph, rule: Rule) -> Iterator[Finding]:
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


@rule(
    "PF03",
    "push-dead-letter-and-retry",
    "A push subscription without dead-letter policy, "
    "retry policy, max delivery attempts 5-100, or dead-letter IAM for the Pub/Sub agent",
)
def push_dead_letter_and_retry(graph: Graph, rule: Rule) -> Iterator[Finding]:
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


@rule(
    "PF04",
    "ack-deadline-and-expiry",
    "A push subscription's ack deadline below "
    "min(600 s, its target's timeout), or an expiring subscription",
)
def ack_deadline_and_expiry(graph: Graph, rule: Rule) -> Iterator[Finding]:
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


@rule(
    "PF05",
    "secrets-pinned-and-versioned",
    "A referenced secret with no version, referenced "
    "as 'latest', or a service not depending on the version",
)
def secrets_pinned_and_versioned(graph: Graph, rule: Rule) -> Iterator[Finding]:
    secrets = graph.of_type(T.SECRET)
    versions = graph.of_type(T.SECRET_VERSION)
    for svc in graph.of_type(T.CLOUD_RUN):
        for env in envs(svc):
            ref = get(env, "valueSource.secretKeyRef")
            if not ref:
                continue
            var = env.get("name")
            version = ref.get("version")
            if known(version) and (not version or version == "latest"):
                yield rule.finding(
                    svc,
                    f"env {var} reads secret version '{version or 'latest'}': pin the "
                    "version this program created (secret_key_ref.version = the "
                    "SecretVersion's version)",
                )
            secret_ref = ref.get("secret")
            secret = _find_secret(graph, svc, secrets, secret_ref)
            if secret is None:
                if known(secret_ref):
                    yield rule.finding(
                        svc,
                        f"env {var} reads secret '{secret_ref}', which this program does "
                        "not create: declare it (Secret + SecretVersion)",
                    )
                else:
                    yield rule.unknown(svc, f"cannot tell which secret env {var} reads")
                continue
            own = [v for v in versions if _version_of(v, secret)]
            if not own:
                yield rule.finding(
                    svc,
                    f"env {var} reads {secret.describe()}, which has no SecretVersion: "
                    "the revision fails to start; add a version",
                )
            elif not any(v.urn in svc.dependencies for v in own):
                yield rule.finding(
                    svc,
                    f"does not depend on {own[0].describe()}: a new revision may deploy "
                    "before the version exists; reference the version's output",
                )


def _find_secret(graph: Graph, svc: Resource, secrets: list[Resource], ref: Any) -> Resource | None:
    if known(ref):
        for s in secrets:
            names = {s.get("secretId"), s.out("id"), s.out("name")}
            if ref in names or str(ref).rsplit("/", 1)[-1] == s.get("secretId"):
                return s
        return None
    deps = graph.deps(svc, T.SECRET)
    return deps[0] if len(deps) == 1 else None


def _version_of(version: Resource, secret: Resource) -> bool:
    if secret.urn in version.dependencies:
        return True
    ref = version.get("secret")
    return known(ref) and ref in {secret.out("id"), secret.out("name")}


@rule(
    "PF06",
    "no-literal-credentials",
    "An env var named like a credential (*KEY*, *SECRET*, "
    "*TOKEN*, *PASSWORD*) set as a literal instead of a secret reference",
)
def no_literal_credentials(graph: Graph, rule: Rule) -> Iterator[Finding]:
    for svc in graph.of_type(T.CLOUD_RUN):
        for env in envs(svc):
            name = str(env.get("name") or "")
            if CREDENTIAL_NAME_RE.search(name) and env.get("value") is not None:
                yield rule.finding(
                    svc,
                    f"env {name} is a literal value: anyone who can read the service sees it; "
                    "store it in Secret Manager and reference it (services.<name>.secret_env)",
                )


@rule(
    "PF07",
    "env-contract",
    "A variable the service's code requires (shared/contract.py) missing from its Cloud Run config",
)
def env_contract(graph: Graph, rule: Rule) -> Iterator[Finding]:
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


@rule(
    "PF08",
    "least-privilege-identity",
    "A service running as the default compute account, or project-level editor/owner granted",
)
def least_privilege_identity(graph: Graph, rule: Rule) -> Iterator[Finding]:
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


@rule(
    "PF09",
    "no-public-invoker",
    "allUsers / allAuthenticatedUsers may invoke a service not declared public",
)
def no_public_invoker(graph: Graph, rule: Rule) -> Iterator[Finding]:
    services = graph.of_type(T.CLOUD_RUN)
    for grant in graph.of_type(T.RUN_INVOKER_MEMBER, T.RUN_IAM_BINDING):
        members = (
            [grant.get("member")]
            if grant.type == T.RUN_INVOKER_MEMBER
            else list(grant.get("members") or ())
        )
        public = [m for m in members if m in PUBLIC_MEMBERS]
        if not public or grant.get("role") != RUN_INVOKER:
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


@rule(
    "PF10",
    "image-by-digest-from-repo-root",
    "A Cloud Run image by tag not digest, built "
    "with a context other than the repo root, or failing the image check",
    facts=True,
)
def image_by_digest_from_repo_root(graph: Graph, rule: Rule, facts: Facts) -> Iterator[Finding]:
    images = graph.of_type(T.IMAGE)
    for svc in graph.of_type(T.CLOUD_RUN):
        for c in containers(svc):
            image = c.get("image")
            if known(image):
                if "@sha256:" not in str(image):
                    yield rule.finding(
                        svc,
                        f"image {image} is a tag: a tag can move under a running revision; "
                        "deploy by digest (the docker-build Image's ref, or an override "
                        "REGISTRY/PATH@sha256:...)",
                    )
            elif not graph.deps(svc, T.IMAGE):
                yield rule.unknown(svc, "image unknown and not from a docker-build Image")
    for image in images:
        build = image_build(image)
        if build is None:
            yield rule.unknown(image, "build context or Dockerfile location unknown")
            continue
        context, dockerfile = image.get("context.location"), image.get("dockerfile.location")
        expected = posixpath.normpath(posixpath.dirname(posixpath.dirname(str(dockerfile))))
        if (
            posixpath.normpath(str(context)) != expected
            or posixpath.basename(posixpath.dirname(str(dockerfile))) != "images"
        ):
            yield rule.finding(
                image,
                f"built with context {context} and Dockerfile {dockerfile}: build from the "
                "repo root with images/<service>.Dockerfile (the image needs shared/)",
            )
        yield from _image_check(image, rule, facts)


def _image_check(image: Resource, rule: Rule, facts: Facts) -> Iterator[Finding]:
    """The offline image check's verdict on this image, as the operator layer found it
    (``scripts.imagecheck.check_builds``): would the image start?"""
    errors = None if facts.image_checks is None else facts.image_checks.get(image.urn)
    if errors is None:
        yield rule.unknown(
            image,
            "the image check did not run here: whether the image holds shared/ and its entry "
            "module imports is verified by `platform plan`, `platform images check` and the "
            "deploy preflight",
        )
        return
    for error in errors:
        yield rule.finding(image, f"image check failed: {error}")


@rule(
    "PF11",
    "scheduled-calls-and-background-work",
    "A scheduler job without OIDC or whose "
    "identity may not invoke its target; background work with CPU throttled; a batch "
    "coordinator without a scheduled stall check",
)
def scheduled_calls_and_background_work(graph: Graph, rule: Rule) -> Iterator[Finding]:
    jobs = graph.of_type(T.SCHEDULER_JOB)
    for job in jobs:
        yield from _caller_may_invoke(
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


@rule(
    "PF12",
    "deletion-protection",
    "The Firestore database or a production service without deletion protection",
)
def deletion_protection(graph: Graph, rule: Rule) -> Iterator[Finding]:
    for db in graph.of_type(T.FIRESTORE_DATABASE):
        if stack_of(db) not in PRODUCTION_STACKS:
            continue
        state = db.get("deleteProtectionState")
        if known(state) and state != "DELETE_PROTECTION_ENABLED":
            yield rule.finding(
                db,
                "the database holding batch state can be deleted: "
                "set delete_protection_state = DELETE_PROTECTION_ENABLED",
            )
    for svc in graph.of_type(T.CLOUD_RUN):
        if stack_of(svc) not in PRODUCTION_STACKS:
            continue
        if svc.get("deletionProtection") is not True and known(svc.get("deletionProtection")):
            yield rule.finding(
                svc,
                "a production service without deletion_protection: a rename or destroy "
                "deletes it; set deletion_protection: true",
            )


# --- Least privilege (issue 18): security rules fail closed ---------------------------------
#
# A grant or a caller these rules cannot place is a violation, never advisory: only a value that
# is genuinely unknown in a first preview (a condition computed from a new resource) stays
# unverifiable.

FIRESTORE_ROLE_PREFIXES = ("roles/datastore.", "roles/firebase.")
DATABASE_CONDITION_RE = re.compile(
    r'\s*resource\.name\s*==\s*"projects/(?P<project>[^/"]+)/databases/(?P<database>[^/"]+)"\s*'
)
INGRESS_ALL = "INGRESS_TRAFFIC_ALL"
INGRESS_INTERNAL = "INGRESS_TRAFFIC_INTERNAL_ONLY"
INGRESS_INTERNAL_LB = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"


def runtime_accounts(graph: Graph) -> dict[str, Resource]:
    """The service accounts some Cloud Run service runs as, by URN (value, else dependency)."""
    found: dict[str, Resource] = {}
    for svc in graph.of_type(T.CLOUD_RUN):
        email = svc.get("template.serviceAccount")
        sa = identity(graph, svc, email)
        if sa is not None:
            found[sa.urn] = sa
    return found


def _grant_members(grant: Resource) -> list[Any]:
    if grant.type.endswith(("IAMBinding", "IamBinding")):
        return list(grant.get("members") or ())
    return [grant.get("member")]


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


@rule(
    "PF13",
    "firestore-scoped-to-its-database",
    "A runtime identity holding a project-wide Firestore role without a condition on its "
    "stack's own database",
)
def firestore_scoped_to_its_database(graph: Graph, rule: Rule) -> Iterator[Finding]:
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
        verdicts = [_runtime_member(graph, grant, m, runtime) for m in _grant_members(grant)]
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
    for grant in graph.of_type(T.RUN_INVOKER_MEMBER, T.RUN_IAM_BINDING):
        if grant.get("role") != RUN_INVOKER or not targets_service(grant, svc):
            continue
        for member in _grant_members(grant):
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


@rule(
    "PF14",
    "ingress-no-wider-than-callers",
    "A service whose ingress is wider than its callers need (only Pub/Sub pushes and "
    "scheduler jobs: internal), or narrower than a declared caller can reach",
)
def ingress_no_wider_than_callers(graph: Graph, rule: Rule) -> Iterator[Finding]:
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


@rule(
    "PF15",
    "alert-coverage",
    "A dead-letter or push subscription no alert watches, or an alert that notifies nobody",
)
def alert_coverage(graph: Graph, rule: Rule) -> Iterator[Finding]:
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


# --- Running --------------------------------------------------------------------------------


def _graph(resources: Iterable[Resource]) -> Graph:
    return resources if isinstance(resources, Graph) else Graph(resources)


def run_rules(
    resources: Iterable[Resource],
    rules: Iterable[Rule] | None = None,
    *,
    facts: Facts | None = None,
) -> list[Finding]:
    """Every finding of ``rules`` (all by default) over the resources.

    ``facts``: what the operator layer found out beyond the graph (the image check's results);
    without them, the checks that need them are reported unverifiable, never passed.
    """
    graph = _graph(resources)
    return [f for r in (RULES if rules is None else rules) for f in r.run(graph, facts)]


def rule_results(
    resources: Iterable[Resource],
    rules: Iterable[Rule] | None = None,
    *,
    facts: Facts | None = None,
) -> list[RuleResult]:
    """One :class:`RuleResult` per rule, in rule order (see :func:`run_rules`)."""
    graph = _graph(resources)
    return [RuleResult(r, tuple(r.run(graph, facts))) for r in (RULES if rules is None else rules)]


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.blocks for f in findings)
