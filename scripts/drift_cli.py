"""``drift``: how a deployed stack differs from main (config, code, images), in one table.

Thin over :func:`scripts.deploy.compute_drift`; exit codes from the project's table:
0 no drift, 2 drift found, 1 error (including a drift kind that could not be computed),
64 usage.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infra.paths import REPO_ROOT
from scripts.cli_common import ExitCode, console, err_console, fail, run_app, usage_error
from scripts.deploy import (
    DEFAULT_LOCK_DATABASE,
    LOCAL_STACK,
    LOCK_DATABASE_ENV,
    AutomationPulumi,
    CloudBuildAdapter,
    CloudRunAdapter,
    DeployError,
    DeploymentHistory,
    DriftReport,
    GitRepo,
    SystemTooling,
    compute_drift,
    evaluate_plan,
    firestore_for,
    plan_stack_info,
)

app = typer.Typer(
    rich_markup_mode="rich",
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
EPILOG = "[b]Exit codes[/b]: 0 no drift · 2 drift found · 1 error · 64 usage error"


def _render(report: DriftReport) -> None:
    table = Table(title=f"drift of {report.stack}")
    table.add_column("kind")
    table.add_column("what")
    table.add_column("drift")
    table.add_column("detail", overflow="fold")
    yes, no = "[yellow]yes[/yellow]", "[green]no[/green]"
    code = report.code
    if code:
        table.add_row(
            "code",
            "stack",
            yes if code.drifted else no,
            f"deployed {code.deployed[:12]} (from {code.deployed_source}), "
            f"{code.behind} commit(s) behind {code.target[:12]}",
        )
        for svc in code.services:
            lines = [f"{c.short} {escape(c.subject)} ({escape(c.author)})" for c in svc.commits]
            table.add_row(
                "code",
                svc.service,
                yes if svc.commits else no,
                "\n".join(lines) or "no commit touches its build context",
            )
    for img in report.images:
        table.add_row("image", img.service, yes if img.drifted else no, escape(img.detail))
    if report.config is not None:
        if not report.config:
            table.add_row("config", "all resources", no, "refresh + preview: no changes")
        for change in report.config:
            diffs = ", ".join(change.diffs) or "(no property list)"
            table.add_row("config", escape(change.name), yes, f"{change.op} {change.type}: {diffs}")
    for error in report.errors:
        table.add_row("error", "", "[red]?[/red]", escape(error))
    console.print(table)


@app.command(epilog=EPILOG)
def drift(
    stack: Annotated[
        str | None, typer.Option("--stack", "-s", help="Stack to compare.", show_default=False)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ref: Annotated[str, typer.Option(help="The git ref deployed code is compared with.")] = "main",
    config: Annotated[
        bool, typer.Option(help="Run the config drift preview (pulumi refresh + preview).")
    ] = True,
    lock_project: Annotated[
        str | None,
        typer.Option(
            help="Project of the deployment records' Firestore database (default: the "
            "stack's gcp:project).",
            envvar="DEPLOY_LOCK_PROJECT",
            show_default=False,
        ),
    ] = None,
    lock_database: Annotated[
        str,
        typer.Option(
            help="Firestore database of the deployment records.", envvar=LOCK_DATABASE_ENV
        ),
    ] = DEFAULT_LOCK_DATABASE,
) -> None:
    """Report config drift (changed outside Pulumi), code drift (commits behind main, per
    service the commits touching its build context) and image drift (running digest vs the
    current build context), run with the deployed commit and digests."""
    if not stack:
        raise usage_error("--stack is required (e.g. drift --stack prod)")
    if stack == LOCAL_STACK:
        raise usage_error("drift compares a cloud stack (prod, dev); the local platform has none")
    root = REPO_ROOT
    try:
        info = plan_stack_info(evaluate_plan(stack, root))
    except Exception as exc:  # noqa: BLE001 - ConfigError / PlanError, each with its message
        raise fail(f"cannot evaluate stack '{stack}': {exc}", as_json=json_out) from None
    missing = SystemTooling(which=_which_if_needed(config)).missing()
    if missing:
        raise fail(
            "drift needs:\n" + "\n".join(f"  - {m}" for m in missing), as_json=json_out
        ) from None
    try:
        client = firestore_for(lock_project or info.project, lock_database)
        last = DeploymentHistory(client).last_successful(stack)
    except (DeployError, Exception) as exc:  # noqa: BLE001
        raise fail(f"cannot read deployment history: {exc}", as_json=json_out) from None
    out = err_console if json_out else console
    report = compute_drift(
        stack=stack,
        repo=GitRepo(root),
        root=root,
        services=info.refs(),
        image_targets=info.image_targets(),
        last=last,
        inspector=CloudRunAdapter(),
        engine=AutomationPulumi(root) if config else None,
        registry=CloudBuildAdapter(project=info.project, root=root),
        target_ref=ref,
        on_output=lambda line: out.print(f"[dim]  | {escape(line)}[/dim]", highlight=False),
    )
    if report.errors:
        code = ExitCode.ERROR
    elif report.drifted:
        code = ExitCode.CHANGES
    else:
        code = ExitCode.OK
    if json_out:
        import json

        print(json.dumps({**report.to_dict(), "exit_code": int(code)}, default=str))
    else:
        _render(report)
    raise typer.Exit(code=int(code))


def _which_if_needed(config: bool):
    import shutil

    # Without the config preview, the pulumi CLI is not needed.
    return shutil.which if config else (lambda _name: "not-needed")


def main() -> None:
    run_app(app, prog_name="drift")


if __name__ == "__main__":
    main()
