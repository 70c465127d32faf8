"""Secrets (PF05, PF06): a service reads a pinned version that this program created and
deploys after it, and no credential sits in a literal env var."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from policy.findings import Finding, Rule
from policy.graph import Graph, Resource, T, get
from policy.joins import envs, known

from ._registry import rule

CREDENTIAL_NAME_RE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)


@rule("PF05")
def secrets_pinned_and_versioned(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """A referenced secret with no version, referenced as 'latest', or a service not depending on
    the version"""
    secrets = graph.of_type(T.SECRET)
    versions = graph.of_type(T.SECRET_VERSION)
    versions_of = {s.urn: [v for v in versions if _version_of(v, s)] for s in secrets}
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
            own = versions_of[secret.urn]
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


@rule("PF06")
def no_literal_credentials(graph: Graph, rule: Rule) -> Iterator[Finding]:
    """An env var named like a credential (*KEY*, *SECRET*, *TOKEN*, *PASSWORD*) set as a literal
    instead of a secret reference"""
    for svc in graph.of_type(T.CLOUD_RUN):
        for env in envs(svc):
            name = str(env.get("name") or "")
            if CREDENTIAL_NAME_RE.search(name) and env.get("value") is not None:
                yield rule.finding(
                    svc,
                    f"env {name} is a literal value: anyone who can read the service sees it; "
                    "store it in Secret Manager and reference it (services.<name>.secret_env)",
                )
