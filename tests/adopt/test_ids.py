"""pulumi-gcp's import ids per type, from the prod plan's real records, and the decisions and
import file built from lookups' answers."""

from __future__ import annotations

import threading
import time

import pytest

from scripts.adopt import (
    IMPORT_IDS,
    NO_CREDENTIALS,
    Status,
    absent,
    exists,
    import_file,
    import_id,
    plan_adoption,
    resolve_credentials,
    unchecked,
)

P = "projects/nba-props-platform"

#: (type, logical name) -> the id pulumi-gcp's docs give for that type's "Import" section.
EXPECTED = {
    ("gcp:pubsub/topic:Topic", "prediction-request"): f"{P}/topics/prediction-request-prod",
    ("gcp:pubsub/subscription:Subscription", "prediction-request-worker"): (
        f"{P}/subscriptions/prediction-request-worker-prod"
    ),
    ("gcp:cloudrunv2/service:Service", "prediction-worker"): (
        f"{P}/locations/us-west2/services/prediction-worker"
    ),
    ("gcp:firestore/database:Database", "firestore"): f"{P}/databases/(default)",
    ("gcp:secretmanager/secret:Secret", "coordinator-api-key"): (
        f"{P}/secrets/coordinator-api-key"
    ),
    ("gcp:serviceaccount/account:Account", "prediction-worker-runtime"): (
        f"{P}/serviceAccounts/run-worker@nba-props-platform.iam.gserviceaccount.com"
    ),
    ("gcp:artifactregistry/repository:Repository", "images"): (
        f"{P}/locations/us-west2/repositories/platform-images"
    ),
    ("gcp:cloudscheduler/job:Job", "check-stalled"): (
        f"{P}/locations/us-west2/jobs/check-stalled-prod"
    ),
    ("gcp:logging/metric:Metric", "batch-events"): "nba-props-platform batch-events-prod",
    ("gcp:projects/service:Service", "api-run"): "nba-props-platform/run.googleapis.com",
    ("gcp:pubsub/topicIAMMember:TopicIAMMember", "prediction-ready-publisher-prediction-worker"): (
        f"{P}/topics/prediction-ready-prod roles/pubsub.publisher "
        "serviceAccount:run-worker@nba-props-platform.iam.gserviceaccount.com"
    ),
    (
        "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember",
        "prediction-request-worker-agent-subscriber",
    ): (
        f"{P}/subscriptions/prediction-request-worker-prod roles/pubsub.subscriber "
        "serviceAccount:service-386078378331@gcp-sa-pubsub.iam.gserviceaccount.com"
    ),
    ("gcp:cloudrunv2/serviceIamMember:ServiceIamMember", "prediction-worker-pushes-invoker"): (
        f"{P}/locations/us-west2/services/prediction-worker roles/run.invoker "
        "serviceAccount:push-worker@nba-props-platform.iam.gserviceaccount.com"
    ),
    (
        "gcp:secretmanager/secretIamMember:SecretIamMember",
        "prediction-coordinator-reads-coordinator-api-key",
    ): (
        f"{P}/secrets/coordinator-api-key roles/secretmanager.secretAccessor "
        "serviceAccount:run-coordinator@nba-props-platform.iam.gserviceaccount.com"
    ),
    (
        "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
        "deployer-pushes-images",
    ): (
        f"{P}/locations/us-west2/repositories/platform-images roles/artifactregistry.writer "
        "serviceAccount:ci-deployer@nba-props-platform.iam.gserviceaccount.com"
    ),
    ("gcp:serviceaccount/iAMMember:IAMMember", "prediction-worker-deployer-acts-as"): (
        f"{P}/serviceAccounts/run-worker@nba-props-platform.iam.gserviceaccount.com "
        "roles/iam.serviceAccountUser "
        "serviceAccount:ci-deployer@nba-props-platform.iam.gserviceaccount.com"
    ),
    ("gcp:projects/iAMMember:IAMMember", "prediction-coordinator-firestore-user"): (
        "nba-props-platform roles/datastore.user "
        "serviceAccount:run-coordinator@nba-props-platform.iam.gserviceaccount.com"
    ),
}


def _find(plan, type_, name):
    found = [r for r in plan.resources if r.type == type_ and r.name == name]
    assert len(found) == 1, f"{type_} '{name}' not (uniquely) in the prod plan"
    return found[0]


@pytest.mark.parametrize(("key", "expected"), EXPECTED.items(), ids=lambda v: str(v)[:60])
def test_import_id_per_type(prod_plan, key, expected):
    r = _find(prod_plan, *key)
    assert import_id(r) == expected, r.urn


def test_every_type_with_an_id_format_is_covered():
    assert {t for t, _ in EXPECTED} == set(IMPORT_IDS)


def test_missing_input_names_the_resource_and_key(prod_plan):
    r = _find(prod_plan, "gcp:pubsub/topic:Topic", "prediction-request")
    broken = type(r)(**{**r.__dict__, "inputs": {"project": "p"}})
    with pytest.raises(KeyError, match="'name'"):
        import_id(broken)


def test_decisions_and_the_import_file(prod_plan):
    topic = "gcp:pubsub/topic:Topic"

    def topics(r, rid):
        if r.name == "prediction-request":
            return exists()
        if r.name == "prediction-ready":
            raise RuntimeError("boom")
        return absent()

    def run(r, rid):
        return unchecked("permission denied: run.services.get")

    report = plan_adoption(
        prod_plan.resources,
        {topic: topics, "gcp:cloudrunv2/service:Service": run},
        stack="prod",
    )
    by_name = {(d.resource.type, d.resource.name): d for d in report.decisions}
    assert by_name[(topic, "prediction-request")].status is Status.IMPORT
    assert by_name[(topic, "prediction-request-dead-letter")].status is Status.CREATE
    failed = by_name[(topic, "prediction-ready")]
    assert failed.status is Status.UNCHECKED and "RuntimeError: boom" in failed.reason
    service = by_name[("gcp:cloudrunv2/service:Service", "prediction-worker")]
    assert service.status is Status.UNCHECKED and "permission denied" in service.reason
    alert = next(d for d in report.decisions if d.resource.type.endswith("AlertPolicy"))
    assert alert.status is Status.UNCHECKED and alert.reason.startswith("type not supported")
    image = next(d for d in report.decisions if d.resource.type == "docker-build:index:Image")
    assert image.status is Status.CREATE
    # Every custom resource decided exactly once.
    assert len(report.decisions) == len(prod_plan.custom())

    doc = import_file(report)
    component = _find(prod_plan, "platform:index:Topic", "prediction-request")
    assert doc == {
        "nameTable": {"Topic:prediction-request": component.urn},
        "resources": [
            {
                "type": topic,
                "name": "prediction-request",
                "id": f"{P}/topics/prediction-request-prod",
                "parent": "Topic:prediction-request",
            }
        ],
    }


def test_credentials_lookup_is_bounded():
    release = threading.Event()

    def hangs():
        release.wait(30)

    started = time.monotonic()
    creds = resolve_credentials(timeout_s=0.3, auth_default=hangs)
    release.set()
    assert time.monotonic() - started < 5
    assert creds.credentials is None and creds.problem.startswith(NO_CREDENTIALS)


def test_no_credentials_is_the_hint():
    from google.auth.exceptions import DefaultCredentialsError

    def none():
        raise DefaultCredentialsError("Your default credentials were not found")

    creds = resolve_credentials(auth_default=none)
    assert creds.problem == NO_CREDENTIALS
    assert "gcloud auth application-default login" in creds.problem
