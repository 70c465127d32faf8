"""pulumi-gcp's documented import ids, one function per type, from the plan's inputs.

Each format is the first one in the "Import" section of the type's pulumi-gcp API docs (the
``pulumi_gcp`` package's docstrings carry the same text, e.g. ``pulumi_gcp/pubsub/topic.py``):
the full resource path, so the id does not depend on the provider's default project. IAM
member resources take "the resource in question, the role, and the member identity",
space-delimited (pulumi-gcp, ``gcp:pubsub/topicIAMMember:TopicIAMMember`` "Import").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from policy.graph import Resource

__all__ = ["IMPORT_IDS", "UNSUPPORTED", "import_id", "service_account_email"]


class _MissingInput(KeyError):
    pass


def _need(r: Resource, key: str) -> str:
    value = r.inputs.get(key)
    if not isinstance(value, str) or not value:
        raise _MissingInput(f"{r.describe()} has no '{key}' input to build its import id")
    return value


def service_account_email(account_id: str, project: str) -> str:
    """A user-managed service account's email (IAM docs: service-account-id@project-id...)."""
    return f"{account_id}@{project}.iam.gserviceaccount.com"


def _topic(r: Resource) -> str:
    return f"projects/{_need(r, 'project')}/topics/{_need(r, 'name')}"


def _subscription(r: Resource) -> str:
    return f"projects/{_need(r, 'project')}/subscriptions/{_need(r, 'name')}"


def _run_service(r: Resource) -> str:
    return (
        f"projects/{_need(r, 'project')}/locations/{_need(r, 'location')}"
        f"/services/{_need(r, 'name')}"
    )


def _database(r: Resource) -> str:
    return f"projects/{_need(r, 'project')}/databases/{_need(r, 'name')}"


def _secret(r: Resource) -> str:
    return f"projects/{_need(r, 'project')}/secrets/{_need(r, 'secretId')}"


def _account(r: Resource) -> str:
    project = _need(r, "project")
    email = service_account_email(_need(r, "accountId"), project)
    return f"projects/{project}/serviceAccounts/{email}"


def _repository(r: Resource) -> str:
    return (
        f"projects/{_need(r, 'project')}/locations/{_need(r, 'location')}"
        f"/repositories/{_need(r, 'repositoryId')}"
    )


def _job(r: Resource) -> str:
    return f"projects/{_need(r, 'project')}/locations/{_need(r, 'region')}/jobs/{_need(r, 'name')}"


def _metric(r: Resource) -> str:
    # pulumi-gcp documents `{{project}} {{name}}` (space-delimited) and `{{name}}`.
    return f"{_need(r, 'project')} {_need(r, 'name')}"


def _api(r: Resource) -> str:
    return f"{_need(r, 'project')}/{_need(r, 'service')}"


def _member(resource: Callable[[Resource], str]) -> Callable[[Resource], str]:
    def build(r: Resource) -> str:
        return f"{resource(r)} {_need(r, 'role')} {_need(r, 'member')}"

    return build


def _topic_of_member(r: Resource) -> str:
    return f"projects/{_need(r, 'project')}/topics/{_need(r, 'topic')}"


def _subscription_of_member(r: Resource) -> str:
    return f"projects/{_need(r, 'project')}/subscriptions/{_need(r, 'subscription')}"


def _service_of_member(r: Resource) -> str:
    return (
        f"projects/{_need(r, 'project')}/locations/{_need(r, 'location')}"
        f"/services/{_need(r, 'name')}"
    )


def _secret_of_member(r: Resource) -> str:
    return f"projects/{_need(r, 'project')}/secrets/{_need(r, 'secretId')}"


def _repository_of_member(r: Resource) -> str:
    return (
        f"projects/{_need(r, 'project')}/locations/{_need(r, 'location')}"
        f"/repositories/{_need(r, 'repository')}"
    )


def _account_of_member(r: Resource) -> str:
    return _need(r, "serviceAccountId")  # already projects/P/serviceAccounts/EMAIL


def _project_of_member(r: Resource) -> str:
    return _need(r, "project")


#: type token -> import id builder.
IMPORT_IDS: Mapping[str, Callable[[Resource], str]] = {
    "gcp:pubsub/topic:Topic": _topic,
    "gcp:pubsub/subscription:Subscription": _subscription,
    "gcp:cloudrunv2/service:Service": _run_service,
    "gcp:firestore/database:Database": _database,
    "gcp:secretmanager/secret:Secret": _secret,
    "gcp:serviceaccount/account:Account": _account,
    "gcp:artifactregistry/repository:Repository": _repository,
    "gcp:cloudscheduler/job:Job": _job,
    "gcp:logging/metric:Metric": _metric,
    "gcp:projects/service:Service": _api,
    "gcp:pubsub/topicIAMMember:TopicIAMMember": _member(_topic_of_member),
    "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": _member(_subscription_of_member),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": _member(_service_of_member),
    "gcp:secretmanager/secretIamMember:SecretIamMember": _member(_secret_of_member),
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": _member(_repository_of_member),
    "gcp:serviceaccount/iAMMember:IAMMember": _member(_account_of_member),
    "gcp:projects/iAMMember:IAMMember": _member(_project_of_member),
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
    build = IMPORT_IDS.get(r.type)
    if build is None:
        raise KeyError(f"no import id format known for {r.type}")
    return build(r)
