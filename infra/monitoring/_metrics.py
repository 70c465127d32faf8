"""The log-based metric counting the coordinator's batch events (``shared/events.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra import limits
from infra.config import StackConfig
from infra.monitoring._specs import BATCH_EVENTS_METRIC, batch_event_services, batch_events_filter
from infra.naming import Kind
from infra.options import child_options
from shared.events import EVENT_FIELD

__all__ = ["BatchEventsMetric", "BatchEventsMetricArgs"]


@dataclass(frozen=True)
class BatchEventsMetricArgs:
    stack: StackConfig


class BatchEventsMetric(pulumi.ComponentResource):
    """A counter of abnormal batch ends, labelled by event; ``metric_type`` is what alerts and
    the dashboard read (``logging.googleapis.com/user/<name>``), resolving once it exists.

    https://cloud.google.com/logging/docs/logs-based-metrics/counter-metrics
    """

    metric_type: pulumi.Output[str]

    def __init__(
        self, name: str, args: BatchEventsMetricArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:index:BatchEventsMetric", name, None, opts)
        cfg = args.stack
        metric = gcp.logging.Metric(
            name,
            project=cfg.project,
            name=cfg.name(Kind.LOG_METRIC, BATCH_EVENTS_METRIC),
            description="Batches the coordinator closed abnormally, by event (shared/events.py)",
            filter=batch_events_filter(batch_event_services(cfg)),
            metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
                metric_kind="DELTA",
                value_type="INT64",
                labels=[
                    gcp.logging.MetricMetricDescriptorLabelArgs(
                        key=EVENT_FIELD, value_type="STRING", description="the batch event"
                    )
                ],
            ),
            label_extractors={EVENT_FIELD: f"EXTRACT(jsonPayload.{EVENT_FIELD})"},
            opts=child_options(self, opts),
        )
        self.metric_type = pulumi.Output.concat(limits.USER_METRIC_PREFIX, metric.name)
        self.register_outputs({"metric_type": self.metric_type})
