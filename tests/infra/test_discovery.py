"""Google's own API definitions as the reference: every enum-valued or bounded input the
program registers (prod, dev, and generated topologies) checked against the discovery
documents shipped in google-api-python-client, and infra/limits.py held to the same text.

Pulumi's input names are the APIs' camelCase field names except where listed in
``_TO_API``; inputs that exist only on the Pulumi side (``project``, ``location``,
``deletionProtection``...) are listed per type, so a new input the test does not know fails
instead of being skipped.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import googleapiclient
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra import limits
from infra.config._formats import _tz_names
from policy.graph import T, thaw
from scripts.plan import Plan, evaluate_stack

DOCS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


@functools.cache
def doc(name: str) -> dict[str, Any]:
    return json.loads((DOCS / f"{name}.json").read_text())


def schema(api: str, name: str) -> dict[str, Any]:
    return doc(api)["schemas"][name]


def prop(api: str, schema_name: str, field: str) -> dict[str, Any]:
    return schema(api, schema_name)["properties"][field]


def param(api: str, path: tuple[str, ...], name: str) -> dict[str, Any]:
    node: Any = doc(api)
    for part in path[:-1]:
        node = node["resources"][part]
    return node["methods"][path[-1]]["parameters"][name]


# --- Pulumi inputs in the API's shape ----------------------------------------------------------


def _run_service(inputs: dict[str, Any]) -> dict[str, Any]:
    out = dict(inputs)
    out["traffic"] = out.pop("traffics", [])
    for container in out.get("template", {}).get("containers", []):
        container["env"] = container.pop("envs", [])
    return out


def _repository(inputs: dict[str, Any]) -> dict[str, Any]:
    # Pulumi: a list of policies with an id; the API: a map of id -> policy.
    out = dict(inputs)
    out["cleanupPolicies"] = {p.pop("id"): p for p in out.get("cleanupPolicies", [])}
    return out


def _secret(inputs: dict[str, Any]) -> dict[str, Any]:
    out = dict(inputs)
    replication = dict(out.get("replication", {}))
    if "auto" in replication:  # Pulumi's name for the API's Replication.automatic
        replication["automatic"] = replication.pop("auto")
    out["replication"] = replication
    return out


def _identity(inputs: dict[str, Any]) -> dict[str, Any]:
    return inputs


#: Pulumi type -> (discovery document, schema, Pulumi-only inputs, to the API's shape).
_TO_API: dict[str, tuple[str, str, frozenset[str], Callable[[dict], dict]]] = {
    T.CLOUD_RUN: (
        "run.v2",
        "GoogleCloudRunV2Service",
        frozenset({"project", "location", "deletionProtection"}),
        _run_service,
    ),
    T.SUBSCRIPTION: ("pubsub.v1", "Subscription", frozenset({"project"}), _identity),
    T.TOPIC: ("pubsub.v1", "Topic", frozenset({"project"}), _identity),
    T.SCHEDULER_JOB: ("cloudscheduler.v1", "Job", frozenset({"project", "region"}), _identity),
    T.SECRET: ("secretmanager.v1", "Secret", frozenset({"project", "secretId"}), _secret),
    T.FIRESTORE_DATABASE: (
        "firestore.v1",
        "GoogleFirestoreAdminV1Database",
        frozenset({"project", "deletionPolicy"}),
        _identity,
    ),
    T.FIRESTORE_INDEX: (
        "firestore.v1",
        "GoogleFirestoreAdminV1Index",
        frozenset({"project", "database", "collection"}),
        _identity,
    ),
    T.REPOSITORY: (
        "artifactregistry.v1",
        "Repository",
        frozenset({"project", "location", "repositoryId"}),
        _repository,
    ),
}

_DURATION = re.compile(r"-?\d+(?:\.\d{1,9})?s")


def _resolve(api: str, p: dict[str, Any]) -> dict[str, Any]:
    return schema(api, p["$ref"]) if "$ref" in p else p


def problems(api: str, p: dict[str, Any], value: Any, path: str) -> Iterator[str]:
    """What the discovery document ``api`` says is wrong with ``value`` for property ``p``."""
    p = _resolve(api, p)
    if "enum" in p:
        allowed = [e for e in p["enum"] if not e.endswith("_UNSPECIFIED")]
        if value not in allowed:
            yield f"{path}: {value!r} is not one of {allowed}"
        return
    kind = p.get("type")
    if kind == "object" and "properties" in p:
        if not isinstance(value, Mapping):
            yield f"{path}: expected an object, got {value!r}"
            return
        for key, v in value.items():
            if key not in p["properties"]:
                yield f"{path}.{key}: no such field in the API"
                continue
            yield from problems(api, p["properties"][key], v, f"{path}.{key}")
    elif kind == "object" and "additionalProperties" in p:
        for key, v in (value or {}).items():
            yield from problems(api, p["additionalProperties"], v, f"{path}[{key}]")
    elif kind == "array":
        for i, v in enumerate(value or []):
            yield from problems(api, p["items"], v, f"{path}[{i}]")
    elif kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # the mocks may hand integers over as floats
        if not isinstance(value, int) or isinstance(value, bool):
            yield f"{path}: {value!r} is not an integer"
        elif p.get("format") == "int32" and not -(2**31) <= value < 2**31:
            yield f"{path}: {value} is outside int32"
    elif kind == "boolean" and not isinstance(value, bool):
        yield f"{path}: {value!r} is not a boolean"
    elif kind == "string":
        if not isinstance(value, str):
            yield f"{path}: {value!r} is not a string"
        elif p.get("format") == "google-duration" and value and not _DURATION.fullmatch(value):
            yield f"{path}: {value!r} is not a google-duration like '600s'"


def _resource_problems(plan: Plan) -> list[str]:
    found = []
    for r in plan.custom():
        if r.type not in _TO_API:
            continue
        api, name, pulumi_only, to_api = _TO_API[r.type]
        inputs = to_api({k: v for k, v in thaw(r.inputs).items() if k not in pulumi_only})
        found += problems(api, {"$ref": name}, inputs, f"{r.type} {r.name}")
        found += [f"{r.type} {r.name}: {p}" for p in _bounded(r.type, thaw(r.inputs))]
    return found


# --- Bounds Google states in the documents' text -----------------------------------------------


def _bounds(text: str, pattern: str) -> tuple[float, float]:
    m = re.search(pattern, text)
    assert m, f"the discovery document no longer says {pattern!r}: update infra/limits.py"
    return float(m["lo"]), float(m["hi"])


def _seconds(d: str) -> float:
    return float(d.removesuffix("s"))


@functools.cache
def documented() -> dict[str, tuple[float, float]]:
    """Bounds read from Google's own words in the discovery documents."""
    sub = "Subscription"
    return {
        "ack": _bounds(
            prop("pubsub.v1", sub, "ackDeadlineSeconds")["description"],
            r"minimum custom deadline you can specify is (?P<lo>\d+) seconds\. The maximum "
            r"custom deadline you can specify is (?P<hi>\d+) seconds",
        ),
        "attempts": _bounds(
            prop("pubsub.v1", "DeadLetterPolicy", "maxDeliveryAttempts")["description"],
            r"must be between (?P<lo>\d+) and (?P<hi>\d+)",
        ),
        "backoff": _bounds(
            prop("pubsub.v1", "RetryPolicy", "minimumBackoff")["description"],
            r"between (?P<lo>\d+) and (?P<hi>\d+) seconds",
        ),
        "max_backoff": _bounds(
            prop("pubsub.v1", "RetryPolicy", "maximumBackoff")["description"],
            r"between (?P<lo>\d+) and (?P<hi>\d+) seconds",
        ),
        "attempt_deadline": (lambda m: (float(m["lo"]), float(m["hi"]) * 60))(
            re.search(
                r"interval \[(?P<lo>\d+) seconds, (?P<hi>\d+) minutes\]",
                prop("cloudscheduler.v1", "Job", "attemptDeadline")["description"],
            )
        ),
        "retry_count": (
            0.0,
            float(
                re.search(
                    r"Values greater than (\d+) and negative values are not allowed",
                    prop("cloudscheduler.v1", "RetryConfig", "retryCount")["description"],
                )[1]
            ),
        ),
        "env_value": (
            0.0,
            float(
                re.search(
                    r"maximum length is (\d+) bytes",
                    prop("run.v2", "GoogleCloudRunV2EnvVar", "value")["description"],
                )[1]
            ),
        ),
    }


def _in(name: str, value: float) -> bool:
    lo, hi = documented()[name]
    return lo <= value <= hi


def _pubsub_name_ok(name: str) -> bool:
    text = prop("pubsub.v1", "Topic", "name")["description"]
    assert "between 3 and 255 characters" in text and 'not start with `"goog"`' in text
    return bool(re.fullmatch(r"[A-Za-z][-A-Za-z0-9_.~+%]{2,254}", name)) and not name.startswith(
        "goog"
    )


# Cloud Run CPU: the run v2 document says "The only supported values for CPU are '1', '2',
# '4', and '8'"; the current CPU page adds 6 and fractions from 0.08 (infra/limits.py says why
# the page wins). This is the one documented disagreement, kept explicit: if the document
# changes, this test says so.
_RUN_DOC_CPUS = ("1", "2", "4", "8")
_RUN_PAGE_EXTRA = ("6", "fractional 0.08-1 in steps of 0.001")


def _cpu_ok(cpu: str) -> bool:
    if cpu in _RUN_DOC_CPUS or cpu == "6":
        return True
    try:
        value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    except ValueError:
        return False
    return limits.RUN_FRACTIONAL_CPU_MIN <= value < 1


def _bounded(typ: str, i: dict[str, Any]) -> Iterator[str]:
    if typ == T.SUBSCRIPTION:
        if not _pubsub_name_ok(i["name"]):
            yield f"subscription name {i['name']!r}"
        if "ackDeadlineSeconds" in i and not _in("ack", i["ackDeadlineSeconds"]):
            yield f"ackDeadlineSeconds {i['ackDeadlineSeconds']}"
        dead = i.get("deadLetterPolicy")
        if dead and not _in("attempts", dead["maxDeliveryAttempts"]):
            yield f"maxDeliveryAttempts {dead['maxDeliveryAttempts']}"
        retry = i.get("retryPolicy")
        if retry:
            if not _in("backoff", _seconds(retry["minimumBackoff"])):
                yield f"minimumBackoff {retry['minimumBackoff']}"
            if not _in("max_backoff", _seconds(retry["maximumBackoff"])):
                yield f"maximumBackoff {retry['maximumBackoff']}"
        retention = prop("pubsub.v1", "Subscription", "messageRetentionDuration")["description"]
        assert "Cannot be more than 31 days or less than 10 minutes" in retention
        assert limits.PUBSUB_SUBSCRIPTION_RETENTION_S == (10 * 60, 31 * 86400)
        low, high = limits.PUBSUB_SUBSCRIPTION_RETENTION_S
        if "messageRetentionDuration" in i and not (
            low <= _seconds(i["messageRetentionDuration"]) <= high
        ):
            yield f"messageRetentionDuration {i['messageRetentionDuration']}"
    elif typ == T.TOPIC:
        if not _pubsub_name_ok(i["name"]):
            yield f"topic name {i['name']!r}"
    elif typ == T.SCHEDULER_JOB:
        if not _in("attempt_deadline", _seconds(i["attemptDeadline"])):
            yield f"attemptDeadline {i['attemptDeadline']}"
        if not _in("retry_count", i["retryConfig"]["retryCount"]):
            yield f"retryCount {i['retryConfig']['retryCount']}"
        tz_text = prop("cloudscheduler.v1", "Job", "timeZone")["description"]
        assert "time zone name from the [tz database]" in tz_text
        if i["timeZone"] not in _tz_names():
            yield f"timeZone {i['timeZone']!r} is not a tz database name"
        name_text = prop("cloudscheduler.v1", "Job", "name")["description"]
        assert "The maximum length is 500 characters" in name_text
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,500}", i["name"]):
            yield f"job id {i['name']!r}"
    elif typ == T.CLOUD_RUN:
        text = param("run.v2", ("projects", "locations", "services", "create"), "serviceId")
        assert "must contain fewer than 50 characters" in text["description"]
        if not re.fullmatch(r"[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?", i["name"]):
            yield f"service id {i['name']!r}"
        for c in i["template"]["containers"]:
            cpu = c["resources"]["limits"]["cpu"]
            if not _cpu_ok(cpu):
                yield f"cpu {cpu!r}"
            for env in c.get("envs", []):
                if len(str(env.get("value", "")).encode()) > documented()["env_value"][1]:
                    yield f"env {env['name']} value too long"
    elif typ == T.SECRET:
        text = param("secretmanager.v1", ("projects", "secrets", "create"), "secretId")
        assert "maximum length of 255 characters" in text["description"]
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", i["secretId"]):
            yield f"secret id {i['secretId']!r}"
    elif typ == T.FIRESTORE_DATABASE:
        text = param("firestore.v1", ("projects", "databases", "create"), "databaseId")
        assert "4-63 characters" in text["description"] and '"(default)"' in text["description"]
        db = i["name"]
        if db != "(default)" and (
            not re.fullmatch(r"[a-z][-a-z0-9]{2,61}[a-z0-9]", db)
            or re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", db)
        ):
            yield f"database id {db!r}"


# --- The plans ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["prod_plan", "dev_plan"])
def test_every_registered_input_is_one_google_accepts(request, which: str) -> None:
    plan: Plan = request.getfixturevalue(which)
    checked = {r.type for r in plan.custom() if r.type in _TO_API}
    assert checked == set(_TO_API), "every mapped type is registered by the plan"
    assert _resource_problems(plan) == []


def test_the_check_catches_a_value_google_does_not_accept(prod_plan: Plan) -> None:
    # The checker itself can fail: a wrong enum, an unknown field, an out-of-range value.
    run = next(r for r in prod_plan.custom() if r.type == T.CLOUD_RUN)
    inputs = _run_service(thaw(run.inputs))
    inputs["ingress"] = "INGRESS_TRAFFIC_EVERYWHERE"
    inputs["template"]["containers"][0]["resources"]["limits"]["cpu"] = "3"
    inputs["template"]["executionEnviroment"] = "GEN2"
    found = list(problems("run.v2", {"$ref": "GoogleCloudRunV2Service"}, inputs, "svc"))
    assert any("INGRESS_TRAFFIC_EVERYWHERE" in p for p in found), found
    assert any("executionEnviroment: no such field" in p for p in found), found
    raw = thaw(run.inputs)
    raw["template"]["containers"][0]["resources"]["limits"]["cpu"] = "3"
    assert list(_bounded(T.CLOUD_RUN, raw)) == ["cpu '3'"]
    sub = next(r for r in prod_plan.custom() if r.type == T.SUBSCRIPTION and r.get("pushConfig"))
    raw = thaw(sub.inputs)
    raw["ackDeadlineSeconds"] = 601
    assert list(_bounded(T.SUBSCRIPTION, raw)) == ["ackDeadlineSeconds 601"]


def test_the_limits_module_says_what_the_documents_say() -> None:
    d = documented()
    assert d["ack"] == tuple(map(float, limits.PUBSUB_ACK_DEADLINE_S))
    assert d["attempts"] == tuple(map(float, limits.PUBSUB_DELIVERY_ATTEMPTS))
    assert d["backoff"] == d["max_backoff"] == tuple(map(float, limits.PUBSUB_BACKOFF_S))
    assert d["attempt_deadline"] == tuple(map(float, limits.SCHEDULER_HTTP_ATTEMPT_DEADLINE_S))
    assert d["retry_count"] == tuple(map(float, limits.SCHEDULER_RETRY_COUNT))
    assert d["env_value"][1] == limits.RUN_ENV_VALUE_MAX_BYTES
    name = prop("run.v2", "GoogleCloudRunV2EnvVar", "name")["description"]
    assert f"Must not exceed {limits.RUN_ENV_NAME_MAX} characters" in name
    ingress = prop("run.v2", "GoogleCloudRunV2Service", "ingress")["enum"]
    assert set(limits.RUN_INGRESS.values()) <= set(ingress)
    methods = prop("cloudscheduler.v1", "HttpTarget", "httpMethod")["enum"]
    assert set(limits.SCHEDULER_HTTP_METHODS) <= set(methods)
    # The one disagreement, explicit (see _RUN_DOC_CPUS): the document lists 1, 2, 4 and 8.
    cpu_text = prop("run.v2", "GoogleCloudRunV2ResourceRequirements", "limits")["description"]
    assert "The only supported values for CPU are '1', '2', '4', and '8'" in cpu_text, (
        "the run v2 document changed its CPU values: revisit infra/limits.py RUN_INTEGER_CPUS"
    )
    assert set(map(str, limits.RUN_INTEGER_CPUS)) == {*_RUN_DOC_CPUS, "6"}, _RUN_PAGE_EXTRA
    db = param("firestore.v1", ("projects", "databases", "create"), "databaseId")["description"]
    assert "/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}/" in db
    assert limits.FIRESTORE_UUID_LIKE_RE.pattern == "[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}"


# --- Generated topologies ------------------------------------------------------------------------

_DIGEST = "us-west2-docker.pkg.dev/gen-project/platform-images/{name}@sha256:" + "ab" * 32
_CPU_MEMORY = [
    ("0.5", "512Mi", 1, True),
    ("1", "4Gi", 80, False),
    ("2", "8Gi", 10, True),
    ("4", "2Gi", 100, False),
    ("6", "24Gi", 1000, True),
    ("8", "32Gi", 4, False),
]
_SCHEDULES = ["*/15 * * * *", "0 9 * * MON-FRI", "30 2 1,15 * *", "0 */6 * * 0", "0 0 1 JAN *"]


@st.composite
def topologies(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid stack: 1-3 services, a topic per service, a job on some."""
    n = draw(st.integers(1, 3))
    names = [f"svc{chr(ord('a') + i)}" for i in range(n)]
    services, topics, schedules = {}, {}, {}
    for i, name in enumerate(names):
        cpu, memory, concurrency, cpu_idle = draw(st.sampled_from(_CPU_MEMORY))
        services[name] = {
            "cpu": cpu,
            "memory": memory,
            "concurrency": concurrency,
            "cpu_idle": cpu_idle,
            "timeout_seconds": draw(st.integers(*limits.RUN_TIMEOUT_S)),
            "max_instances": draw(st.integers(1, limits.RUN_MAX_INSTANCES)),
            "ingress": draw(st.sampled_from(sorted(limits.RUN_INGRESS))),
            "paths": ["/", "/tick"],
            "image": _DIGEST.format(name=name),
            "env": {"PROJECT": "{project}", "WHERE": "{region}-{stack}"},
            "publishes": {"OUT_TOPIC": f"t-{name}"},
        }
        lo, hi = limits.PUBSUB_BACKOFF_S
        backoff = sorted(draw(st.lists(st.integers(lo, hi), min_size=2, max_size=2)))
        topics[f"t-{name}"] = {
            "subscriptions": [
                {
                    "service": names[(i + 1) % n],
                    "ack_deadline_seconds": draw(st.integers(*limits.PUBSUB_ACK_DEADLINE_S)),
                    "min_backoff_seconds": backoff[0],
                    "max_backoff_seconds": backoff[1],
                    "max_delivery_attempts": draw(st.integers(*limits.PUBSUB_DELIVERY_ATTEMPTS)),
                }
            ]
        }
        if draw(st.booleans()):
            schedules[f"tick-{name}"] = {
                "service": name,
                "path": "/tick",
                "schedule": draw(st.sampled_from(_SCHEDULES)),
                "time_zone": draw(st.sampled_from(["Etc/UTC", "Europe/Paris", "Asia/Tokyo"])),
                "retry_count": draw(st.integers(*limits.SCHEDULER_RETRY_COUNT)),
                "attempt_deadline_seconds": draw(
                    st.integers(*limits.SCHEDULER_HTTP_ATTEMPT_DEADLINE_S)
                ),
            }
    return {
        "gcp:project": "gen-project",
        "gcp:region": draw(st.sampled_from(["us-west2", "europe-west1", "asia-northeast1"])),
        "prediction-platform:platform": {
            "firestore": {"location": draw(st.sampled_from(sorted(limits.FIRESTORE_LOCATIONS)))},
            "deploy": {"service_account": "ci-deployer@gen-project.iam.gserviceaccount.com"},
            "services": services,
            "topics": topics,
            "schedules": schedules,
        },
    }


# The whole program under the mocks takes ~1 s an example: a few, derandomized under CI.
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies())
def test_generated_topologies_register_only_what_google_accepts(config: dict[str, Any]) -> None:
    plan = evaluate_stack("gen", config=config, env={})
    assert plan.of_type(T.CLOUD_RUN) and plan.of_type(T.SUBSCRIPTION)
    assert _resource_problems(plan) == []
