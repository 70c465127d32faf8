"""A revision's request count by response class, from Cloud Monitoring."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from infra.limits import METRIC_RUN_REQUESTS

__all__ = ["MetricsError", "MonitoringErrorRate", "RequestSample", "request_count_filter"]

TIMEOUT_S = 30.0


class MetricsError(Exception):
    """Cloud Monitoring could not be read (the message says why)."""


@dataclass(frozen=True)
class RequestSample:
    total: int
    errors: int  # 5xx
    window_s: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.total,
            "errors_5xx": self.errors,
            "error_rate": round(self.error_rate, 4),
            "window_s": self.window_s,
        }


def request_count_filter(service: str, revision: str) -> str:
    """The time-series filter (https://cloud.google.com/monitoring/api/v3/filters) on Cloud
    Run's request count (``infra.limits.METRIC_RUN_REQUESTS``: DELTA INT64 per revision,
    labelled ``response_code_class``)."""
    return (
        f'metric.type = "{METRIC_RUN_REQUESTS}" AND resource.type = "cloud_run_revision" '
        f'AND resource.label.service_name = "{service}" '
        f'AND resource.label.revision_name = "{revision}"'
    )


class MonitoringErrorRate:
    """``client``: a ``monitoring_v3.MetricServiceClient``."""

    def __init__(self, client: Any, *, project: str) -> None:
        self._client = client
        self.project = project

    def sample(
        self, service: str, revision: str, *, start: datetime, end: datetime
    ) -> RequestSample:
        from google.api_core import exceptions as gexc
        from google.cloud import monitoring_v3
        from google.protobuf import duration_pb2, timestamp_pb2

        window = max(end - start, timedelta(seconds=60))
        start_ts, end_ts = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
        start_ts.FromDatetime(end - window)
        end_ts.FromDatetime(end)
        period = duration_pb2.Duration()
        period.FromTimedelta(window)
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self.project}",
            filter=request_count_filter(service, revision),
            interval=monitoring_v3.TimeInterval(start_time=start_ts, end_time=end_ts),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=period,
                per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
                cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
                group_by_fields=["metric.label.response_code_class"],
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        total = errors = 0
        try:
            for series in self._client.list_time_series(request=request, timeout=TIMEOUT_S):
                count = sum(int(p.value.int64_value) for p in series.points)
                total += count
                if series.metric.labels.get("response_code_class") == "5xx":
                    errors += count
        except gexc.GoogleAPICallError as exc:
            raise MetricsError(
                f"Cloud Monitoring: cannot read {METRIC_RUN_REQUESTS} of {service}/{revision}: "
                f"{exc.message}"
            ) from None
        return RequestSample(total=total, errors=errors, window_s=window.total_seconds())
