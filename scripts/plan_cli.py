"""``platform plan``, ``platform preflight`` and ``platform bootstrap-plan``: the offline plan
(:mod:`scripts.plan`) from the command line.

The output reads at 80 columns and in CI logs: each resource on a line of its own with its
settings on indented lines under it, printed without hard wrapping (a long image reference
stays one line a log can be searched for); only the short rule table is a table.

Exit codes (``scripts/cli_common.py``): 0 ok · 1 error (invalid config, a failing preflight
rule) · 64 usage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from infra.bootstrap.config import BootstrapConfigError
from infra.config import ConfigError
from policy.findings import RuleResult
from scripts.cli_common import ExitCode, console, fail
from scripts.plan import (
    InventoryGroup,
    Plan,
    PlanError,
    evaluate_bootstrap,
    evaluate_stack,
    inventory,
    preflight,
)

__all__ = ["bootstrap_app", "plan_app", "preflight_app"]

Stack = Annotated[str, typer.Option(help="Stack to evaluate (Pulumi.<stack>.yaml).")]
Json = Annotated[bool, typer.Option("--json", help="One JSON document on stdout, for CI.")]
Root = Annotated[
    Path | None,
    typer.Option(
        help="Checkout holding Pulumi.<stack>.yaml and the build context.",
        show_default="this checkout",
    ),
]

plan_app = typer.Typer(rich_markup_mode="rich", add_completion=False)
preflight_app = typer.Typer(rich_markup_mode="rich", add_completion=False)
bootstrap_app = typer.Typer(rich_markup_mode="rich", add_completion=False)
_STATUS_STYLE = {"pass": "green", "fail": "red", "warn": "yellow", "unverifiable": "magenta"}


def _evaluate(stack: str, root: Path | None, as_json: bool) -> Plan:
    try:
        return evaluate_stack(stack, root=root)
    except ConfigError as exc:
        errors = [str(i) for i in exc.issues]
        raise fail(str(exc), as_json=as_json, data={"stack": stack, "errors": errors}) from None
    except PlanError as exc:
        raise fail(str(exc), as_json=as_json, data={"stack": stack, "errors": [str(exc)]}) from None


def _line(text: str | Text, indent: int = 0) -> None:
    """One line, never hard-wrapped (a terminal wraps it; a CI log keeps it whole)."""
    if isinstance(text, str):
        text = Text(text)
    console.print(Text(" " * indent) + text, soft_wrap=True, highlight=False)


# --- JSON ---------------------------------------------------------------------------------


def _inventory_json(groups: Sequence[InventoryGroup]) -> list[dict[str, Any]]:
    return [
        {
            "component": g.component,
            "resources": [
                {"type": row.type, "name": row.name, "settings": row.settings_text}
                for row in g.rows
            ],
        }
        for g in groups
    ]


def _preflight_json(results: Sequence[RuleResult]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.rule.id,
            "name": r.rule.name,
            "severity": r.rule.severity.value,
            "status": r.status,
            "findings": [
                {
                    "resource": f.resource,
                    "urn": f.urn,
                    "message": f.message,
                    "unverifiable": f.unverifiable,
                }
                for f in r.findings
            ],
        }
        for r in results
    ]


def _print_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, default=str, sort_keys=True))


# --- Human --------------------------------------------------------------------------------


def _print_inventory(groups: Sequence[InventoryGroup]) -> None:
    for group in groups:
        console.print()
        _line(Text(group.component, style="bold"))
        for row in group.rows:
            _line(Text.assemble((row.type, "cyan"), "  ", row.name), indent=2)
            for setting in row.settings:
                _line(setting, indent=6)


def _print_totals(counts: dict[str, int]) -> None:
    console.print()
    _line(Text("Totals", style="bold"))
    width = len(str(sum(counts.values())))
    for typ, count in counts.items():
        _line(Text.assemble(f"{count:>{width}}  ", (typ, "cyan")), indent=2)
    _line(Text(f"{sum(counts.values()):>{width}}  all resources", style="bold"), indent=2)


def _print_rules(results: Sequence[RuleResult]) -> bool:
    """The rule table, then every finding on its own lines; True when a rule fails."""
    console.print()
    table = Table(title="Preflight rules (policy/rules/)", title_justify="left")
    table.add_column("rule", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("checks")
    for r in results:
        table.add_row(r.rule.id, Text(r.status, style=_STATUS_STYLE[r.status]), Text(r.rule.title))
    console.print(table)
    for r in results:
        for f in r.findings:
            tag = "unverifiable" if f.unverifiable else f.severity.value
            _line(Text.assemble((f"{r.rule.id} {tag}", _STATUS_STYLE[r.status]), f" {f.resource}:"))
            _line(f.message, indent=4)
    failed = any(r.status == "fail" for r in results)
    passed = sum(r.status == "pass" for r in results)
    summary = Text(f"{passed}/{len(results)} rules pass")
    if failed:
        summary.append(": FAILED", style="red")
    _line(summary)
    return failed


def _heading(plan: Plan) -> None:
    _line(
        Text.assemble(
            (f"Stack {plan.stack}", "bold"),
            f": project {plan.config.project}, region {plan.config.region}",
        )
    )
    _line(Text("offline plan under Pulumi's mocks: no Pulumi CLI, no cloud", style="dim"))


# --- Commands -----------------------------------------------------------------------------


@plan_app.command("plan")
def plan(stack: Stack = "prod", as_json: Json = False, root: Root = None) -> None:
    """Evaluate the Pulumi program offline (mock runtime): inventory, then preflight rules.

    Config secrets are shown as [secret]. Exits 1 listing every config error, or when a
    preflight rule finds an error (unverifiable checks are shown, and do not fail).
    """
    result = _evaluate(stack, root, as_json)
    groups = inventory(result.resources)
    counts = result.counts()
    results = preflight(result.resources)
    failed = any(r.status == "fail" for r in results)
    if as_json:
        _print_json(
            {
                "ok": not failed,
                "stack": stack,
                "preflight": _preflight_json(results),
                "inventory": _inventory_json(groups),
                "counts": counts,
                "total": sum(counts.values()),
                "outputs": result.outputs,
            }
        )
    else:
        _heading(result)
        _print_inventory(groups)
        _print_totals(counts)
        console.print()
        _line(Text("Outputs", style="bold"))
        console.print_json(json.dumps(result.outputs))
        _print_rules(results)
    if failed:
        raise typer.Exit(code=ExitCode.ERROR)


@preflight_app.command("preflight")
def preflight_command(stack: Stack = "prod", as_json: Json = False, root: Root = None) -> None:
    """Run the preflight rules on the offline plan, the image check included, without the
    inventory: what the deploy pipeline checks before it takes the lock.

    Exits 1 listing every config error, or when a preflight rule finds an error.
    """
    result = _evaluate(stack, root, as_json)
    results = preflight(result.resources)
    failed = any(r.status == "fail" for r in results)
    if as_json:
        _print_json({"ok": not failed, "stack": stack, "preflight": _preflight_json(results)})
    else:
        _heading(result)
        _print_rules(results)
    if failed:
        raise typer.Exit(code=ExitCode.ERROR)


@bootstrap_app.command("bootstrap-plan")
def bootstrap_plan(
    stack: Annotated[
        str, typer.Option(help="Bootstrap stack (infra/bootstrap/Pulumi.<stack>.yaml).")
    ] = "prod",
    as_json: Json = False,
) -> None:
    """Evaluate the one-time bootstrap program (infra/bootstrap) offline: its inventory.

    State bucket, KMS key, deploy identity, workload identity federation, lock database.
    Exits 1 naming every config problem.
    """
    try:
        result = evaluate_bootstrap(stack)
    except (BootstrapConfigError, FileNotFoundError) as exc:
        raise fail(str(exc), as_json=as_json, data={"stack": stack}) from None
    groups = inventory(result.resources)
    counts = result.counts()
    if as_json:
        _print_json(
            {
                "ok": True,
                "stack": stack,
                "inventory": _inventory_json(groups),
                "counts": counts,
                "total": sum(counts.values()),
                "outputs": result.outputs,
            }
        )
        return
    _line(
        Text.assemble(
            (f"Bootstrap stack {stack}", "bold"), ": one-time resources (infra/bootstrap)"
        )
    )
    _print_inventory(groups)
    _print_totals(counts)
    console.print()
    _line(f"outputs: {', '.join(sorted(result.outputs))}")
