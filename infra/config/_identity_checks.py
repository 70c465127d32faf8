"""The service accounts: derived account ids unique in the project (the deploy identity's
too), and the deploy and build identities in the stack's own project.
"""

from __future__ import annotations

from collections.abc import Iterator

from infra import limits
from infra.config._issues import ConfigIssue
from infra.config._parts import Names, Parts
from infra.naming import Kind, physical_name

__all__ = ["account_issues", "deploy_identity_issues"]


def account_issues(parts: Parts, prefix: str, names: Names) -> Iterator[ConfigIssue]:
    pushed = {s.service for subs in parts.topics.values() for s in subs or [] if s is not None}
    scheduled = {j.service for j in parts.schedules.values() if j is not None}
    if parts.deploy is not None:
        m = limits.SERVICE_ACCOUNT_EMAIL_RE.fullmatch(parts.deploy.service_account)
        if m is not None and m["project"] == parts.project:
            names.claim("service account id", m["account"], f"{prefix}.deploy.service_account", "")
    for name in parts.services:
        created = [Kind.RUNTIME_ACCOUNT]
        created += [Kind.PUSH_ACCOUNT] if name in pushed else []
        created += [Kind.SCHEDULER_ACCOUNT] if name in scheduled else []
        for kind in created:
            account = physical_name(kind, name, parts.stack)
            issue = names.claim(
                "service account id",
                account,
                f"{prefix}.services.{name} (key)",
                "derived account id",
            )
            if issue is not None:
                yield issue


def deploy_identity_issues(parts: Parts, prefix: str) -> Iterator[ConfigIssue]:
    """The bootstrap creates the deploy and build identities in the stack's own project."""
    if parts.deploy is None or not parts.project:
        return
    identities = [("deploy.service_account", parts.deploy.service_account, "deploy identity")]
    builder = parts.deploy.cloudbuild
    if builder is not None:
        identities.append(
            ("deploy.cloudbuild.service_account", builder.service_account, "build identity")
        )
    for key, email, identity in identities:
        m = limits.SERVICE_ACCOUNT_EMAIL_RE.fullmatch(email)
        if m is not None and m["project"] != parts.project:
            yield ConfigIssue(
                f"{prefix}.{key}",
                f"belongs to project '{m['project']}', not this stack's gcp:project "
                f"'{parts.project}': the bootstrap creates the {identity} in the stack's "
                "own project",
            )
