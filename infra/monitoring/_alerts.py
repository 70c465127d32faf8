"""The alert policies: one per :class:`AlertSpec` the topology implies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig
from infra.deploy_env import label_value
from infra.durations import api_duration
from infra.monitoring._specs import AlertSpec, alert_specs
from infra.options import child_options

__all__ = ["Alerts", "AlertsArgs"]


@dataclass(frozen=True)
class AlertsArgs:
    stack: StackConfig
    channel_ids: Sequence[pulumi.Input[str]]
    # The log-based metrics the specs read must exist before a policy names them.
    metrics: Sequence[pulumi.Resource] = field(default_factory=tuple)


def _threshold(spec: dict[str, Any]) -> gcp.monitoring.AlertPolicyConditionConditionThresholdArgs:
    aggs = gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs
    given = dict(spec)
    for key in ("aggregations", "denominator_aggregations"):
        if key in given:
            given[key] = [aggs(**a) for a in given[key]]
    # No data (an idle platform between seasons) is not an incident.
    given.setdefault("evaluation_missing_data", "EVALUATION_MISSING_DATA_INACTIVE")
    return gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(**given)


class Alerts(pulumi.ComponentResource):
    """Alert policies derived from the topology, each notifying every channel and naming its
    runbook section; ``policy_names`` lists them."""

    policy_names: list[pulumi.Output[str]]

    def __init__(self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:index:Alerts", name, None, opts)
        cfg = args.stack
        self.policy_names = []
        for spec in alert_specs(cfg):
            self.policy_names.append(self._policy(spec, args, opts).name)
        self.register_outputs({"policy_names": self.policy_names})

    def _policy(
        self, spec: AlertSpec, args: AlertsArgs, opts: pulumi.ResourceOptions | None
    ) -> gcp.monitoring.AlertPolicy:
        cfg = args.stack
        th = cfg.platform.monitoring.thresholds  # type: ignore[union-attr]
        condition = gcp.monitoring.AlertPolicyConditionArgs(
            display_name=spec.display_name,
            condition_threshold=_threshold(spec.threshold) if spec.threshold else None,
            condition_matched_log=(
                gcp.monitoring.AlertPolicyConditionConditionMatchedLogArgs(filter=spec.log_filter)
                if spec.log_filter
                else None
            ),
        )
        strategy = gcp.monitoring.AlertPolicyAlertStrategyArgs(
            auto_close=api_duration(th.auto_close_seconds),
            # Log-match conditions require a rate limit (and allow nothing else to close them).
            notification_rate_limit=(
                gcp.monitoring.AlertPolicyAlertStrategyNotificationRateLimitArgs(
                    period=api_duration(th.log_alert_notify_every_seconds)
                )
                if spec.log_filter
                else None
            ),
        )
        return gcp.monitoring.AlertPolicy(
            spec.key,
            project=cfg.project,
            display_name=spec.display_name,
            combiner="OR",
            conditions=[condition],
            notification_channels=list(args.channel_ids),
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content=spec.documentation(), mime_type="text/markdown"
            ),
            alert_strategy=strategy,
            user_labels={"platform-stack": label_value(cfg.stack), "alert-kind": str(spec.kind)},
            opts=child_options(self, opts, depends_on=list(args.metrics)),
        )
