"""The typed stack config: every problem at once, each with its key path, never a traceback."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from infra.config import (
    DEFAULT_ACK_DEADLINE_S,
    ConfigError,
    StackConfig,
    parse_stack_config,
)
from scripts.plan import load_stack_file, parse_config

PROJECT = "prediction-platform"
PLATFORM = f"{PROJECT}:platform"


def parse(config: dict[str, Any], stack: str = "prod") -> StackConfig:
    return parse_config(stack, config, PROJECT)


def errors(config: dict[str, Any], stack: str = "prod") -> list[str]:
    """Each issue as "key path: message" (the stack file line, when known, is tested apart)."""
    with pytest.raises(ConfigError) as info:
        parse(config, stack)
    return [f"{i.path}: {i.message}" for i in info.value.issues]


def services(config: dict[str, Any]) -> dict[str, Any]:
    return config[PLATFORM]["services"]


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_committed_stacks_parse(stack: str) -> None:
    cfg = parse(load_stack_file(stack), stack)
    assert set(cfg.platform.services) == {"prediction-coordinator", "prediction-worker"}
    assert cfg.stack == stack


def test_prod_describes_the_platform(prod_config: dict[str, Any]) -> None:
    cfg = parse(prod_config)
    assert (cfg.project, cfg.region) == ("nba-props-platform", "us-west2")
    coord = cfg.platform.services["prediction-coordinator"]
    assert (coord.cpu, coord.memory, coord.timeout_seconds, coord.cpu_idle) == (
        "2",
        "2Gi",
        3600,
        False,
    )
    assert coord.secret_env == {"COORDINATOR_API_KEY": "coordinator-api-key"}
    assert not cfg.platform.services["prediction-worker"].public
    subs = cfg.platform.topics["prediction-ready"].subscriptions
    assert [(s.service, s.path) for s in subs] == [("prediction-coordinator", "/complete")]
    assert {j.path: j.schedule for j in cfg.platform.schedules.values()} == {
        "/check-stalled": "*/15 * * * *",
        "/cleanup-stuck": "0 * * * *",
    }
    assert subs[0].ack_deadline_seconds == DEFAULT_ACK_DEADLINE_S == 600


def test_config_objects_are_immutable(prod_config: dict[str, Any]) -> None:
    cfg = parse(prod_config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.stack = "x"  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        cfg.platform.services["prediction-worker"].cpu = "4"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.platform.services["x"] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        cfg.platform.services["prediction-coordinator"].env["X"] = "y"  # type: ignore[index]


def test_unknown_service_names_the_key_path(prod_config: dict[str, Any]) -> None:
    prod_config[PLATFORM]["topics"]["prediction-request"]["subscriptions"][0]["service"] = "wrker"
    assert errors(prod_config) == [
        "platform.topics.prediction-request.subscriptions[0].service: unknown service 'wrker' "
        "(known: prediction-coordinator, prediction-worker)"
    ]


def test_every_problem_is_reported_at_once(prod_config: dict[str, Any]) -> None:
    p = prod_config[PLATFORM]
    p["topics"]["prediction-request"]["subscriptions"][0]["service"] = "wrker"
    p["services"]["prediction-worker"]["timeout_seconds"] = 4000
    p["services"]["prediction-worker"]["tiemout"] = 5
    p["schedules"]["check-stalled"]["schedule"] = "every 15 minutes"
    p["topics"]["prediction-ready"]["subscriptions"][0]["ack_deadline_seconds"] = 5
    found = errors(prod_config)
    paths = [e.split(": ", 1)[0] for e in found]
    assert paths == sorted(set(paths), key=paths.index), "no duplicates"
    assert set(paths) == {
        "platform.topics.prediction-request.subscriptions[0].service",
        "platform.services.prediction-worker.timeout_seconds",
        "platform.services.prediction-worker",
        "platform.schedules.check-stalled.schedule",
        "platform.topics.prediction-ready.subscriptions[0].ack_deadline_seconds",
    }, found
    assert any("unknown key 'tiemout' (allowed: cpu, memory, timeout_seconds" in e for e in found)
    assert any("less than or equal to 3600 (got 4000)" in e for e in found)


def _update(*keys, **changes):
    """A mutation of the raw platform config: ``changes`` set on the mapping at ``keys``."""

    def mutate(platform):
        node = platform
        for key in keys:
            node = node[key]
        node.update(copy.deepcopy(changes))

    return mutate


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (
            _update("services", "prediction-worker", timeout_seconds=0),
            "platform.services.prediction-worker.timeout_seconds",
            "greater than or equal to 1",
        ),
        (
            _update("services", "prediction-worker", timeout_seconds="600"),
            "platform.services.prediction-worker.timeout_seconds",
            "valid integer",
        ),
        (
            _update("services", "prediction-worker", memory="16Gi"),
            "platform.services.prediction-worker.cpu",
            "outside 128Mi-8Gi",
        ),
        (
            _update("services", "prediction-worker", cpu="3"),
            "platform.services.prediction-worker.cpu",
            "must be one of 1, 2, 4, 6, 8",
        ),
        (
            _update("services", "prediction-worker", uses_firestore=True),
            "platform.services.prediction-worker.uses_firestore",
            "does not use Firestore",
        ),
        (
            _update("services", "prediction-coordinator", uses_firestore=False),
            "platform.services.prediction-coordinator.uses_firestore",
            "uses Firestore",
        ),
        # float() reads these; Cloud Run does not (INFINITY once crashed the parser).
        (
            _update("services", "prediction-worker", cpu="INFINITY"),
            "platform.services.prediction-worker.cpu",
            "is not a number of vCPUs",
        ),
        (
            _update("services", "prediction-worker", cpu="nan"),
            "platform.services.prediction-worker.cpu",
            "is not a number of vCPUs",
        ),
        (
            _update("services", "prediction-worker", cpu=float("inf")),
            "platform.services.prediction-worker.cpu",
            "is not a number of vCPUs",
        ),
        (
            _update("services", "prediction-worker", cpu="0.5", memory="512Mi"),
            "platform.services.prediction-worker.cpu",
            "requires concurrency 1",
        ),
        (
            _update("services", "prediction-worker", cpu="4", memory="1Gi"),
            "platform.services.prediction-worker.cpu",
            "outside 2048Mi-16Gi",
        ),
        (
            _update("services", "prediction-worker", max_instances=0),
            "platform.services.prediction-worker.max_instances",
            "greater than or equal to 1",
        ),
        (
            _update("topics", "prediction-request", "subscriptions", 0, ack_deadline_seconds=601),
            "platform.topics.prediction-request.subscriptions[0].ack_deadline_seconds",
            "less than or equal to 600",
        ),
        (
            _update(
                "topics",
                "prediction-request",
                "subscriptions",
                0,
                min_backoff_seconds=60,
                max_backoff_seconds=30,
            ),
            "platform.topics.prediction-request.subscriptions[0]",
            "min_backoff_seconds 60 is above",
        ),
        (
            _update("topics", "prediction-request", "subscriptions", 0, max_backoff_seconds=601),
            "platform.topics.prediction-request.subscriptions[0].max_backoff_seconds",
            "less than or equal to 600",
        ),
        (
            _update("topics", "prediction-request", "subscriptions", 0, max_delivery_attempts=4),
            "platform.topics.prediction-request.subscriptions[0].max_delivery_attempts",
            "greater than or equal to 5",
        ),
        (
            _update("topics", "prediction-request", "subscriptions", 0, max_delivery_attempts=101),
            "platform.topics.prediction-request.subscriptions[0].max_delivery_attempts",
            "less than or equal to 100",
        ),
        (
            _update("topics", "prediction-request", "subscriptions", 0, path="/nope"),
            "platform.topics.prediction-request.subscriptions[0].path",
            "'/nope' is not a path of service 'prediction-worker'",
        ),
        (
            _update("topics", "prediction-request", subscriptions=[]),
            "platform.topics.prediction-request.subscriptions",
            "at least one subscription",
        ),
        (
            _update("schedules", "check-stalled", schedule="*/15 * * *"),
            "platform.schedules.check-stalled.schedule",
            "5-field cron",
        ),
        (
            _update("schedules", "check-stalled", time_zone="America/Nowhere"),
            "platform.schedules.check-stalled.time_zone",
            "IANA time zone",
        ),
        (
            _update("schedules", "check-stalled", service="prediction-wrker"),
            "platform.schedules.check-stalled.service",
            "unknown service 'prediction-wrker'",
        ),
        (
            _update(
                "services", "prediction-coordinator", "secret_env", COORDINATOR_API_KEY="api-key"
            ),
            "platform.services.prediction-coordinator.secret_env.COORDINATOR_API_KEY",
            "unknown secret 'api-key' (declared: coordinator-api-key",
        ),
        (
            _update(
                "services",
                "prediction-coordinator",
                "publishes",
                REQUEST_TOPIC="prediction-requests",
            ),
            "platform.services.prediction-coordinator.publishes.REQUEST_TOPIC",
            "unknown topic 'prediction-requests'",
        ),
        (
            _update("services", "prediction-worker", publishes={}),
            "platform.services.prediction-worker.env",
            "missing READY_TOPIC, required by the service's code",
        ),
        (
            _update("services", "prediction-coordinator", "env", COORDINATOR_API_KEY="hunter2"),
            "platform.services.prediction-coordinator.env.COORDINATOR_API_KEY",
            "must be a secret reference",
        ),
        (
            lambda p: p["services"].update(
                {"Prediction_Worker": p["services"]["prediction-worker"]}
            ),
            "platform.services.Prediction_Worker (key)",
            "not a Cloud Run service name",
        ),
        (
            lambda p: p["services"].update({"w" * 50: {}}),
            f"platform.services.{'w' * 50} (key)",
            "at most 49 characters",
        ),
        (
            _update("services", "prediction-worker", image="repo/worker:latest"),
            "platform.services.prediction-worker.image",
            "must be a digest reference",
        ),
        (
            lambda p: p.update(artifact_repository="Images"),
            "platform.artifact_repository",
            "not a repository id",
        ),
        (
            _update("deploy", service_account="ci-deployer"),
            "platform.deploy.service_account",
            "'ci-deployer' is not a service account email (ACCOUNT_ID@PROJECT_ID",
        ),
        (
            _update("deploy", service_account="123456789012-compute@developer.gserviceaccount.com"),
            "platform.deploy.service_account",
            "is not a service account email",
        ),
        (
            lambda p: p.pop("deploy"),
            "platform.deploy",
            "required key is missing: set deploy.service_account",
        ),
        (
            _update("deploy", project_roles=["roles/run.developer"]),
            "platform.deploy",
            "unknown key 'project_roles' (allowed: service_account, check, rollout, notify, "
            "cloudbuild): the "
            "deploy identity's project roles are granted by the bootstrap",
        ),
        (
            _update("deploy", account_id="platform-deployer"),
            "platform.deploy",
            "unknown key 'account_id' (allowed: service_account, check, rollout, notify, "
            "cloudbuild): the "
            "bootstrap creates the deploy identity",
        ),
    ],
)
def test_invalid_config_is_rejected_with_its_key_path(
    prod_config: dict[str, Any], mutate, path: str, fragment: str
) -> None:
    mutate(prod_config[PLATFORM])
    found = errors(prod_config)
    assert any(e.startswith(f"{path}: ") and fragment in e for e in found), found


def test_the_deploy_identity_is_named_not_created(prod_config: dict[str, Any]) -> None:
    cfg = parse(prod_config)
    assert (
        cfg.platform.deploy.service_account
        == "ci-deployer@nba-props-platform.iam.gserviceaccount.com"
    )
    dev = parse(load_stack_file("dev"), "dev")
    dev_email = dev.platform.deploy.service_account
    assert dev_email == "ci-deployer@nba-props-platform-dev.iam.gserviceaccount.com"


def test_stack_level_keys(prod_config: dict[str, Any]) -> None:
    del prod_config["gcp:project"]
    prod_config["gcp:region"] = "west"
    found = errors(prod_config)
    assert found[0].startswith("gcp:project: required")
    assert found[1].startswith("gcp:region: 'west' is not a region")


def test_cpu_may_be_a_number(prod_config: dict[str, Any]) -> None:
    services(prod_config)["prediction-worker"]["cpu"] = 4
    assert parse(prod_config).platform.services["prediction-worker"].cpu == "4"


def test_the_error_message_lists_every_issue(prod_config: dict[str, Any]) -> None:
    services(prod_config)["prediction-worker"]["timeout_seconds"] = 4000
    services(prod_config)["prediction-coordinator"]["concurrency"] = 0
    with pytest.raises(ConfigError) as info:
        parse(prod_config)
    text = str(info.value)
    assert text.startswith("invalid config for stack 'prod' (2 error(s)):")
    assert "platform.services.prediction-worker.timeout_seconds" in text
    assert "platform.services.prediction-coordinator.concurrency" in text


def test_platform_key_may_arrive_as_json_text(prod_config: dict[str, Any]) -> None:
    cfg = parse_stack_config(
        "prod",
        project="nba-props-platform",
        region="us-west2",
        platform=json.dumps(prod_config[PLATFORM]),
    )
    assert cfg.platform.services["prediction-worker"].timeout_seconds == 600


# --- Entry points: ingress and operators (issue 18) ---------------------------------------


def test_ingress_defaults_to_the_narrowest_that_reaches_the_callers(
    prod_config: dict[str, Any],
) -> None:
    cfg = parse(prod_config)
    worker = cfg.platform.services["prediction-worker"]
    coord = cfg.platform.services["prediction-coordinator"]
    # Only pushes reach the worker: internal-only. Operators call the coordinator: all.
    assert (worker.ingress, worker.effective_ingress) == (None, "internal")
    assert coord.operators and coord.effective_ingress == "all"
    services(prod_config)["prediction-worker"]["public"] = True
    assert parse(prod_config).platform.services["prediction-worker"].effective_ingress == "all"
    services(prod_config)["prediction-worker"]["ingress"] = "internal-and-cloud-load-balancing"
    worker = parse(prod_config).platform.services["prediction-worker"]
    assert worker.effective_ingress == "internal-and-cloud-load-balancing"


@pytest.mark.parametrize(
    ("operators", "fragment"),
    [
        (["batch-ops@example.com"], "operators must be 'group:EMAIL' or 'user:EMAIL'"),
        (["serviceAccount:x@p.iam.gserviceaccount.com"], "'serviceAccount:x@p"),
        (["allUsers"], "'allUsers'"),
        (["group:no-domain"], "'group:no-domain'"),
        (["user:a@example.com", "user:a@example.com"], "listed twice: user:a@example.com"),
        ("group:ops@example.com", "valid array"),
    ],
)
def test_operators_are_groups_or_users(
    prod_config: dict[str, Any], operators: Any, fragment: str
) -> None:
    services(prod_config)["prediction-coordinator"]["operators"] = operators
    found = errors(prod_config)
    path = "platform.services.prediction-coordinator.operators"
    assert any(e.startswith(path) and fragment in e for e in found), found


def test_internal_ingress_cannot_reach_operators(prod_config: dict[str, Any]) -> None:
    services(prod_config)["prediction-coordinator"]["ingress"] = "internal"
    found = errors(prod_config)
    assert any(
        e.startswith("platform.services.prediction-coordinator: ")
        and "ingress 'internal' but operators call it" in e
        for e in found
    ), found


def test_deploy_check_rollout_and_notify_have_defaults(prod_config: dict[str, Any]) -> None:
    deploy = parse(prod_config).platform.deploy
    assert deploy.check.min_predicted_share == 0.95 and deploy.check.max_dead_letters == 0
    assert deploy.rollout.steps == (10, 50, 100) and deploy.rollout.hold_seconds == 300
    assert deploy.notify.webhook_url_secret is None


def test_deploy_check_rollout_and_notify_are_validated(prod_config: dict[str, Any]) -> None:
    prod_config[PLATFORM]["deploy"].update(
        check={"min_predicted_share": 0, "items": 5000},
        rollout={"steps": [50, 10], "hold_seconds": "60"},
        notify={"webhook_url_secret": "not a secret id"},
    )
    found = errors(prod_config)
    assert any(e.startswith("platform.deploy.check.min_predicted_share") for e in found), found
    assert any(e.startswith("platform.deploy.check.items") for e in found), found
    assert any(
        e.startswith("platform.deploy.rollout.steps") and "ending at 100" in e for e in found
    ), found
    assert any(e.startswith("platform.deploy.rollout.hold_seconds") for e in found), found
    assert any(
        e.startswith("platform.deploy.notify.webhook_url_secret") and "secret id" in e
        for e in found
    ), found
