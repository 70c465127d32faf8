"""How the platform is watched, derived from the same typed topology as the platform itself.

A new topic, subscription, service or job gets its alerts, its dashboard tiles and its
coverage check without anyone remembering to add them. The components, one concept each:

* :class:`NotificationChannels` (emails, Slack, a webhook) from ``platform.monitoring.notify``;
* :class:`BatchEventsMetric`, the log-based counter of the coordinator's batch events
  (``shared/events.py``: the event names are the contract);
* :class:`Alerts`, one policy per :class:`AlertSpec` (``alert_specs``), each naming its
  section of ``docs/runbooks.md``;
* :class:`Dashboard`, the pipeline's dashboard.
"""

from infra.monitoring._alerts import Alerts, AlertsArgs
from infra.monitoring._channels import NotificationChannels, NotificationChannelsArgs
from infra.monitoring._dashboard import Dashboard, DashboardArgs, dashboard_layout
from infra.monitoring._metrics import BatchEventsMetric, BatchEventsMetricArgs
from infra.monitoring._specs import (
    BATCH_EVENTS_METRIC,
    RUNBOOK,
    RUNBOOK_SECTIONS,
    AlertKind,
    AlertSpec,
    alert_specs,
    anchor,
    backlog_threshold_seconds,
    batch_event_services,
    batch_events_filter,
    dead_letter_subscriptions,
    push_subscriptions,
)

__all__ = [
    "Alerts",
    "AlertsArgs",
    "NotificationChannels",
    "NotificationChannelsArgs",
    "Dashboard",
    "DashboardArgs",
    "dashboard_layout",
    "BatchEventsMetric",
    "BatchEventsMetricArgs",
    "BATCH_EVENTS_METRIC",
    "RUNBOOK",
    "RUNBOOK_SECTIONS",
    "AlertKind",
    "AlertSpec",
    "alert_specs",
    "anchor",
    "backlog_threshold_seconds",
    "batch_event_services",
    "batch_events_filter",
    "dead_letter_subscriptions",
    "push_subscriptions",
]
