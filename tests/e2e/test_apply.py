"""The apply layer against Google's Pub/Sub emulator (no fakes), and the pieces around it.

The prod graph from the offline plan is applied to a project of its own on the session's
emulator: applying twice changes nothing, a change is an update in place, what the graph no
longer has is removed, push endpoints point at the local services.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from infra.paths import REPO_ROOT
from policy.graph import T
from scripts.local import (
    PubSubAdmin,
    TopicSpec,
    TopologyError,
    apply_pubsub,
    call_job,
    dangling_topics,
    entry_point,
    next_fire,
    topology_from_resources,
)
from scripts.local._services import service_env
from scripts.plan import evaluate_stack

REPO = REPO_ROOT
#: A project of its own on the shared emulator: apply deletes what the graph does not have.
APPLY_PROJECT = "local-apply-test"
BASES = {
    "prediction-coordinator": "http://127.0.0.1:18001",
    "prediction-worker": "http://127.0.0.1:18002",
}


@pytest.fixture(scope="module")
def prod_plan():
    return evaluate_stack("prod")


@pytest.fixture(scope="module")
def prod_topology(prod_plan):
    topo = topology_from_resources(prod_plan.resources, project=APPLY_PROJECT, root=REPO)
    return topo.localise(BASES)


@pytest.fixture
def admin(pubsub_emulator) -> Iterator[PubSubAdmin]:
    with PubSubAdmin(pubsub_emulator.host, APPLY_PROJECT) as a:
        for name in a.subscriptions():
            a.subscriber.delete_subscription(request={"subscription": a.subscription_path(name)})
        for name in a.topics():
            a.publisher.delete_topic(request={"topic": a.topic_path(name)})
        yield a


def test_topology_is_read_from_the_registered_graph(prod_plan, prod_topology):
    topics = {r.get("name") for r in prod_plan.of_type(T.TOPIC)}
    assert {t.name for t in prod_topology.topics} == topics
    subs = {s.name: s for s in prod_topology.subscriptions}
    worker = subs["prediction-request-worker-prod"]
    assert worker.push_endpoint == "http://127.0.0.1:18002/", worker
    assert worker.dead_letter_topic == "prediction-request-prod-dead-letter"
    assert (worker.ack_deadline_seconds, worker.max_delivery_attempts) == (600, 5)
    assert subs["prediction-ready-coordinator-prod"].push_endpoint == (
        "http://127.0.0.1:18001/complete"
    )
    assert {s.name for s in prod_topology.dead_letter_subscriptions()} == {
        "prediction-request-prod-dead-letter-sub",
        "prediction-ready-prod-dead-letter-sub",
    }
    assert [j.uri for j in prod_topology.jobs if j.resource == "check-stalled"] == [
        "http://127.0.0.1:18001/check-stalled"
    ]
    coordinator = prod_topology.service("prediction-coordinator")
    assert coordinator.env == {
        "GCP_PROJECT_ID": "nba-props-platform",
        "REQUEST_TOPIC": "prediction-request-prod",
    }
    assert coordinator.secret_env == {"COORDINATOR_API_KEY": "coordinator-api-key"}
    skipped = {(t, n) for t, n, _ in prod_topology.notes}
    assert (T.FIRESTORE_INDEX, "index-batches-by-state-created") in skipped


def test_apply_twice_changes_nothing(admin, prod_topology):
    first = apply_pubsub(admin, prod_topology)
    assert first.counts() == {"create": 8, "update": 0, "delete": 0, "same": 0}, first.ops
    second = apply_pubsub(admin, prod_topology)
    assert second.counts() == {"create": 0, "update": 0, "delete": 0, "same": 8}, second.ops
    sub = admin.subscriber.get_subscription(
        subscription=admin.subscription_path("prediction-request-worker-prod")
    )
    assert sub.push_config.push_endpoint == "http://127.0.0.1:18002/"
    assert sub.ack_deadline_seconds == 600
    assert sub.dead_letter_policy.max_delivery_attempts == 5
    assert sub.dead_letter_policy.dead_letter_topic.endswith("/prediction-request-prod-dead-letter")
    assert int(sub.retry_policy.minimum_backoff.total_seconds()) == 10
    assert int(sub.retry_policy.maximum_backoff.total_seconds()) == 600
    dl = admin.subscriber.get_subscription(
        subscription=admin.subscription_path("prediction-request-prod-dead-letter-sub")
    )
    assert not dl.push_config.push_endpoint and dl.retain_acked_messages


def test_changes_update_in_place_and_removed_resources_are_deleted(admin, prod_topology):
    apply_pubsub(admin, prod_topology)
    changed = replace(
        prod_topology,
        topics=prod_topology.topics + (TopicSpec("extra-topic", "extra"),),
        subscriptions=tuple(
            replace(s, min_backoff_seconds=1, max_backoff_seconds=2, ack_deadline_seconds=60)
            if s.push_endpoint
            else s
            for s in prod_topology.subscriptions
        ),
    )
    result = apply_pubsub(admin, changed)
    assert result.counts() == {"create": 1, "update": 2, "delete": 0, "same": 6}, result.ops
    sub = admin.subscriber.get_subscription(
        subscription=admin.subscription_path("prediction-ready-coordinator-prod")
    )
    assert sub.ack_deadline_seconds == 60
    assert int(sub.retry_policy.maximum_backoff.total_seconds()) == 2

    back = apply_pubsub(admin, prod_topology)
    assert back.counts() == {"create": 0, "update": 2, "delete": 1, "same": 6}, back.ops
    assert "extra-topic" not in admin.topics()
    assert apply_pubsub(admin, prod_topology).counts()["same"] == 8


def test_dry_run_changes_nothing(admin, prod_topology):
    result = apply_pubsub(admin, prod_topology, dry_run=True)
    assert result.counts()["create"] == 8
    assert admin.topics() == {} and admin.subscriptions() == {}


def test_an_endpoint_outside_the_stack_cannot_run_locally(prod_plan):
    topo = topology_from_resources(prod_plan.resources, project=APPLY_PROJECT, root=REPO)
    foreign = replace(
        topo,
        subscriptions=tuple(
            replace(s, push_endpoint="https://example.com/hook") if s.push_endpoint else s
            for s in topo.subscriptions
        ),
    )
    with pytest.raises(TopologyError, match="example.com"):
        foreign.localise(BASES)


def test_dangling_topic_is_found(prod_topology):
    assert dangling_topics(prod_topology) == []
    orphan = replace(prod_topology, topics=prod_topology.topics + (TopicSpec("orphan", "o"),))
    assert dangling_topics(orphan) == ["orphan"]


@pytest.mark.parametrize("service", ["coordinator", "worker"])
def test_entry_point_is_the_dockerfile_cmd(service):
    entry = entry_point(REPO / "images" / f"{service}.Dockerfile")
    assert (entry.server, entry.app) == ("uvicorn", f"services.{service}.main:app")
    argv = entry.argv(8123, python="python")
    assert argv[:4] == ["python", "-m", "uvicorn", f"services.{service}.main:app"]
    assert argv[4:8] == ["--host", "127.0.0.1", "--port", "8123"]
    assert entry.image_env["PYTHONUNBUFFERED"] == "1"


def test_service_env_is_exactly_what_the_program_sets(prod_topology):
    svc = prod_topology.service("prediction-coordinator")
    entry = entry_point(svc.dockerfile)
    env = service_env(
        svc,
        entry,
        port=9999,
        secret_values={"coordinator-api-key": "k"},
        emulator_env={"FIRESTORE_EMULATOR_HOST": "h:1", "PUBSUB_EMULATOR_HOST": "h:2"},
        root=REPO,
    )
    program = set(svc.env) | set(svc.secret_env)
    plumbing = {"PATH", "HOME", "PYTHONPATH", "NO_GCE_CHECK", "PORT"} | set(entry.image_env)
    emulator = {"FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"}
    assert set(env) == program | plumbing | emulator
    assert env["COORDINATOR_API_KEY"] == "k" and env["PORT"] == "9999"
    assert env["REQUEST_TOPIC"] == "prediction-request-prod"


def test_cron_fires_in_the_jobs_time_zone(prod_topology):
    job = next(j for j in prod_topology.jobs if j.resource == "cleanup-stuck")
    assert job.time_zone == "America/Los_Angeles"
    after = datetime(2026, 7, 1, 10, 30, tzinfo=UTC)
    assert next_fire(job, after) == datetime(2026, 7, 1, 11, 0, tzinfo=UTC)
    stall = next(j for j in prod_topology.jobs if j.resource == "check-stalled")
    assert next_fire(stall, after) == datetime(2026, 7, 1, 10, 45, tzinfo=UTC)


@contextlib.contextmanager
def _scheduler_target(answers: list[tuple[int, bytes]], hits: list[str]) -> Iterator[str]:
    """A local HTTP target answering POSTs with ``answers`` in turn (the last one repeats);
    yields the check-stalled URL and records each path called in ``hits``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hits.append(self.path)
            status, body = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/check-stalled"
    finally:
        server.shutdown()


def test_a_job_call_retries_as_cloud_scheduler_does(prod_topology):
    hits: list[str] = []
    with _scheduler_target([(503, b"{}"), (200, b"{}")], hits) as uri:
        job = next(j for j in prod_topology.jobs if j.resource == "check-stalled")
        run = call_job(replace(job, uri=uri), sleep=lambda s: None)
    assert run.ok and run.attempts == 2 and hits == ["/check-stalled"] * 2


def test_a_failing_job_waits_min_backoff_doubling_to_max_backoff(prod_topology):
    """Cloud Scheduler's RetryConfig: retry_count more attempts, min_backoff doubling up to
    max_backoff, no jitter; the run reports the last answer."""
    hits: list[str] = []
    slept: list[float] = []
    with _scheduler_target([(503, b"busy")], hits) as uri:
        job = next(j for j in prod_topology.jobs if j.resource == "check-stalled")
        job = replace(job, uri=uri, retry_count=3, min_backoff_seconds=5, max_backoff_seconds=12)
        run = call_job(job, sleep=slept.append)
    assert slept == [5, 10, 12], slept
    assert (run.ok, run.status, run.attempts, run.body) == (False, 503, 4, "busy"), run
    assert len(hits) == 4
