"""Progressive traffic against Cloud Run and Cloud Monitoring gRPC servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from scripts.rollout import (
    CANDIDATE_TAG,
    CloudRunTraffic,
    MonitoringErrorRate,
    RolloutPolicy,
    progressive_rollout,
)
from scripts.rollout._traffic import TrafficError
from tests.rollout.conftest import NAME, PROJECT, RESOURCE

OLD, NEW = f"{NAME}-00001-aaa", f"{NAME}-00002-bbb"
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
    _world, run_client, _ = cloud_run
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
    world, _, run_server = cloud_run
    result, clock = _run(cloud_run, monitoring)
    assert result.ok and result.error is None, result.to_dict()
    assert world.history == [{NEW: 10, OLD: 90}, {NEW: 50, OLD: 50}, {NEW: 100}]
    # Pinned by revision name (never LATEST), so the next `pulumi up`'s revision starts at 0%.
    updates = run_server.requests("UpdateService")
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
    world, _, _ = cloud_run
    mworld, _, _ = monitoring
    # Healthy at 10% (calls 1-2), then 5xx at 50% (call 3 onwards).
    mworld.counts = lambda rev, i: {"2xx": 900, "5xx": 100} if i >= 3 else {"2xx": 500}
    result, _ = _run(cloud_run, monitoring)
    assert not result.ok and result.restored
    assert [s.percent for s in result.steps] == [10, 50]
    assert "100 of 1000 requests answered 5xx" in result.error and "at 50%" in result.error
    assert world.history[-1] == {OLD: 100}, world.history
    assert world.split() == {OLD: 100}


def test_too_little_traffic_is_not_judged_a_breach(cloud_run, monitoring):
    mworld, _, _ = monitoring
    mworld.counts = lambda rev, i: {"5xx": 3, "2xx": 2}
    result, _ = _run(cloud_run, monitoring)
    assert result.ok, result.to_dict()


def test_unreadable_metrics_fail_safe_and_restore(cloud_run, monitoring):
    world, _, _ = cloud_run
    mworld, _, _ = monitoring
    mworld.fail = grpc.StatusCode.PERMISSION_DENIED
    result, _ = _run(cloud_run, monitoring)
    assert not result.ok and result.restored
    assert "Cloud Monitoring" in result.error and "denied" in result.error
    assert world.split() == {OLD: 100}


def test_a_traffic_change_cloud_run_refuses_is_reported_with_its_reason(cloud_run, monitoring):
    world, _, _ = cloud_run
    world.deny_updates = True
    result, _ = _run(cloud_run, monitoring)
    assert not result.ok and "run.services.update" in result.error
    assert world.split() == {OLD: 100}  # nothing moved


def test_a_lost_lease_stops_the_rollout_after_restoring_traffic(cloud_run, monitoring):
    world, _, _ = cloud_run
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        _run(cloud_run, monitoring, check=check)
    assert world.split() == {OLD: 100}


def test_a_concurrent_traffic_change_is_not_overwritten(cloud_run):
    world, run_client, _ = cloud_run
    traffic = CloudRunTraffic(run_client)
    svc = run_client.get_service(name=RESOURCE)
    world.etag += 1  # someone else changed the service since our read
    svc.traffic[0].percent = 100
    with pytest.raises(Exception, match="etag"):
        run_client.update_service(service=svc).result()
    # CloudRunTraffic reads right before it writes, so it works with the current etag.
    assert traffic.split(RESOURCE, {NEW: 100}).split == {NEW: 100}


def test_unknown_service_and_bad_splits_are_errors(cloud_run):
    _world, run_client, _ = cloud_run
    traffic = CloudRunTraffic(run_client)
    with pytest.raises(TrafficError, match="not found"):
        traffic.state(RESOURCE.replace(NAME, "nope"))
    with pytest.raises(TrafficError, match="sum to 100"):
        traffic.split(RESOURCE, {NEW: 60})


def test_state_reports_split_tags_and_tag_urls(cloud_run):
    _world, run_client, _ = cloud_run
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
