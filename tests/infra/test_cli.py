"""``platform plan``: invoked as CI invokes it, exit codes asserted with the output shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from scripts.platform_cli import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result, result.stdout + (result.stderr or "")


def test_help() -> None:
    result, out = invoke("--help")
    assert result.exit_code == 0, out
    assert "plan" in out
    result, out = invoke("plan", "--help")
    assert result.exit_code == 0, out
    assert "--stack" in out and "--json" in out


def test_usage_error_exits_64() -> None:
    from scripts.cli_common import run_app

    with pytest.raises(SystemExit) as info:
        run_app(app, ["plan", "--stak", "prod"])
    assert info.value.code == 64


def test_plan_prints_the_prod_inventory_grouped_by_component() -> None:
    result, out = invoke("plan", "--stack", "prod")
    assert result.exit_code == 0, out
    for heading in (
        "Apis apis",
        "ImageRepository images",
        "Database batch-state",
        "Image prediction-worker",
        "Service prediction-coordinator",
        "Service prediction-worker",
        "Topic prediction-request",
        "Topic prediction-ready",
        "Secret coordinator-api-key",
        "Schedule check-stalled",
        "Totals",
    ):
        assert heading in out, heading
    assert "invokers=[push-worker]" in out
    assert "dead_letter=prediction-request-prod-dead-letter after 5" in out
    assert "data=[secret]" in out


def test_plan_json() -> None:
    result, out = invoke("plan", "--stack", "dev", "--json")
    assert result.exit_code == 0, out
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["stack"] == "dev"
    assert doc["total"] == sum(doc["counts"].values())
    assert {g["component"] for g in doc["inventory"]} >= {"Service prediction-worker"}


def _edit_prod(checkout: Path, edit) -> None:
    path = checkout / "Pulumi.prod.yaml"
    doc = yaml.safe_load(path.read_text())
    edit(doc["config"]["prediction-platform:platform"])
    path.write_text(yaml.safe_dump(doc))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda p: p["topics"]["prediction-request"]["subscriptions"][0].update(service="wrker"),
            "platform.topics.prediction-request.subscriptions[0].service: unknown service 'wrker'",
        ),
        (
            lambda p: p["services"]["prediction-coordinator"].update(timeout_seconds=4000),
            "platform.services.prediction-coordinator.timeout_seconds",
        ),
    ],
)
def test_invalid_prod_config_exits_1_naming_the_key(checkout: Path, edit, expected: str) -> None:
    _edit_prod(checkout, edit)
    result, out = invoke("plan", "--stack", "prod", "--root", str(checkout))
    assert result.exit_code == 1, out
    assert expected in out.replace("\n", " "), out
    assert "Traceback" not in out


def test_invalid_config_json(checkout: Path) -> None:
    _edit_prod(checkout, lambda p: p["services"]["prediction-worker"].update(cpu="3"))
    result, out = invoke("plan", "--stack", "prod", "--root", str(checkout), "--json")
    assert result.exit_code == 1, out
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    [error] = doc["errors"]
    # The key path, what to do, and the stack file's line of the key.
    assert re.fullmatch(
        r"platform\.services\.prediction-worker\.cpu: cpu 3: values of 1 or more must be one "
        r"of 1, 2, 4, 6, 8 \(Pulumi\.prod\.yaml:\d+\)",
        error,
    ), error
    line = int(error.rsplit(":", 1)[1].rstrip(")"))
    assert (checkout / "Pulumi.prod.yaml").read_text().splitlines()[line - 1].strip() == "cpu: '3'"


def test_unknown_stack(checkout: Path) -> None:
    result, out = invoke("plan", "--stack", "staging", "--root", str(checkout))
    assert result.exit_code == 1, out
    assert "no such stack file (stacks: dev, prod)" in out
