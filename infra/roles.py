"""The predefined IAM roles the program grants and the preflight rules look for: one home.

The program (``infra/``) grants them, the rules (``policy/rules/``) check the grants, and
the offline plan's inventory shows them; each imports the name from here.
https://cloud.google.com/iam/docs/understanding-roles
"""

from __future__ import annotations

__all__ = [
    "RUN_INVOKER",
    "ACT_AS",
    "TOKEN_CREATOR",
    "PUBSUB_PUBLISHER",
    "PUBSUB_SUBSCRIBER",
    "DATASTORE_USER",
    "SECRET_ACCESSOR",
    "ARTIFACT_WRITER",
    "WORKLOAD_IDENTITY_USER",
    "BASIC_ROLES",
]

#: May call a Cloud Run service (a push identity, a scheduler job's identity).
#: https://cloud.google.com/run/docs/reference/iam/roles
RUN_INVOKER = "roles/run.invoker"
#: May deploy a revision that runs as the service account (the deployer on each runtime SA).
#: https://cloud.google.com/run/docs/reference/iam/roles
ACT_AS = "roles/iam.serviceAccountUser"
#: May mint tokens as the account (the Pub/Sub agent on each push identity, for OIDC pushes).
#: https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
#: Publishing and pulling (the Pub/Sub service agent needs both for dead-lettering).
#: https://cloud.google.com/pubsub/docs/dead-letter-topics
PUBSUB_PUBLISHER = "roles/pubsub.publisher"
PUBSUB_SUBSCRIBER = "roles/pubsub.subscriber"
DATASTORE_USER = "roles/datastore.user"
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"
ARTIFACT_WRITER = "roles/artifactregistry.writer"
#: May impersonate the account through Workload Identity Federation (GitHub's OIDC tokens).
#: https://cloud.google.com/iam/docs/workload-identity-federation-with-deployment-pipelines
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
#: Project-wide basic roles: never granted by this program (least privilege, rule PF08).
BASIC_ROLES = ("roles/editor", "roles/owner")
