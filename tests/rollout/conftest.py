"""Cloud Run and Cloud Monitoring as in-process gRPC servers (Google's own message types)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.cloud import monitoring_v3, run_v2
from google.cloud.monitoring_v3.services.metric_service.transports.grpc import (
    MetricServiceGrpcTransport,
)

from tests.fakegcp import FakeCloudRun, FakeGrpc

PROJECT, REGION, NAME = "demo-proj", "us-west2", "prediction-worker"
RESOURCE = f"projects/{PROJECT}/locations/{REGION}/services/{NAME}"
OLD, NEW = f"{NAME}-00001-aaa", f"{NAME}-00002-bbb"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/platform/{NAME}@sha256:{'b' * 64}"


@pytest.fixture
def cloud_run() -> Iterator[tuple[FakeCloudRun, run_v2.ServicesClient]]:
    """The service with two revisions, the older one serving all traffic by name."""
    with FakeCloudRun() as fake:
        fake.serve(RESOURCE, IMAGE, revision=NEW, traffic={OLD: 100})
        yield fake, fake.clients()[0]


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
