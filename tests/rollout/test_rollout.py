"""Progressive traffic against Cloud Run and Cloud Monitoring gRPC servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.cloud import run_v2

from scripts.rollout import (
    CANDIDATE_TAG,
    CloudRunTraffic,
    MonitoringErrorRate,
    RolloutPolicy,
    progressive_rollout,
)
from scripts.rollout._traffic import TrafficError
from tests.rollout.conftest import NAME, NEW, OLD, PROJECT, RESOURCE

REV = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
POLICY = RolloutPolicy(
    steps=(10, 50, 100), hold=timedelta(minutes=2), poll=timedelta(minutes=1), min_requests=50
)


class FakeClock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += timedelta(seconds=seconds)


def _run(cloud_run, monitoring, policy=POLICY, **kw):
    _fake, run_client = cloud_run
    _mworld, mon_client, _ = monitoring
    clock = FakeClock()
    result = progressive_rollout(
        service=NAME,
        resource=RESOURCE,
        candidate=NEW,
        previous=OLD,
        traffic=CloudRunTraffic(run_client),
        metrics=MonitoringErrorRate(mon_client, project=PROJECT),
        policy=policy,
        sleep=clock.sleep,
        now=clock.now,
        **kw,
    )
    return result, clock


def test_healthy_candidate_moves_through_every_step_and_ends_pinned(cloud_run, monitoring):
    fake, _ = cloud_run
    result, clock = _run(cloud_run, monitoring)
    assert result.ok and result.error is None, result.to_dict()
    assert fake.history(RESOURCE) == [{NEW: 10, OLD: 90}, {NEW: 50, OLD: 50}, {NEW: 100}]
    # Pinned by revision name (never LATEST), so the next `pulumi up`'s revision starts at 0%.
    updates = fake.requests("UpdateService")
    assert all(t.revision for u in updates for t in u.service.traffic)
    assert all(u.service.etag for u in updates), "every change is conditioned on the etag"
    tags = {t.tag: t.revision for t in updates[-1].service.traffic if t.tag}
    assert tags == {CANDIDATE_TAG: NEW}
    assert sum(clock.slept) == 3 * 120  # every step held for the policy's hold


def test_the_monitoring_query_names_the_metric_revision_and_response_class(cloud_run, monitoring):
    _mworld, _, mon_server = monitoring
    _run(cloud_run, monitoring)
    req = mon_server.requests("ListTimeSeries")[0]
    assert req.name == f"projects/{PROJECT}"
    assert 'metric.type = "run.googleapis.com/request_count"' in req.filter
    assert f'resource.label.service_name = "{NAME}"' in req.filter
    assert f'resource.label.revision_name = "{NEW}"' in req.filter
    assert list(req.aggregation.group_by_fields) == ["metric.label.response_code_class"]
    assert req.interval.end_time > req.interval.start_time


def test_a_breach_mid_way_returns_traffic_to_the_previous_revision(cloud_run, monitoring):
    fake, _ = cloud_run
    mworld, _, _ = monitoring
    # Healthy at 10% (calls 1-2), then 5xx at 50% (call 3 onwards).
    mworld.counts = lambda rev, i: {"2xx": 900, "5xx": 100} if i >= 3 else {"2xx": 500}
    result, _ = _run(cloud_run, monitoring)
    assert not result.ok and result.restored
    assert [s.percent for s in result.steps] == [10, 50]
    assert "100 of 1000 requests answered 5xx" in result.error and "at 50%" in result.error
    assert fake.history(RESOURCE)[-1] == {OLD: 100}, fake.history(RESOURCE)
    assert fake.split(RESOURCE) == {OLD: 100}


def test_too_little_traffic_is_not_judged_a_breach(cloud_run, monitoring):
    mworld, _, _ = monitoring
    mworld.counts = lambda rev, i: {"5xx": 3, "2xx": 2}
    result, _ = _run(cloud_run, monitoring)
    assert result.ok, result.to_dict()


def test_unreadable_metrics_fail_safe_and_restore(cloud_run, monitoring):
    fake, _ = cloud_run
    mworld, _, _ = monitoring
    mworld.fail = grpc.StatusCode.PERMISSION_DENIED
    result, _ = _run(cloud_run, monitoring)
    assert not result.ok and result.restored
    assert "Cloud Monitoring" in result.error and "denied" in result.error
    assert fake.split(RESOURCE) == {OLD: 100}


def test_a_traffic_change_cloud_run_refuses_is_reported_with_its_reason(cloud_run, monitoring):
    fake, _ = cloud_run
    fake.fail(
        "UpdateService",
        grpc.StatusCode.PERMISSION_DENIED,
        "Permission 'run.services.update' denied",
    )
    result, _ = _run(cloud_run, monitoring)
    assert not result.ok and "run.services.update" in result.error
    assert fake.split(RESOURCE) == {OLD: 100}  # nothing moved


def test_a_lost_lease_stops_the_rollout_after_restoring_traffic(cloud_run, monitoring):
    fake, _ = cloud_run
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        _run(cloud_run, monitoring, check=check)
    assert fake.split(RESOURCE) == {OLD: 100}


class _RacingClient:
    """The official client, with someone else's traffic change (their ``gcloud run services
    update-traffic``) landing right after each of our reads."""

    def __init__(self, client: run_v2.ServicesClient, theirs: dict[str, int]) -> None:
        self._client, self._theirs = client, theirs
        self.read_etags: list[str] = []

    def get_service(self, **kw):
        ours = self._client.get_service(**kw)
        self.read_etags.append(ours.etag)
        svc = self._client.get_service(name=ours.name)
        svc.traffic = [
            run_v2.TrafficTarget(type_=REV, revision=r, percent=p) for r, p in self._theirs.items()
        ]
        self._client.update_service(service=svc).result()
        return ours

    def update_service(self, **kw):
        return self._client.update_service(**kw)


def test_a_traffic_change_sends_the_etag_it_read_and_never_overwrites_a_concurrent_one(cloud_run):
    fake, run_client = cloud_run
    racing = _RacingClient(run_client, {OLD: 70, NEW: 30})
    with pytest.raises(TrafficError, match=f"cannot set traffic of {RESOURCE}.*etag"):
        CloudRunTraffic(racing).split(RESOURCE, {NEW: 100})
    ours = fake.requests("UpdateService")[-1]
    assert ours.service.etag == racing.read_etags[0] == '"1"'  # conditioned on what it read
    assert fake.split(RESOURCE) == {OLD: 70, NEW: 30}  # their change stands
    # Without a race the read right before the write carries the current etag: it applies.
    assert CloudRunTraffic(run_client).split(RESOURCE, {NEW: 100}).split == {NEW: 100}


def test_unknown_service_and_bad_splits_are_errors(cloud_run):
    _fake, run_client = cloud_run
    traffic = CloudRunTraffic(run_client)
    with pytest.raises(TrafficError, match="not found"):
        traffic.state(RESOURCE.replace(NAME, "nope"))
    with pytest.raises(TrafficError, match="sum to 100"):
        traffic.split(RESOURCE, {NEW: 60})


def test_state_reports_split_tags_and_tag_urls(cloud_run):
    _fake, run_client = cloud_run
    traffic = CloudRunTraffic(run_client)
    state = traffic.split(RESOURCE, {OLD: 100}, tag=(CANDIDATE_TAG, NEW))
    assert state.split == {OLD: 100} and state.serving == OLD
    assert state.tags == {CANDIDATE_TAG: NEW}
    assert state.tag_urls[CANDIDATE_TAG].startswith("https://candidate---")


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": (10, 50)}, {"steps": (50, 10, 100)}, {"steps": ()}, {"max_error_rate": 1.5}],
)
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        RolloutPolicy(**kwargs)
