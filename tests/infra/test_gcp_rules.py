"""Google's own rules at the config interface: each broken config of a class GCP (or Pulumi)
would refuse is refused here, with its key path, what to do and, from a file, its line."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest

from infra import limits
from infra.config import ConfigError, load_stack_file, load_stack_text, parse_config
from infra.config._formats import check_cron
from infra.paths import REPO_ROOT

PLATFORM = "prediction-platform:platform"


def issues(config: dict[str, Any], stack: str = "prod") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(stack, config)
    return [f"{i.path}: {i.message}" for i in info.value.issues]


def worker(p: dict[str, Any]) -> dict[str, Any]:
    return p["services"]["prediction-worker"]


def coordinator(p: dict[str, Any]) -> dict[str, Any]:
    return p["services"]["prediction-coordinator"]


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        # Cloud Run: environment variables
        (
            lambda p: worker(p)["env"].update(PORT="9000"),
            "services.prediction-worker.env.PORT",
            "set by Cloud Run itself",
        ),
        (
            lambda p: worker(p)["env"].update(K_SERVICE="x"),
            "services.prediction-worker.env.K_SERVICE",
            "set by Cloud Run itself",
        ),
        (
            lambda p: worker(p)["env"].update(X_GOOGLE_TRACE="1"),
            "services.prediction-worker.env.X_GOOGLE_TRACE",
            "reserved by Cloud Run",
        ),
        (
            lambda p: worker(p)["env"].update({"A=B": "1"}),
            "services.prediction-worker.env.A=B",
            "not a valid env var name",
        ),
        (
            lambda p: worker(p)["env"].update(BIG="x" * (limits.RUN_ENV_VALUE_MAX_BYTES + 1)),
            "services.prediction-worker.env.BIG",
            "Cloud Run allows 32768 per variable",
        ),
        (
            lambda p: worker(p)["env"].update({f"V{i}": "x" * 1000 for i in range(40)}),
            "services.prediction-worker.env",
            "above the 32768 bytes",
        ),
        (
            lambda p: worker(p)["env"].update({f"V{i}": "" for i in range(1000)}),
            "services.prediction-worker.env",
            "at most 1000 per container",
        ),
        (
            lambda p: worker(p)["env"].update(URL="https://{projet}.example"),
            "services.prediction-worker.env.URL",
            "unknown placeholder '{projet}' (known: {project}, {region}, {stack})",
        ),
        (
            lambda p: worker(p)["env"].update(WHEN=datetime.date(2024, 1, 1)),
            "services.prediction-worker.env.WHEN",
            "is a date, not a string",
        ),
        (
            lambda p: worker(p)["env"].update(DEBUG=True),
            "services.prediction-worker.env.DEBUG",
            "must be a string, got the boolean true: quote it",
        ),
        (
            lambda p: worker(p)["env"].update(N=None),
            "services.prediction-worker.env.N",
            "is empty (YAML null)",
        ),
        # Cloud Run: CPU and memory as the CPU and memory pages document them
        (
            lambda p: worker(p).update(cpu="0.0805", concurrency=1, memory="256Mi"),
            "services.prediction-worker.cpu",
            "steps of 0.001",
        ),
        (
            lambda p: worker(p).update(cpu="0.05", concurrency=1, memory="256Mi"),
            "services.prediction-worker.cpu",
            "below Cloud Run's minimum of 0.08",
        ),
        (
            lambda p: worker(p).update(cpu="0.25", concurrency=1, memory="1Gi"),
            "services.prediction-worker.cpu",
            "needs at least 0.5 vCPU",
        ),
        (
            lambda p: worker(p).update(cpu="0.5", concurrency=1, memory="768Mi", cpu_idle=False),
            "services.prediction-worker.cpu",
            "requires cpu_idle: true",
        ),
        (
            lambda p: worker(p).update(cpu="10"),
            "services.prediction-worker.cpu",
            "must be one of 1, 2, 4, 6, 8",
        ),
        (
            lambda p: worker(p).update(cpu="8", memory="64Gi"),
            "services.prediction-worker.memory",
            "outside the 128Mi-32Gi",
        ),
        (
            lambda p: worker(p).update(cpu="6", memory="2Gi"),
            "services.prediction-worker.cpu",
            "outside 4096Mi-24Gi",
        ),
        (
            lambda p: worker(p).update(memory="64Mi"),
            "services.prediction-worker.memory",
            "outside the 128Mi-32Gi",
        ),
        # Names: after derivation, unique in the project
        (
            lambda p: p["services"].update(coordinator=copy.deepcopy(coordinator(p))),
            "services.coordinator (key)",
            "derived account id 'run-coordinator' is also the service account id of "
            "platform.services.prediction-coordinator (key)",
        ),
        (
            lambda p: p["topics"]["prediction-ready"]["subscriptions"][0].update(
                name="prediction-request-worker"
            ),
            "topics.prediction-ready.subscriptions[0]",
            "subscription 'prediction-request-worker-prod' is also the subscription of "
            "platform.topics.prediction-request.subscriptions[0]",
        ),
        (
            lambda p: p["topics"].update(
                {"prediction-request-dead-letter": copy.deepcopy(p["topics"]["prediction-ready"])}
            ),
            "topics.prediction-request-dead-letter (key)",
            "Pulumi resource name 'prediction-request-dead-letter' is also",
        ),
        (
            lambda p: p["services"].update({"prediction-worker\n": worker(p)}),
            "services.prediction-worker\n (key)",
            "not a Cloud Run service name",
        ),
        (
            lambda p: p["topics"].update(
                {"goog-x": copy.deepcopy(p["topics"]["prediction-ready"])}
            ),
            "topics.goog-x (key)",
            "not with 'goog'",
        ),
        # Secret Manager and Pulumi config keys
        (
            lambda p: p["secrets"]["coordinator-api-key"].update(config_key="platform"),
            "secrets.coordinator-api-key.config_key",
            "the config key holding the platform topology itself",
        ),
        (
            lambda p: p["secrets"]["coordinator-api-key"].update(config_key="gcp:key"),
            "secrets.coordinator-api-key.config_key",
            "not a Pulumi config key name",
        ),
        (
            lambda p: p["secrets"].update({"bad/id": {}}),
            "secrets.bad/id (key)",
            "not a valid Secret Manager secret id",
        ),
        # Firestore
        (
            lambda p: p["firestore"].update(database="Prod_DB"),
            "firestore.database",
            "not a Firestore database id",
        ),
        (
            lambda p: p["firestore"].update(database="123e4567-e89b-12d3-a456-426614174000"),
            "firestore.database",
            "not a UUID",
        ),
        (
            lambda p: p["firestore"].update(location="us-west9"),
            "firestore.location",
            "'us-west9' is not a Firestore location",
        ),
        # Cloud Scheduler: Google's cron and the tz database, not croniter's and this machine's
        (
            lambda p: p["schedules"]["check-stalled"].update(schedule="@hourly"),
            "schedules.check-stalled.schedule",
            "5-field cron",
        ),
        (
            lambda p: p["schedules"]["check-stalled"].update(schedule="0 0 L * *"),
            "schedules.check-stalled.schedule",
            "day of month 'L' is not a number",
        ),
        (
            lambda p: p["schedules"]["check-stalled"].update(schedule="*/15 * * * * 0"),
            "schedules.check-stalled.schedule",
            "5-field cron",
        ),
        (
            lambda p: p["schedules"]["check-stalled"].update(time_zone="posix/Europe/Paris"),
            "schedules.check-stalled.time_zone",
            "not an IANA time zone",
        ),
        (
            lambda p: p["schedules"]["check-stalled"].update(time_zone="Etc/UTC\n"),
            "schedules.check-stalled.time_zone",
            "not an IANA time zone",
        ),
        # IAM: the deploy identity lives in the stack's own project
        (
            lambda p: p["deploy"].update(
                service_account="ci-deployer@other-project.iam.gserviceaccount.com"
            ),
            "deploy.service_account",
            "belongs to project 'other-project', not this stack's gcp:project",
        ),
        (
            lambda p: p["deploy"].update(
                service_account="ci-deployer@nba-props-platform.iam.gserviceaccount.com\n"
            ),
            "deploy.service_account",
            "is not a service account email",
        ),
        # Artifact Registry
        (
            lambda p: p.update(artifact_repository="images-"),
            "artifact_repository",
            "not a repository id",
        ),
        (
            lambda p: p.update(artifact_repository="a" * 64),
            "artifact_repository",
            "at most 63 characters",
        ),
    ],
)
def test_gcp_rule_is_enforced_with_key_path(prod_config, mutate, path: str, fragment: str) -> None:
    mutate(prod_config[PLATFORM])
    found = issues(prod_config)
    assert any(e.startswith(f"platform.{path}: ") and fragment in e for e in found), found


def test_stack_keys_take_fullmatch_not_a_trailing_newline(prod_config) -> None:
    prod_config["gcp:project"] = "nba-props-platform\n"
    prod_config["gcp:region"] = "us-west2\n"
    found = issues(prod_config)
    assert any(e.startswith("gcp:project: ") for e in found), found
    assert any(e.startswith("gcp:region: ") for e in found), found


def test_gcp_region_must_be_a_firestore_location_when_the_database_follows_it(
    prod_config,
) -> None:
    prod_config["gcp:region"] = "us-west9"
    found = issues(prod_config)
    assert any(
        e.startswith("platform.firestore.location: gcp:region (the default location) 'us-west9'")
        for e in found
    ), found


@pytest.mark.parametrize(
    "schedule",
    ["*/15 * * * *", "0 * * * *", "0 9 * * MON-FRI", "0 0 1,15 JAN-DEC/2 7", "0-59/5 0-23 * * *"],
)
def test_cloud_scheduler_cron_accepts_what_google_documents(schedule: str) -> None:
    assert check_cron(schedule) == schedule


@pytest.mark.parametrize(
    "schedule",
    ["5/10 * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
     "10-5 * * * *", "*/0 * * * *", "* * ? * *", "0 0 * * 1#2", "H * * * *", "every 5 minutes",
     "*  * * * *", "0 0 * * mon"],
)  # fmt: skip
def test_cloud_scheduler_cron_refuses_what_google_does_not_document(schedule: str) -> None:
    with pytest.raises(ValueError):
        check_cron(schedule)


# --- The stack file loader --------------------------------------------------------------------

PROD_TEXT = (REPO_ROOT / "Pulumi.prod.yaml").read_text()


def load(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config = load_stack_text(text, "Pulumi.prod.yaml", "prod")
        parse_config("prod", config)
    return [str(i) for i in info.value.issues]


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.mark.parametrize(
    ("old", "new", "path", "fragment", "marker"),
    [
        (
            '      prediction-worker:\n        cpu: "2"',
            '      prediction-worker:\n        cpu: "2"\n        cpu: "4"',
            "platform.services.prediction-worker.cpu",
            "key 'cpu' appears twice in this mapping",
            'cpu: "4"',
        ),
        (
            '          GCP_PROJECT_ID: "{project}"\n        publishes:\n          READY',
            '          GCP_PROJECT_ID: "{project}"\n          SINCE: 2024-01-01\n'
            "        publishes:\n          READY",
            "platform.services.prediction-worker.env.SINCE",
            "2024-01-01 is a date/time to YAML 1.1 and a string to Pulumi; quote it",
            "SINCE:",
        ),
        (
            "        uses_firestore: false",
            "        uses_firestore: no",
            "platform.services.prediction-worker.uses_firestore",
            "no is a boolean to YAML 1.1 and a string to Pulumi (write true or false)",
            "uses_firestore: no",
        ),
        (
            "        max_instances: 20",
            "        max_instances: 020",
            "platform.services.prediction-worker.max_instances",
            "020 is read as a different number",
            "max_instances: 020",
        ),
        (
            "        timeout_seconds: 600\n        concurrency: 4",
            "        timeout_seconds: 10:00\n        concurrency: 4",
            "platform.services.prediction-worker.timeout_seconds",
            "10:00 is read as a different number",
            "timeout_seconds: 10:00",
        ),
        (
            "    secrets:\n      coordinator-api-key: {}",
            "    secrets:\n      coordinator-api-key: {}\n      1: {}",
            "platform.secrets",
            "key 1 is not a string: quote it",
            "      1: {}",
        ),
        (
            "        concurrency: 4",
            '        concurrency: "4"',
            "platform.services.prediction-worker.concurrency",
            "Input should be a valid integer",
            'concurrency: "4"',
        ),
        (
            '          GCP_PROJECT_ID: "{project}"\n        publishes:\n          READY',
            "          GCP_PROJECT_ID: 12345\n        publishes:\n          READY",
            "platform.services.prediction-worker.env.GCP_PROJECT_ID",
            "must be a string, got the integer 12345: quote it",
            "GCP_PROJECT_ID: 12345",
        ),
    ],
)
def test_the_loader_refuses_what_pulumi_reads_differently_naming_the_line(
    old: str, new: str, path: str, fragment: str, marker: str
) -> None:
    assert old in PROD_TEXT
    text = PROD_TEXT.replace(old, new, 1)
    found = load(text)
    want = f"(Pulumi.prod.yaml:{line_of(text, marker)})"
    assert any(e.startswith(f"{path}: ") and fragment in e and e.endswith(want) for e in found), (
        found,
        want,
    )


def test_invalid_yaml_names_its_line() -> None:
    [error] = load(PROD_TEXT + "    bad: [\n")
    assert error.startswith("Pulumi.prod.yaml: not valid YAML:") and "Pulumi.prod.yaml:" in error


def test_merge_keys_work_and_may_override() -> None:
    text = PROD_TEXT.replace(
        '      prediction-worker:\n        cpu: "2"\n        memory: 2Gi',
        '      prediction-worker:\n        <<: {cpu: "1", memory: 2Gi}\n        cpu: "2"',
        1,
    )
    config = load_stack_text(text, "Pulumi.prod.yaml", "prod")
    worker_cfg = parse_config("prod", config).platform.services["prediction-worker"]
    assert (worker_cfg.cpu, worker_cfg.memory) == ("2", "2Gi")


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_committed_stack_files_load_strictly(stack: str) -> None:
    config = load_stack_file(stack, REPO_ROOT)
    assert parse_config(stack, config).stack == stack


def test_the_local_platform_reads_a_config_file_the_same_way(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from scripts.local_cli import app

    bad = tmp_path / "Pulumi.prod.yaml"
    bad.write_text(PROD_TEXT.replace("        uses_firestore: false", "        uses_firestore: no"))
    result = CliRunner().invoke(app, ["up", "--config", str(bad), "--state-dir", str(tmp_path)])
    out = result.stdout + (result.stderr or "")
    assert result.exit_code == 1, out
    assert "uses_firestore" in out and "write true or false" in out and "Traceback" not in out
