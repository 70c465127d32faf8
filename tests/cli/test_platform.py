"""``platform``: one entry point over every command; help that prints what it says.

Invoked as CI invokes it (``CliRunner`` on the app, or the installed scripts), exit codes
asserted with the output shown.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from rich.text import Text
from typer.testing import CliRunner

from infra.paths import REPO_ROOT
from policy.rules import RULES
from scripts.cli_common import HELP_MARKUP, ExitCode, literal_help, parse_duration
from scripts.plan import evaluate_bootstrap
from scripts.platform_cli import COMMANDS, _load, app

runner = CliRunner()
#: The console scripts that were there before ``platform``: each runs the app of that command.
ALIASES = ("deploy", "deploy-lock", "drift", "batches")


def invoke(*args: str, columns: int = 200):
    result = runner.invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result, result.stdout + (result.stderr or "")


def _commands(command: Any, ctx: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every command under ``command``, lazy ones loaded, with its path."""
    yield " ".join(path) or "platform", command
    for name in getattr(command, "list_commands", lambda _ctx: [])(ctx):
        sub = command.resolve_command(ctx, [name])[1]
        yield from _commands(sub, typer.Context(sub, parent=ctx, info_name=name), (*path, name))


def _all_commands() -> list[tuple[str, Any]]:
    root = typer.main.get_command(app)
    return list(_commands(root, typer.Context(root, info_name="platform")))


def test_platform_has_every_command() -> None:
    result, out = invoke("--help")
    assert result.exit_code == 0, out
    commands = out[out.index("Commands") :]
    listed = set(re.findall(r"^│ ([a-z][\w-]+) ", commands, flags=re.M))
    assert (
        listed
        == set(COMMANDS)
        == {
            "plan",
            "preflight",
            "bootstrap-plan",
            "images",
            "local",
            "deploy",
            "deploy-lock",
            "drift",
            "adopt",
            "batches",
        }
    ), out


def test_each_command_is_listed_by_its_own_help() -> None:
    """``platform --help`` lists a command without importing it: the one line it shows is the
    first paragraph of the command's own help (written once more in COMMANDS, held equal here)."""
    for name, summary in COMMANDS.items():
        command = literal_help(typer.main.get_command(_load(name)))
        first = (command.help or "").split("\n\n")[0]
        assert first == literal_help(typer.main.TyperCommand(name, help=summary)).help, name


def test_the_old_console_scripts_are_aliases_of_the_same_apps() -> None:
    import tomllib

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["platform"] == "scripts.platform_cli:main"
    for alias in ALIASES:
        module, _, attr = scripts[alias].partition(":")
        assert attr == "main", alias
        loaded = _load(alias)
        assert sys.modules[module].app is loaded, f"{alias} runs {module}, not platform {alias}"


def test_listing_the_commands_imports_none_of_them() -> None:
    probe = (
        "import sys\n"
        "from scripts.cli_common import run_app\n"
        "from scripts.platform_cli import app\n"
        "try:\n"
        "    run_app(app, ['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "loaded = sorted(\n"
        "    m for m in sys.modules if m.endswith('_cli') or m.startswith('google.cloud')\n"
        ")\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['scripts.platform_cli']"


def test_usage_error_in_a_lazy_command_exits_64() -> None:
    from scripts.cli_common import run_app

    with pytest.raises(SystemExit) as info:
        run_app(app, ["plan", "--stak", "prod"])
    assert info.value.code == ExitCode.USAGE
    with pytest.raises(SystemExit) as info:
        run_app(app, ["no-such-command"])
    assert info.value.code == ExitCode.USAGE


# --- Help renders literally ---------------------------------------------------------------

_MARKUP = re.compile(r"\[/?(?:" + "|".join(sorted(HELP_MARKUP)) + r")\]|\[/\]")


def _texts(command: Any) -> Iterator[str]:
    yield from (t for t in (command.help, command.short_help, command.epilog) if t)
    yield from (p.help for p in command.params if getattr(p, "help", None))


def test_every_help_text_prints_what_it_says() -> None:
    """Rich markup eats ``[secret]`` as a style tag; every help text of every command keeps
    each bracket except the few markup tags help texts use on purpose."""
    problems = []
    for path, command in _all_commands():
        for text in _texts(command):
            shown = Text.from_markup(text).plain
            meant = _MARKUP.sub("", text.replace("\\[", "["))
            if shown != meant:
                problems.append(f"{path}: {meant!r} prints as {shown!r}")
    assert not problems, "\n".join(problems)
    assert len(_all_commands()) > 30  # the walk reached the sub-apps' commands


def test_plan_help_shows_the_secret_placeholder() -> None:
    result, out = invoke("plan", "--help", columns=80)
    assert result.exit_code == 0, out
    assert "Config secrets are shown as [secret]." in " ".join(out.split()), out


def test_every_command_help_renders_at_80_columns() -> None:
    for path, _command in _all_commands():
        args = path.split() if path != "platform" else []
        result, out = invoke(*args, "--help", columns=80)
        assert result.exit_code == 0, (path, out)
        assert all(len(line) <= 80 for line in out.splitlines()), (path, out)


# --- platform plan at 80 columns, and the other plan commands -----------------------------


def test_plan_at_80_columns_puts_each_setting_on_its_own_line() -> None:
    import json

    result, doc = invoke("plan", "--stack", "prod", "--json")
    assert result.exit_code == 0, doc
    inventory = json.loads(result.stdout)["inventory"]
    result, out = invoke("plan", "--stack", "prod", columns=80)
    assert result.exit_code == 0, out
    lines = out.splitlines()
    assert "key settings" not in out
    for group in inventory:
        assert group["component"] in lines, group["component"]
        for r in group["resources"]:
            row = next(i for i, line in enumerate(lines) if line.split() == [r["type"], r["name"]])
            # The settings follow their resource, each on one whole line, never folded.
            settings = []
            for line in lines[row + 1 :]:
                if not line.startswith("      "):
                    break
                settings.append(line.removeprefix("      "))
            assert " ".join(settings) == r["settings"], (r["name"], settings)
    assert "      invokers=[push-worker]" in lines
    # Only the rule table is a table, and it fits; a longer line is one item (an image ref, a
    # long resource name), left whole for the terminal to wrap and a log to search.
    table = [line for line in lines if set(line) & set("┃│┏┗━─")]
    assert table and all(len(line) <= 80 for line in table), table


def test_preflight_runs_the_rules_without_the_inventory() -> None:
    result, out = invoke("preflight", "--stack", "prod")
    assert result.exit_code == 0, out
    assert f"{len(RULES)}/{len(RULES)} rules pass" in out
    assert "Totals" not in out and "cloudrunv2.Service" not in out


def test_bootstrap_plan_prints_the_bootstrap_inventory() -> None:
    import json

    result, out = invoke("bootstrap-plan", "--json")
    assert result.exit_code == 0, out
    doc = json.loads(result.stdout)
    assert doc["counts"] == evaluate_bootstrap("prod").counts()
    result, out = invoke("bootstrap-plan")
    assert result.exit_code == 0, out
    assert "storage.Bucket" in out and f"{doc['total']}  all resources" in out
    result, out = invoke("bootstrap-plan", "--stack", "staging")
    assert result.exit_code == ExitCode.ERROR, out
    assert "no bootstrap stack file" in out and "Traceback" not in out


# --- The one duration grammar of the command lines ----------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("600", 600), ("1.5", 1.5), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("10m00s", 600)]
    + [("250ms", 0.25), ("2d", 172800), (" 10 m ", 600), ("1h 30m", 5400)],
)
def test_cli_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "m", "-5", "1e3"])
def test_cli_durations_name_the_grammar(text: str) -> None:
    with pytest.raises(typer.BadParameter, match=r"is not a duration: seconds \(600\)"):
        parse_duration(text)


def test_both_duration_options_use_the_one_grammar() -> None:
    from scripts import batches_cli, deploy_lock_cli

    assert batches_cli.parse_duration is parse_duration
    assert deploy_lock_cli._parse_ttl("1h30m").total_seconds() == 5400
