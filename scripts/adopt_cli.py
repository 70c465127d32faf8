"""``platform adopt``: which declared resources exist already, as Pulumi's bulk import file.

Thin over :mod:`scripts.adopt`. Exit codes (``scripts/cli_common.py``): 0 the file is written
(with ``--strict``: and every resource was checked) · 1 error (invalid stack, the file cannot
be written; with ``--strict``: a resource could not be checked) · 64 usage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infra.config import ConfigError
from scripts.adopt import (
    AdoptionReport,
    GoogleLookups,
    Status,
    import_file,
    plan_adoption,
    resolve_credentials,
)
from scripts.cli_common import ExitCode, console, fail, usage_error
from scripts.plan import PlanError, evaluate_stack

__all__ = ["app"]

app = typer.Typer(
    rich_markup_mode="rich", add_completion=False, pretty_exceptions_show_locals=False
)
EPILOG = (
    "[b]Exit codes[/b]: 0 import file written · 1 error (with --strict: a resource could not "
    "be checked) · 64 usage error"
)
_STYLE = {Status.IMPORT: "green", Status.CREATE: "cyan", Status.UNCHECKED: "yellow"}
_LABEL = {Status.IMPORT: "import", Status.CREATE: "create", Status.UNCHECKED: "unchecked"}


def _render(report: AdoptionReport, out: Path) -> None:
    counts = report.counts()
    table = Table(
        title=f"adopt {report.stack}: {counts['import']} to import, {counts['create']} to "
        f"create, {counts['unchecked']} not checked",
        show_lines=False,
        expand=False,
    )
    table.add_column("status", no_wrap=True)
    table.add_column("resource", overflow="fold", max_width=30)
    table.add_column("import id / reason", overflow="fold")
    for status in (Status.IMPORT, Status.CREATE, Status.UNCHECKED):
        for d in report.of(status):
            short = d.resource.type.rsplit(":", 1)[-1]
            detail = d.import_id if status is Status.IMPORT else (d.reason or "")
            table.add_row(
                f"[{_STYLE[status]}]{_LABEL[status]}[/]",
                escape(f"{short} {d.resource.name}"),
                escape(detail or ""),
            )
    console.print(table)
    console.print(
        f"wrote {escape(str(out))}: run [b]pulumi import --file {escape(str(out))}[/b] "
        "(docs/runbooks.md, 'Adopting the hand-deployed production')",
        highlight=False,
    )


@app.command(epilog=EPILOG)
def adopt(
    stack: Annotated[
        str | None, typer.Option("--stack", "-s", help="Stack to adopt.", show_default=False)
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write the import file.", show_default=False),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a resource could not be checked (CI).")
    ] = False,
) -> None:
    """Look up every resource the program declares by its physical name (Google's official
    clients) and write Pulumi's bulk import file for those that exist; list what will be
    created and what could not be checked, with the reason."""
    if not stack:
        raise usage_error("--stack is required (e.g. platform adopt --stack prod --out F)")
    if out is None:
        raise usage_error("--out is required: the import file to write")
    try:
        plan = evaluate_stack(stack)
    except (ConfigError, PlanError) as exc:
        raise fail(f"cannot evaluate stack '{stack}': {exc}", as_json=json_out) from None
    with GoogleLookups(resolve_credentials()) as google:
        report = plan_adoption(plan.resources, google.lookups(), stack=stack)
    document = import_file(report)
    try:
        out.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        raise fail(f"cannot write the import file {out}: {exc}", as_json=json_out) from None
    code = ExitCode.ERROR if strict and report.unchecked else ExitCode.OK
    if json_out:
        payload = {"ok": code == ExitCode.OK, "exit_code": int(code), "out": str(out)}
        payload.update(report.as_dict())
        print(json.dumps(payload, sort_keys=True))
    else:
        _render(report, out)
        if code != ExitCode.OK:
            console.print(
                f"[red]--strict: {len(report.unchecked)} resource(s) could not be checked[/red]"
            )
    raise typer.Exit(code=code)
