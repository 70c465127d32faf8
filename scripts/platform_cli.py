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

from scripts.cli_common import ExitCode, console, err_console, make_app, run_app
from scripts.images_cli import app as images_app
from scripts.images_cli import app as images_app

app = make_app(help="Operate the prediction platform: offline plan, preflight, images, local.")
app.add_typer(images_app, name="images")
app.add_typer(__import__("scripts.local_cli").local_cli.app, name="local")
app.add_typer(images_app, name="images")


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
        typer.Option(help="Checkout holding Pulumi.<stack>.yaml and the build context.",
                     show_default="this checkout"),
    ] = None,
) -> None:
    """Evaluate the Pulumi program offline (mock runtime) and print its inventory.

    Config secrets are shown as [secret]. Exits 1 listing every config error.
    """
    from infra.config import ConfigError
    from scripts.offline_plan import PlanError, evaluate_stack, inventory

    try:
        result = evaluate_stack(stack, root=root)
    except ConfigError as exc:
        if as_json:
            print(json.dumps({"ok": False, "stack": stack, "errors": [str(i) for i in exc.issues]}))
        else:
            err_console.print(f"[red]Error:[/red] {exc}", highlight=False, markup=False)
        raise typer.Exit(code=ExitCode.ERROR) from None
    except PlanError as exc:
        if as_json:
            print(json.dumps({"ok": False, "stack": stack, "errors": [str(exc)]}))
        else:
            err_console.print(f"Error: {exc}", highlight=False, markup=False, style="red")
        raise typer.Exit(code=ExitCode.ERROR) from None

    groups = inventory(result)
    counts = result.counts()
    if as_json:
        print(
            json.dumps(
                {
                    "ok": True,
                    "stack": stack,
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


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
