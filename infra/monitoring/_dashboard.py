"""The batch pipeline's dashboard, derived from the same topology as the alerts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra import limits
from infra.config import StackConfig
from infra.monitoring._specs import (
    dead_letter_subscriptions,
    push_subscriptions,
)
from infra.naming import Kind
from infra.options import child_options
from shared.events import EVENT_FIELD

__all__ = ["Dashboard", "DashboardArgs", "dashboard_layout"]

WIDTH, HEIGHT, COLUMNS = 6, 4, 12


@dataclass(frozen=True)
class DashboardArgs:
    stack: StackConfig
    batch_events_metric_type: pulumi.Input[str]


def _in(values: list[str]) -> str:
    return "(" + " OR ".join(f'"{v}"' for v in values) + ")"


def _chart(title: str, filter_: str, aligner: str, reducer: str, group_by: list[str]) -> dict:
    return {
        "title": title,
        "xyChart": {
            "dataSets": [
                {
                    "plotType": "LINE",
                    "timeSeriesQuery": {
                        "timeSeriesFilter": {
                            "filter": filter_,
                            "aggregation": {
                                "alignmentPeriod": "60s",
                                "perSeriesAligner": aligner,
                                "crossSeriesReducer": reducer,
                                "groupByFields": group_by,
                            },
                        }
                    },
                }
            ]
        },
    }


def dashboard_layout(cfg: StackConfig, batch_events_metric_type: str) -> dict[str, Any]:
    """The dashboard's JSON (the Monitoring API's Dashboard, mosaic layout)."""
    topics = [cfg.name(Kind.TOPIC, key) for key in cfg.platform.topics]
    subs = [name for name, _ in push_subscriptions(cfg)]
    dls = dead_letter_subscriptions(cfg)
    services = [cfg.name(Kind.SERVICE, name) for name in cfg.platform.services]
    by_sub, by_svc = ["resource.label.subscription_id"], ["resource.label.service_name"]
    charts = [
        _chart(
            "Publish rate per topic",
            f'metric.type = "{limits.METRIC_PUBSUB_TOPIC_SENDS}" AND '
            f'resource.type = "pubsub_topic" AND resource.label.topic_id = {_in(topics)}',
            "ALIGN_RATE",
            "REDUCE_SUM",
            ["resource.label.topic_id"],
        ),
        _chart(
            "Push latency p99 per subscription",
            f'metric.type = "{limits.METRIC_PUBSUB_PUSH_LATENCIES}" AND '
            f'resource.type = "pubsub_subscription" AND resource.label.subscription_id = '
            f"{_in(subs)}",
            "ALIGN_DELTA",
            "REDUCE_PERCENTILE_99",
            by_sub,
        ),
        _chart(
            "Push errors (not acked) per subscription",
            f'metric.type = "{limits.METRIC_PUBSUB_PUSH_REQUESTS}" AND '
            f'resource.type = "pubsub_subscription" AND resource.label.subscription_id = '
            f'{_in(subs)} AND metric.label.response_class != "ack"',
            "ALIGN_RATE",
            "REDUCE_SUM",
            by_sub,
        ),
        _chart(
            "Dead-letter depth",
            f'metric.type = "{limits.METRIC_PUBSUB_UNDELIVERED}" AND '
            f'resource.type = "pubsub_subscription" AND resource.label.subscription_id = '
            f"{_in(dls)}",
            "ALIGN_MAX",
            "REDUCE_SUM",
            by_sub,
        ),
        _chart(
            "Batch outcomes (abnormal ends, by event)",
            f'metric.type = "{batch_events_metric_type}" AND resource.type = "cloud_run_revision"',
            "ALIGN_SUM",
            "REDUCE_SUM",
            [f"metric.label.{EVENT_FIELD}"],
        ),
        _chart(
            "Instances per service",
            f'metric.type = "{limits.METRIC_RUN_INSTANCES}" AND '
            f'resource.type = "cloud_run_revision" AND resource.label.service_name = '
            f"{_in(services)}",
            "ALIGN_MAX",
            "REDUCE_SUM",
            by_svc,
        ),
    ]
    tiles = [
        {
            "xPos": (i % 2) * WIDTH,
            "yPos": (i // 2) * HEIGHT,
            "width": WIDTH,
            "height": HEIGHT,
            "widget": chart,
        }
        for i, chart in enumerate(charts)
    ]
    return {
        "displayName": f"[{cfg.stack}] Batch prediction pipeline",
        "mosaicLayout": {"columns": COLUMNS, "tiles": tiles},
    }


class Dashboard(pulumi.ComponentResource):
    """One dashboard for the pipeline: publish rate, push latency and errors, dead-letter
    depth, batch outcomes, instances. https://cloud.google.com/monitoring/dashboards/api-dashboard
    """

    dashboard_id: pulumi.Output[str]

    def __init__(self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:index:Dashboard", name, None, opts)
        cfg = args.stack
        layout = pulumi.Output.from_input(args.batch_events_metric_type).apply(
            lambda metric: json.dumps(dashboard_layout(cfg, metric), sort_keys=True)
        )
        dashboard = gcp.monitoring.Dashboard(
            name, project=cfg.project, dashboard_json=layout, opts=child_options(self, opts)
        )
        self.dashboard_id = dashboard.id
        self.register_outputs({"dashboard_id": self.dashboard_id})
