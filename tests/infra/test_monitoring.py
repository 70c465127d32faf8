"""Monitoring derived from the topology (issue 17), on the prod and dev plans under mocks.

Shapes and enums are held to Google's discovery documents (monitoring v3 for alert policies,
monitoring v1 for dashboards, logging v2 for log-based metrics), which the provider does not
validate under mocks.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient
import pytest

from infra import limits
from infra.config import ConfigError
from infra.monitoring import RUNBOOK_SECTIONS, AlertKind, anchor, backlog_threshold_seconds
from infra.paths import REPO_ROOT
from policy.graph import Resource, T
from scripts.plan import Plan, evaluate_stack
from shared.events import EVENT_FIELD, BatchEvent

PLATFORM = "prediction-platform:platform"
DOCS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


@cache
def discovery(name: str) -> dict[str, Any]:
    return json.loads((DOCS / f"{name}.json").read_text())


def conforms(value: Any, schema: dict, doc: dict, path: str) -> list[str]:
    """Problems of ``value`` (camelCase JSON) against a discovery schema: unknown fields and
    values outside an enum."""
    if "$ref" in schema:
        schema = doc["schemas"][schema["$ref"]]
    problems = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                problems.append(f"{path}.{key}: not a field of {schema.get('id', '?')}")
            else:
                problems += conforms(item, schema["properties"][key], doc, f"{path}.{key}")
    elif isinstance(value, list | tuple) and "items" in schema:
        for i, item in enumerate(value):
            problems += conforms(item, schema["items"], doc, f"{path}[{i}]")
    elif "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in {schema['enum']}")
    return problems


def plain(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@pytest.fixture(params=["prod", "dev"])
def plan(request: pytest.FixtureRequest, prod_plan: Plan, dev_plan: Plan) -> Plan:
    return {"prod": prod_plan, "dev": dev_plan}[request.param]


def policies(plan: Plan, kind: AlertKind) -> list[Resource]:
    return [
        p for p in plan.of_type(T.ALERT_POLICY) if p.get("userLabels")["alert-kind"] == str(kind)
    ]


def condition(policy: Resource) -> dict[str, Any]:
    (only,) = policy.get("conditions")
    return plain(only)


def covering(plan: Plan, kind: AlertKind, name: str) -> Resource:
    def filters(p: Resource) -> str:
        c = condition(p)
        return str(c.get("conditionThreshold", {}).get("filter")) + str(
            c.get("conditionMatchedLog", {}).get("filter")
        )

    found = [p for p in policies(plan, kind) if f'"{name}"' in filters(p)]
    assert len(found) == 1, f"{kind}: expected one policy naming {name}, got {len(found)}"
    return found[0]


# --- Coverage: every watched thing has its alert, with the right filter --------------------------


def test_each_dead_letter_subscription_alerts_on_any_retained_message(plan: Plan) -> None:
    dls = [s for s in plan.of_type(T.SUBSCRIPTION) if not s.get("pushConfig")]
    assert len(dls) == 2
    th = plan.config.platform.monitoring.thresholds
    for sub in dls:
        c = condition(covering(plan, AlertKind.DEAD_LETTERS, sub.get("name")))["conditionThreshold"]
        assert f'metric.type = "{limits.METRIC_PUBSUB_UNDELIVERED}"' in c["filter"], sub.urn
        assert f'resource.label.subscription_id = "{sub.get("name")}"' in c["filter"]
        assert (c["comparison"], c["thresholdValue"]) == ("COMPARISON_GT", 0), sub.urn
        assert c["duration"] == f"{th.dead_letter_for_seconds}s"
    assert len(policies(plan, AlertKind.DEAD_LETTERS)) == len(dls)


def test_dev_waits_longer_before_a_dead_letter_alert(prod_plan: Plan, dev_plan: Plan) -> None:
    durations = {
        p.stack: {
            condition(a)["conditionThreshold"]["duration"] for a in policies(p, "dead-letters")
        }
        for p in (prod_plan, dev_plan)
    }
    assert durations == {"prod": {"300s"}, "dev": {"900s"}}


def test_each_push_subscription_alerts_on_backlog_age_and_push_errors(prod_plan: Plan) -> None:
    push = [s for s in prod_plan.of_type(T.SUBSCRIPTION) if s.get("pushConfig")]
    assert len(push) == 2
    for sub in push:
        name = sub.get("name")
        age = condition(covering(prod_plan, AlertKind.BACKLOG_AGE, name))["conditionThreshold"]
        assert limits.METRIC_PUBSUB_OLDEST_UNACKED_AGE in age["filter"], sub.urn
        # 5 attempts x 600 s ack deadline + backoffs 10+20+40+80 s + the 600 s margin.
        assert age["thresholdValue"] == 5 * 600 + 150 + 600 == 3750, sub.urn
        errors = condition(covering(prod_plan, AlertKind.PUSH_ERRORS, name))["conditionThreshold"]
        assert 'metric.label.response_class != "ack"' in errors["filter"], sub.urn
        assert f'subscription_id = "{name}"' in errors["denominatorFilter"], sub.urn
        assert "response_class" not in errors["denominatorFilter"], "the ratio's whole"
        assert errors["thresholdValue"] == 0.1


def test_the_backlog_threshold_follows_the_retry_policy(prod_config: dict[str, Any]) -> None:
    sub = prod_config[PLATFORM]["topics"]["prediction-request"]["subscriptions"][0]
    sub.update(ack_deadline_seconds=60, max_delivery_attempts=10, max_backoff_seconds=60)
    plan = evaluate_stack("prod", config=prod_config, env={})
    (cfg,) = [
        s for _, t in plan.config.platform.topics.items() for s in t.subscriptions if s.path == "/"
    ]
    # 10 x 60 s + backoffs 10, 20, 40, then capped at 60 (six times) + 600 s margin.
    assert backlog_threshold_seconds(cfg, 600) == 600 + (10 + 20 + 40 + 6 * 60) + 600
    age = covering(plan, AlertKind.BACKLOG_AGE, "prediction-request-worker-prod")
    assert condition(age)["conditionThreshold"]["thresholdValue"] == 1630


def test_each_service_alerts_on_its_5xx_share_and_on_running_at_max_instances(
    prod_plan: Plan,
) -> None:
    for svc in prod_plan.of_type(T.CLOUD_RUN):
        name = svc.get("name")
        share = condition(covering(prod_plan, AlertKind.SERVER_ERRORS, name))["conditionThreshold"]
        assert f'metric.type = "{limits.METRIC_RUN_REQUESTS}"' in share["filter"]
        assert 'metric.label.response_code_class = "5xx"' in share["filter"], svc.urn
        assert f'resource.label.service_name = "{name}"' in share["denominatorFilter"]
        at_max = condition(covering(prod_plan, AlertKind.AT_MAX_INSTANCES, name))
        c = at_max["conditionThreshold"]
        assert limits.METRIC_RUN_INSTANCES in c["filter"], svc.urn
        assert c["comparison"] == "COMPARISON_GE"
        assert c["thresholdValue"] == svc.get("template.scaling.maxInstanceCount"), svc.urn
        assert c["duration"] == "900s"


def test_stuck_batches_are_counted_from_the_coordinators_events(prod_plan: Plan) -> None:
    (metric,) = prod_plan.of_type(T.LOG_METRIC)
    assert metric.get("name") == "batch-events-prod"
    f = metric.get("filter")
    assert 'resource.labels.service_name = ("prediction-coordinator")' in f
    # The contract: the filter names exactly the events shared/events.py defines.
    named = set(re.findall(rf"jsonPayload\.{EVENT_FIELD} = \((.*)\)", f)[0].split(" OR "))
    assert named == {f'"{e.value}"' for e in BatchEvent}
    assert metric.get("labelExtractors") == {EVENT_FIELD: f"EXTRACT(jsonPayload.{EVENT_FIELD})"}
    assert metric.get("metricDescriptor.metricKind") == "DELTA"
    (alert,) = policies(prod_plan, AlertKind.STUCK_BATCHES)
    c = condition(alert)["conditionThreshold"]
    assert f'metric.type = "{limits.USER_METRIC_PREFIX}batch-events-prod"' in c["filter"]
    assert (c["comparison"], c["thresholdValue"]) == ("COMPARISON_GT", 0)
    assert metric.urn in alert.dependencies, "the policy waits for the metric it reads"


def test_each_scheduler_job_failing_alerts(prod_plan: Plan) -> None:
    jobs = prod_plan.of_type(T.SCHEDULER_JOB)
    assert {j.get("name") for j in jobs} == {"check-stalled-prod", "cleanup-stuck-prod"}
    for job in jobs:
        policy = covering(prod_plan, AlertKind.SCHEDULER_FAILING, job.get("name"))
        log = condition(policy)["conditionMatchedLog"]["filter"]
        assert 'resource.type = "cloud_scheduler_job"' in log and "severity >= ERROR" in log
        # Log-match alerts are refused without a notification rate limit.
        assert policy.get("alertStrategy.notificationRateLimit.period") == "3600s", policy.urn


# --- Every policy: notifies someone, names its runbook section, speaks the API's enums ---------


def test_every_policy_notifies_every_channel(plan: Plan) -> None:
    channels = {c.out("name") for c in plan.of_type(T.NOTIFICATION_CHANNEL)}
    assert channels and all(c.startswith("projects/") for c in channels)
    for policy in plan.of_type(T.ALERT_POLICY):
        assert set(policy.get("notificationChannels")) == channels, policy.urn


def test_every_policy_names_a_runbook_section_that_exists(plan: Plan) -> None:
    runbook = (REPO_ROOT / "docs" / "runbooks.md").read_text()
    headings = {m.strip() for m in re.findall(r"^#+ (.+)$", runbook, flags=re.M)}
    assert set(RUNBOOK_SECTIONS.values()) <= headings, "one runbook section per alert kind"
    for policy in plan.of_type(T.ALERT_POLICY):
        doc = policy.get("documentation.content")
        section = RUNBOOK_SECTIONS[AlertKind(policy.get("userLabels")["alert-kind"])]
        assert f'docs/runbooks.md, section "{section}" (#{anchor(section)})' in doc, policy.urn
        assert len(doc) <= limits.ALERT_DOCUMENTATION_MAX_CHARS, policy.urn


def test_each_runbook_section_says_what_it_means_what_to_look_at_and_what_to_run() -> None:
    runbook = (REPO_ROOT / "docs" / "runbooks.md").read_text()
    for section in RUNBOOK_SECTIONS.values():
        body = runbook.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**What it means**", "**What to look at**", "**What to run**"):
            assert part in body, f"{section}: no {part}"


def test_alert_policies_conform_to_the_monitoring_v3_api(plan: Plan) -> None:
    doc = discovery("monitoring.v3")
    for policy in plan.of_type(T.ALERT_POLICY):
        body = plain({k: v for k, v in policy.inputs.items() if k != "project"})
        problems = conforms(body, doc["schemas"]["AlertPolicy"], doc, policy.name)
        assert not problems, problems
        for c in body["conditions"]:
            for agg in c.get("conditionThreshold", {}).get("aggregations", []):
                period = int(agg["alignmentPeriod"].rstrip("s"))
                assert period >= limits.MONITORING_MIN_ALIGNMENT_S, policy.urn


def test_the_log_metric_conforms_to_the_logging_v2_api(prod_plan: Plan) -> None:
    doc = discovery("logging.v2")
    (metric,) = prod_plan.of_type(T.LOG_METRIC)
    body = plain({k: v for k, v in metric.inputs.items() if k != "project"})
    assert not conforms(body, doc["schemas"]["LogMetric"], doc, metric.name)
    assert limits.LOG_METRIC_NAME_RE.fullmatch(body["name"])


def test_the_dashboard_shows_the_pipeline_and_conforms_to_the_monitoring_v1_api(
    plan: Plan,
) -> None:
    (dashboard,) = plan.of_type(T.DASHBOARD)
    layout = json.loads(dashboard.get("dashboardJson"))
    doc = discovery("monitoring.v1")
    assert not conforms(layout, doc["schemas"]["Dashboard"], doc, "dashboard")
    tiles = layout["mosaicLayout"]["tiles"]
    cells = [
        (t["xPos"] + dx, t["yPos"] + dy)
        for t in tiles
        for dx in range(t["width"])
        for dy in range(t["height"])
    ]
    assert len(cells) == len(set(cells)), "tiles overlap"
    assert all(x < layout["mosaicLayout"]["columns"] for x, _ in cells)
    text = json.dumps(layout)
    titles = {t["widget"]["title"] for t in tiles}
    for word in (
        "Publish rate",
        "Push latency",
        "Push errors",
        "Dead-letter",
        "Batch outcomes",
        "Instances",
    ):
        assert any(word in t for t in titles), word
    for r in [*plan.of_type(T.SUBSCRIPTION), *plan.of_type(T.CLOUD_RUN), *plan.of_type(T.TOPIC)]:
        if r.type == T.TOPIC and r.get("name").endswith("dead-letter"):
            continue
        assert f'\\"{r.get("name")}\\"' in text, f"{r.urn} is not on the dashboard"


# --- Channels from config -------------------------------------------------------------------


def test_channels_from_config_keep_their_secret_out_of_the_plan(prod_config: dict) -> None:
    p = prod_config[PLATFORM]
    p["secrets"].update({"alerts-slack-token": {}, "alerts-webhook-url": {}})
    p["monitoring"]["notify"].update(
        slack={"channel": "#prediction-alerts", "token_secret": "alerts-slack-token"},
        webhook={"url_secret": "alerts-webhook-url"},
    )
    plan = evaluate_stack("prod", config=prod_config, env={})
    channels = {c.name: c for c in plan.of_type(T.NOTIFICATION_CHANNEL)}
    assert set(channels) == {
        "notify-email-prediction-oncall@nba-props-platform.com",
        "notify-slack",
        "notify-webhook",
    }
    assert channels["notify-slack"].get("type") == "slack"
    assert channels["notify-slack"].get("sensitiveLabels") == "[secret]"
    assert channels["notify-webhook"].get("labels") == "[secret]", "the URL carries the token"
    # The secrets live in Secret Manager like every platform secret; no one may read them.
    secrets = {s.get("secretId") for s in plan.of_type(T.SECRET)}
    assert {"alerts-slack-token", "alerts-webhook-url"} <= secrets
    readers = {g.get("secretId") for g in plan.of_type(T.SECRET_IAM_MEMBER)}
    assert not readers & {"alerts-slack-token", "alerts-webhook-url"}
    for policy in plan.of_type(T.ALERT_POLICY):
        assert len(policy.get("notificationChannels")) == 3, policy.urn


def test_channels_are_granted_nothing(prod_plan: Plan) -> None:
    graph = prod_plan.graph
    notify = [r for r in prod_plan.resources if r.type == "platform:index:NotificationChannels"]
    assert [c.type for c in graph.children(notify[0])] == [T.NOTIFICATION_CHANNEL]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            lambda m, p: m["notify"].update(emails=[]),
            "platform.monitoring.notify: the stack's alerts would notify nobody",
        ),
        (
            lambda m, p: m["notify"].update(emails=["oncall"]),
            "not email addresses: oncall",
        ),
        (
            lambda m, p: m["notify"].update(slack={"channel": "#a", "token_secret": "nope"}),
            "platform.monitoring.notify.slack.token_secret: unknown secret 'nope'",
        ),
        (
            lambda m, p: m["notify"].update(webhook={"url_secret": "coordinator-api-key"}),
            "secret 'coordinator-api-key' is also read by prediction-coordinator",
        ),
        (
            lambda m, p: m["thresholds"].update(server_error_ratio=5),
            "server_error_ratio",
        ),
    ],
)
def test_bad_monitoring_config_is_a_config_error(prod_config: dict, change, fragment) -> None:
    mon = prod_config[PLATFORM]["monitoring"]
    mon.setdefault("thresholds", {})
    change(mon, prod_config[PLATFORM])
    with pytest.raises(ConfigError) as info:
        evaluate_stack("prod", config=prod_config, env={})
    assert fragment in str(info.value)
