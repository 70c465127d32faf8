"""``platform local``: help, exit codes, and the commands with nothing running (no emulators)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from scripts.cli_common import ExitCode
from scripts.local_cli import app
from scripts.platform_cli import app as platform_app

runner = CliRunner()


def test_help_lists_every_command_and_the_exit_codes():
    result = runner.invoke(platform_app, ["local", "--help"])
    assert result.exit_code == 0, result.output
    for command in ("up", "down", "status", "demo", "trigger"):
        assert command in result.output, result.output
    assert "Exit codes" in result.output


def test_status_with_nothing_running_exits_1(tmp_path):
    result = runner.invoke(app, ["status", "--state-dir", str(tmp_path), "--json"])
    assert result.exit_code == ExitCode.ERROR, result.output
    assert json.loads(result.stdout)["ok"] is False


def test_down_with_nothing_running_is_ok(tmp_path):
    result = runner.invoke(app, ["down", "--state-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ok": True, "stopped": []}


def test_demo_with_nothing_running_exits_1(tmp_path):
    result = runner.invoke(app, ["demo", "--state-dir", str(tmp_path), "--json"])
    assert result.exit_code == ExitCode.ERROR, result.output


def test_a_usage_error_exits_64(tmp_path):
    result = runner.invoke(app, ["demo", "--items", "0", "--state-dir", str(tmp_path)])
    assert result.exit_code == ExitCode.USAGE, result.output
