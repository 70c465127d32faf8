"""pulumi-gcp's documented import ids: one table of templates keyed by type, filled from the
plan's inputs.

Each template is the first format in the "Import" section of the type's pulumi-gcp API docs
(https://www.pulumi.com/registry/packages/gcp/api-docs/<module>/<resource>/#import; the
``pulumi_gcp`` package's docstrings carry the same text, e.g. ``pulumi_gcp/pubsub/topic.py``,
where the docs write ``{{project}}`` the template names the plan's input ``{project}``): the
full resource path, so the id does not depend on the provider's default project. IAM member
resources take "the resource in question, the role, and the member identity",
space-delimited (pulumi-gcp, ``gcp:pubsub/topicIAMMember:TopicIAMMember`` "Import").
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping

from infra.naming import service_account_email
from policy.graph import Resource

__all__ = ["IMPORT_IDS", "UNSUPPORTED", "import_id"]


class _MissingInput(KeyError):
    pass


def _need(r: Resource, key: str) -> str:
    value = r.inputs.get(key)
    if not isinstance(value, str) or not value:
        raise _MissingInput(f"{r.describe()} has no '{key}' input to build its import id")
    return value


#: Template fields that are not inputs: built from inputs.
_DERIVED: Mapping[str, Callable[[Resource], str]] = {
    "email": lambda r: service_account_email(_need(r, "accountId"), _need(r, "project")),
}


def _member(resource: str) -> str:
    """An IAM member's id: the resource in question, the role, the member identity."""
    return f"{resource} {{role}} {{member}}"


#: type token -> import id template, ``{field}`` an input of the plan (or a _DERIVED field).
IMPORT_IDS: Mapping[str, str] = {
    "gcp:pubsub/topic:Topic": "projects/{project}/topics/{name}",
    "gcp:pubsub/subscription:Subscription": "projects/{project}/subscriptions/{name}",
    "gcp:cloudrunv2/service:Service": "projects/{project}/locations/{location}/services/{name}",
    "gcp:firestore/database:Database": "projects/{project}/databases/{name}",
    "gcp:secretmanager/secret:Secret": "projects/{project}/secrets/{secretId}",
    # Not in pulumi_gcp's docstrings; the API docs and the Terraform provider's
    # google_service_account "Import": projects/{{project}}/serviceAccounts/{{email}}.
    "gcp:serviceaccount/account:Account": "projects/{project}/serviceAccounts/{email}",
    "gcp:artifactregistry/repository:Repository": (
        "projects/{project}/locations/{location}/repositories/{repositoryId}"
    ),
    "gcp:cloudscheduler/job:Job": "projects/{project}/locations/{region}/jobs/{name}",
    # pulumi-gcp documents `{{project}} {{name}}` (space-delimited) and `{{name}}`.
    "gcp:logging/metric:Metric": "{project} {name}",
    "gcp:projects/service:Service": "{project}/{service}",  # docs: {{project_id}}/{{service}}
    "gcp:pubsub/topicIAMMember:TopicIAMMember": _member("projects/{project}/topics/{topic}"),
    "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": _member(
        "projects/{project}/subscriptions/{subscription}"
    ),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": _member(
        "projects/{project}/locations/{location}/services/{name}"
    ),
    "gcp:secretmanager/secretIamMember:SecretIamMember": _member(
        "projects/{project}/secrets/{secretId}"
    ),
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": _member(
        "projects/{project}/locations/{location}/repositories/{repository}"
    ),
    # serviceAccountId is already projects/P/serviceAccounts/EMAIL.
    "gcp:serviceaccount/iAMMember:IAMMember": _member("{serviceAccountId}"),
    "gcp:projects/iAMMember:IAMMember": _member("{project}"),
}

#: Types adopt cannot look up, with the reason (shown as "could not check").
UNSUPPORTED: Mapping[str, str] = {
    "gcp:monitoring/alertPolicy:AlertPolicy": "server-assigned id, no physical name to look up",
    "gcp:monitoring/notificationChannel:NotificationChannel": (
        "server-assigned id, no physical name to look up"
    ),
    "gcp:monitoring/dashboard:Dashboard": "server-assigned id, no physical name to look up",
    "gcp:firestore/index:Index": "server-assigned id, no physical name to look up",
    "gcp:secretmanager/secretVersion:SecretVersion": (
        "server-assigned version number; `pulumi up` adds a version, it never conflicts"
    ),
}


def import_id(r: Resource) -> str:
    """pulumi-gcp's import id of ``r``; KeyError (with the reason) for a type without one or
    a missing input."""
    template = IMPORT_IDS.get(r.type)
    if template is None:
        raise KeyError(f"no import id format known for {r.type}")
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    return template.format_map({f: _field(r, f) for f in fields})


def _field(r: Resource, name: str) -> str:
    derive = _DERIVED.get(name)
    return derive(r) if derive is not None else _need(r, name)
