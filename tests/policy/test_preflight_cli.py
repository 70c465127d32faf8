"""``platform plan`` runs the preflight rules: table, exit 1 on an error finding, --json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from infra.paths import REPO_ROOT
from scripts.platform_cli import app

runner = CliRunner()


def test_plan_shows_fifteen_rules_passing_on_prod() -> None:
    result = runner.invoke(app, ["plan", "--stack", "prod"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Preflight rules" in result.output
    for i in range(1, 16):
        assert f"PF{i:02d} │ pass" in result.output, f"PF{i:02d}"
    assert "15/15 rules pass" in result.output


def _checkout_without_stall_check(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", ".dockerignore"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    for folder in ("shared", "images", "services"):
        shutil.copytree(
            REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    path = tmp_path / "Pulumi.prod.yaml"
    doc = yaml.safe_load(path.read_text())
    del doc["config"]["prediction-platform:platform"]["schedules"]["check-stalled"]
    path.write_text(yaml.safe_dump(doc))
    return tmp_path


def test_an_error_finding_fails_the_plan(tmp_path: Path) -> None:
    root = _checkout_without_stall_check(tmp_path)
    result = runner.invoke(app, ["plan", "--root", str(root)], env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output
    assert "PF11 │ fail" in result.output
    assert "nothing calls /check-stalled" in result.output
    assert "14/15 rules pass: FAILED" in result.output


def test_json_reports_the_rules(tmp_path: Path) -> None:
    root = _checkout_without_stall_check(tmp_path)
    result = runner.invoke(app, ["plan", "--root", str(root), "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    status = {r["id"]: r["status"] for r in doc["preflight"]}
    assert status["PF11"] == "fail"
    assert [k for k, v in status.items() if v != "pass"] == ["PF11"]
    finding = doc["preflight"][10]["findings"][0]
    assert finding["resource"] == "Service 'prediction-coordinator'"
