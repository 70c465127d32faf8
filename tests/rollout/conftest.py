"""Cloud Run and Cloud Monitoring as in-process gRPC servers (Google's own message types)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from google.cloud import monitoring_v3, run_v2
from google.cloud.monitoring_v3.services.metric_service.transports.grpc import (
    MetricServiceGrpcTransport,
)
from google.cloud.run_v2.services.services.transports.grpc import ServicesGrpcTransport

from tests.fakegcp import FakeGrpc, done_operation

PROJECT, REGION, NAME = "demo-proj", "us-west2", "prediction-worker"
RESOURCE = f"projects/{PROJECT}/locations/{REGION}/services/{NAME}"
REV = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


@dataclass
class CloudRunWorld:
    """One service whose traffic block the fake applies like Cloud Run does."""

    revisions: list[str]
    traffic: list[run_v2.TrafficTarget] = field(default_factory=list)
    etag: int = 1
    deny_updates: bool = False
    history: list[dict[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def service(self) -> run_v2.Service:
        statuses = [
            run_v2.TrafficTargetStatus(
                type_=t.type_,
                revision=t.revision,
                percent=t.percent,
                tag=t.tag,
                uri=f"https://{t.tag}---{NAME}-abc-uw.a.run.app" if t.tag else "",
            )
            for t in self.traffic
        ]
        return run_v2.Service(
            name=RESOURCE,
            uri=f"https://{NAME}-abc-uw.a.run.app",
            etag=f'"{self.etag}"',
            latest_ready_revision=f"{RESOURCE}/revisions/{self.revisions[-1]}",
            latest_created_revision=f"{RESOURCE}/revisions/{self.revisions[-1]}",
            traffic=list(self.traffic),
            traffic_statuses=statuses,
        )

    def split(self) -> dict[str, int]:
        return {t.revision: t.percent for t in self.traffic if t.percent}


@pytest.fixture
def cloud_run() -> Iterator[tuple[CloudRunWorld, run_v2.ServicesClient, FakeGrpc]]:
    world = CloudRunWorld(revisions=[f"{NAME}-00001-aaa", f"{NAME}-00002-bbb"])
    world.traffic = [run_v2.TrafficTarget(type_=REV, revision=world.revisions[0], percent=100)]
    server = FakeGrpc()

    def get_service(request, context):
        if request.name != RESOURCE:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Resource '{request.name}' not found")
        with world.lock:
            return world.service()

    def update_service(request, context):
        with world.lock:
            if world.deny_updates:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED, "Permission 'run.services.update' denied"
                )
            if request.service.etag and request.service.etag != f'"{world.etag}"':
                context.abort(grpc.StatusCode.ABORTED, "etag mismatch: the service changed")
            known = set(world.revisions)
            for t in request.service.traffic:
                if t.type_ == REV and t.revision not in known:
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, f"Revision {t.revision} not found"
                    )
            if sum(t.percent for t in request.service.traffic) != 100:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "traffic must sum to 100")
            world.traffic = list(request.service.traffic)
            world.etag += 1
            world.history.append(world.split())
            return done_operation(f"{RESOURCE}/operations/op{world.etag}", world.service())

    server.unary(
        "google.cloud.run.v2.Services",
        "GetService",
        run_v2.GetServiceRequest,
        run_v2.Service,
        get_service,
    )
    from google.longrunning import operations_pb2

    server.unary(
        "google.cloud.run.v2.Services",
        "UpdateService",
        run_v2.UpdateServiceRequest,
        operations_pb2.Operation,
        update_service,
    )
    with server:
        client = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=server.channel()))
        yield world, client, server


@dataclass
class MonitoringWorld:
    """Answers request_count per response class from ``counts(revision, call_index)``."""

    counts: Callable[[str, int], dict[str, int]] = lambda rev, i: {"2xx": 100}
    calls: int = 0
    fail: grpc.StatusCode | None = None


@pytest.fixture
def monitoring() -> Iterator[tuple[MonitoringWorld, monitoring_v3.MetricServiceClient, FakeGrpc]]:
    world = MonitoringWorld()
    server = FakeGrpc()

    def list_time_series(request, context):
        if world.fail is not None:
            context.abort(world.fail, "Permission monitoring.timeSeries.list denied")
        revision = request.filter.split('revision_name = "')[1].split('"')[0]
        world.calls += 1
        series = []
        for klass, n in world.counts(revision, world.calls).items():
            series.append(
                monitoring_v3.TimeSeries(
                    metric={
                        "type": "run.googleapis.com/request_count",
                        "labels": {"response_code_class": klass},
                    },
                    points=[
                        monitoring_v3.Point(
                            value=monitoring_v3.TypedValue(int64_value=n), interval=request.interval
                        )
                    ],
                )
            )
        return monitoring_v3.ListTimeSeriesResponse(time_series=series)

    server.unary(
        "google.monitoring.v3.MetricService",
        "ListTimeSeries",
        monitoring_v3.ListTimeSeriesRequest,
        monitoring_v3.ListTimeSeriesResponse,
        list_time_series,
    )
    with server:
        client = monitoring_v3.MetricServiceClient(
            transport=MetricServiceGrpcTransport(channel=server.channel())
        )
        yield world, client, server
