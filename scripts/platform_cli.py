"""``platform``: the project's operator CLI, a thin registry of sub-commands and sub-apps.

Sub-apps register here with one line each (``app.add_typer(images_app, name="images")``);
the commands' logic lives in library modules (``scripts/offline_plan.py``, ``policy/``).

Exit codes (``scripts/cli_common.py``): 0 ok · 1 error (invalid config, failing preflight
rule) · 64 usage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scripts.cli_common import ExitCode, console, fail, make_app, run_app
from scripts.images_cli import app as images_app

app = make_app(help="Operate the prediction platform: offline plan, preflight, images, local.")
app.add_typer(images_app, name="images")
app.add_typer(__import__("scripts.local_cli").local_cli.app, name="local")


@app.callback()
def _root() -> None:
    """Operate the prediction platform: offline plan, preflight, images, local."""


@app.command()
def plan(
    stack: Annotated[str, typer.Option(help="Stack to evaluate (Pulumi.<stack>.yaml).")] = "prod",
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document on stdout, for CI.")
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Checkout holding Pulumi.<stack>.yaml and the build context.",
            show_default="this checkout",
        ),
    ] = None,
) -> None:
    """Evaluate the Pulumi program offline (mock runtime): inventory, then preflight rules.

    Config secrets are shown as [secret]. Exits 1 listing every config error, or when a
    preflight rule finds an error (unverifiable checks are shown, and do not fail).
    """
    from infra.config import ConfigError
    from policy.rules import rule_results
    from scripts.offline_plan import PlanError, evaluate_stack, inventory

    try:
        result = evaluate_stack(stack, root=root)
    except ConfigError as exc:
        errors = [str(i) for i in exc.issues]
        raise fail(str(exc), as_json=as_json, data={"stack": stack, "errors": errors}) from None
    except PlanError as exc:
        raise fail(str(exc), as_json=as_json, data={"stack": stack, "errors": [str(exc)]}) from None

    groups = inventory(result)
    counts = result.counts()
    results = rule_results(result.resources)
    failed = any(r.status == "fail" for r in results)
    preflight = [
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
    if as_json:
        print(
            json.dumps(
                {
                    "ok": not failed,
                    "stack": stack,
                    "preflight": preflight,
                    "inventory": [
                        {
                            "component": g.component,
                            "resources": [
                                {"type": t, "name": n, "settings": s} for t, n, s in g.rows
                            ],
                        }
                        for g in groups
                    ],
                    "counts": counts,
                    "total": sum(counts.values()),
                    "outputs": result.outputs,
                },
                default=str,
                sort_keys=True,
            )
        )
        if failed:
            raise typer.Exit(code=ExitCode.ERROR)
        return
    from rich.table import Table
    from rich.text import Text

    console.print(
        f"[bold]Stack {stack}[/bold]: project {result.config.project}, "
        f"region {result.config.region} (offline plan under Pulumi's mocks)"
    )
    for group in groups:
        table = Table(title=group.component, title_justify="left", show_lines=False)
        table.add_column("type", style="cyan", no_wrap=True)
        table.add_column("name", no_wrap=True)
        table.add_column("key settings", overflow="fold")
        for t, n, s in group.rows:
            table.add_row(Text(t), Text(n), Text(s))
        console.print(table)
    totals = Table(title="Totals", title_justify="left")
    totals.add_column("type", style="cyan")
    totals.add_column("count", justify="right")
    for t, c in counts.items():
        totals.add_row(t, str(c))
    totals.add_row("[bold]all resources[/bold]", f"[bold]{sum(counts.values())}[/bold]")
    console.print(totals)
    console.print("[bold]Outputs[/bold]")
    console.print_json(json.dumps(result.outputs))

    style = {"pass": "green", "fail": "red", "warn": "yellow", "unverifiable": "magenta"}
    rules = Table(title="Preflight rules (policy/rules.py)", title_justify="left")
    rules.add_column("rule", no_wrap=True)
    rules.add_column("status", no_wrap=True)
    rules.add_column("checks")
    rules.add_column("findings", overflow="fold")
    for r in results:
        rules.add_row(
            r.rule.id,
            Text(r.status, style=style[r.status]),
            Text(r.rule.title),
            Text(
                "\n".join(
                    f"{'unverifiable: ' if f.unverifiable else ''}{f.resource}: {f.message}"
                    for f in r.findings
                )
            ),
        )
    console.print(rules)
    passed = sum(r.status == "pass" for r in results)
    console.print(f"{passed}/{len(results)} rules pass" + (": [red]FAILED[/red]" if failed else ""))
    if failed:
        raise typer.Exit(code=ExitCode.ERROR)


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
