"""The credentialed path of the lookups against Cloud Run's own gRPC service definition (no
emulator exists): an in-process server built from run_v2's types (tests/fakegcp), the
official client pointed at it."""

from __future__ import annotations

import pytest
from google.iam.v1 import policy_pb2

from scripts.adopt import Credentials, GoogleLookups, Status, plan_adoption
from tests.fakegcp import FakeCloudRun

P = "projects/nba-props-platform/locations/us-west2/services"
PUSH_WORKER = "serviceAccount:push-worker@nba-props-platform.iam.gserviceaccount.com"


@pytest.fixture
def cloud_run():
    """The worker exists, with its push identity (and allUsers) as invokers; nothing else."""
    with FakeCloudRun() as fake:
        worker = f"{P}/prediction-worker"
        fake.serve(worker, "us-west2-docker.pkg.dev/nba-props-platform/platform/worker:1")
        policy = policy_pb2.Policy()
        policy.bindings.add(role="roles/run.invoker", members=[PUSH_WORKER, "allUsers"])
        fake.policies[worker] = policy
        yield fake.clients()[0], fake


def test_cloud_run_services_and_their_invokers_through_the_official_client(cloud_run, prod_plan):
    client, server = cloud_run
    creds = Credentials(credentials=object())  # any credentials: the channel is insecure
    with GoogleLookups(creds, clients={"run": client}) as google:
        report = plan_adoption(prod_plan.resources, google.lookups(), stack="prod")
    rows = {(d.resource.type, d.resource.name): d for d in report.decisions}
    service = "gcp:cloudrunv2/service:Service"
    member = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
    assert rows[(service, "prediction-worker")].status is Status.IMPORT
    assert rows[(service, "prediction-coordinator")].status is Status.CREATE
    assert rows[(member, "prediction-worker-pushes-invoker")].status is Status.IMPORT
    # The coordinator's invokers: their service does not exist, so neither do they.
    invoker = rows[(member, "prediction-coordinator-pushes-invoker")]
    assert invoker.status is Status.CREATE and "does not exist" in invoker.reason
    # The calls carried the import ids' resource paths, as Google's API names them.
    assert {r.name for r in server.requests("GetService")} == {
        f"{P}/prediction-worker",
        f"{P}/prediction-coordinator",
    }


def test_permission_denied_and_a_disabled_api_are_told_apart():
    from google.api_core import exceptions as gexc

    from scripts.adopt._google import _classify

    denied = _classify(gexc.PermissionDenied("Permission 'run.services.get' denied"))
    assert denied.found is None and denied.reason.startswith("permission denied")
    off = _classify(
        gexc.PermissionDenied(
            "Cloud Run Admin API has not been used in project 1 before or it is disabled. "
            "reason: SERVICE_DISABLED"
        )
    )
    assert off.found is None and off.reason.startswith("API disabled")
