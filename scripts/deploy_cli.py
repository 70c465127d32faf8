"""``deploy``: one locked, recorded, verified deploy of a stack; its history; rollback.

Thin over :mod:`scripts.deploy`: this module parses the options into one :class:`RunOptions`,
asks the library for the stack's adapters (``stack_adapters``: Automation API, Cloud Build,
Cloud Run and its traffic, Cloud Monitoring, Secret Manager, Artifact Registry, Firestore) and
renders the pipeline's progress and outcome.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infra.paths import REPO_ROOT
from scripts.cli_common import (
    EXIT_CODES_HELP,
    ExitCode,
    console,
    err_console,
    fail,
    make_app,
    run_app,
    usage_error,
)
from scripts.deploy import (
    BUILDERS,
    DEFAULT_LOCK_DATABASE,
    LOCAL_STACK,
    LOCK_DATABASE_ENV,
    PREVIOUS,
    DeployError,
    DeployLockLocker,
    DeploymentHistory,
    DeployOutcome,
    DeployRequest,
    GitRepo,
    LocalTarget,
    default_image_tags,
    deploy_notifier,
    existing_creates,
    records_client,
    run_deploy,
    select_rollback,
    stack_adapters,
)

app = make_app(
    help=(
        "Deploy a stack: preflight, tooling check, deploy lock, build, [b]pulumi up[/b], "
        "verification on Cloud Run, post-deploy check (a synthetic batch), progressive "
        "traffic, deployment record, lock release; a failed verify, check or rollout rolls "
        "back to the last good release by itself.\n\n"
        "[b]deploy --stack prod[/b] deploys; [b]deploy history[/b] lists deployments; "
        "[b]deploy rollback[/b] redeploys a recorded deployment's images. "
        f"[b]--stack {LOCAL_STACK}[/b] targets the local platform on the emulators."
    ),
)

Stack = Annotated[
    str | None,
    typer.Option(
        "--stack",
        "-s",
        help="The stack: prod, dev, or local (the local platform).",
        show_default=False,
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Preflight, tooling and `pulumi preview` only: no lock, no build, no record. "
        "Exits 2 when the preview shows changes.",
    ),
]
Yes = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (required in CI).")
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
Builder = Annotated[
    str,
    typer.Option(
        help="local: the program builds images (pulumi-docker-build); cloudbuild: build "
        "missing content-hash tags on Cloud Build and deploy by digest."
    ),
]
AllowDirty = Annotated[
    bool,
    typer.Option("--allow-dirty", help="Deploy although the work tree has uncommitted changes."),
]
CheckExisting = Annotated[
    bool,
    typer.Option(
        "--check-existing",
        help="Before pulumi up: preview, look up each resource it would create (as "
        "`platform adopt` does) and refuse when one exists already.",
    ),
]
LockProject = Annotated[
    str | None,
    typer.Option(
        help="Project of the lock's Firestore database (default: the stack's gcp:project).",
        envvar="DEPLOY_LOCK_PROJECT",
        show_default=False,
    ),
]
LockDatabase = Annotated[
    str,
    typer.Option(
        help="Firestore database of the deploy lock and the deployment records "
        "(created by infra/bootstrap).",
        envvar=LOCK_DATABASE_ENV,
    ),
]


class RichReporter:
    """Live progress: a spinner for the running step, one line per finished step, the
    engine's output streamed dimmed (all on stderr under --json, so stdout stays JSON)."""

    ICONS = {"ok": "[green]✓[/green]", "failed": "[red]✗[/red]", "skipped": "[dim]-[/dim]"}

    def __init__(self, out: Console) -> None:
        self.out = out
        self._status: Any = None

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def step(self, name: str, status: str, detail: str = "") -> None:
        self._stop()
        if status == "running":
            self._status = self.out.status(f"[bold]{name}[/bold] ...")
            self._status.start()
            return
        first = detail.splitlines()[0] if detail else ""
        self.out.print(f"{self.ICONS.get(status, '?')} {name:<10} {escape(first)}", highlight=False)

    def output(self, line: str) -> None:
        self.out.print(f"[dim]  | {escape(line)}[/dim]", highlight=False)

    def close(self) -> None:
        self._stop()


def _render(outcome: DeployOutcome, as_json: bool) -> None:
    if as_json:
        import json

        print(json.dumps(outcome.to_dict(), default=str, sort_keys=True))
        return
    table = Table(title=f"deploy {outcome.stack}" + (" (dry run)" if outcome.dry_run else ""))
    table.add_column("step")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    colours = {"ok": "green", "failed": "red", "skipped": "dim"}
    for s in outcome.steps:
        # The full text of a failure follows the table; one line each here.
        detail = s.detail.splitlines()[0] if s.detail else ""
        table.add_row(s.name, f"[{colours.get(s.status, 'white')}]{s.status}[/]", escape(detail))
    console.print(table)
    for line in _evidence(outcome):
        console.print(escape(line), highlight=False)
    if outcome.deployment:
        console.print(f"deployment record: [b]{outcome.deployment.id}[/b]", highlight=False)
    if outcome.exit_code == ExitCode.OK:
        console.print("[green]done[/green]" + (": no changes" if outcome.dry_run else ""))
    elif outcome.exit_code == ExitCode.CHANGES:
        console.print("[yellow]the preview shows changes[/yellow] (exit 2)")
    else:
        err_console.print(f"[red]Error:[/red] {escape(outcome.error or 'failed')}")


def _evidence(outcome: DeployOutcome) -> list[str]:
    """The check's figures, each traffic step, the rollback and the warnings, one line each
    (the table holds one line per step)."""
    lines = []
    if outcome.check is not None:
        lines.append(f"check: {outcome.check.detail}")
    for rollout in outcome.rollout:
        steps = ", ".join(_step_text(s) for s in rollout.get("steps", [])) or "-"
        if rollout.get("ok"):
            verdict = "ok"
        else:
            restored = "traffic restored" if rollout.get("restored") else "NOT restored"
            verdict = f"{restored} to {rollout.get('previous')}: {rollout.get('error')}"
        lines.append(
            f"rollout {rollout.get('service')} -> {rollout.get('candidate')}: {steps}; {verdict}"
        )
    if outcome.rolled_back_to:
        rb = outcome.rollback_record
        lines.append(
            f"rolled back automatically to {outcome.rolled_back_to}"
            + (f" (record {rb.id}, commit {rb.commit[:12]})" if rb else "")
        )
    elif outcome.rollback_record is not None:
        lines.append(f"automatic rollback {outcome.rollback_record.id} failed")
    lines.extend(f"warning: {w}" for w in outcome.warnings)
    return lines


def _step_text(step: dict[str, Any]) -> str:
    samples = step.get("samples") or []
    text = f"{step.get('percent')}%"
    if samples:
        last = samples[-1]
        text += f" ({last.get('requests')} req, {last.get('error_rate', 0):.1%} 5xx)"
    return text + (f" breach: {step['breach']}" if step.get("breach") else "")


@dataclass(frozen=True)
class RunOptions:
    """One pipeline run as ``deploy`` or ``deploy rollback`` parsed it."""

    request: DeployRequest
    yes: bool
    json_out: bool
    lock_project: str | None
    lock_database: str
    check_existing: bool = False


def _execute(options: RunOptions, root: Path = REPO_ROOT) -> None:
    """One pipeline run: the usage checks, the stack's adapters, progress, the outcome."""
    request, json_out = options.request, options.json_out
    if request.builder not in BUILDERS:
        raise usage_error(
            f"--builder must be one of: {', '.join(BUILDERS)} (got '{request.builder}')"
        )
    if not request.dry_run and not options.yes and not sys.stdin.isatty():
        raise usage_error("not a terminal: pass --yes to deploy without confirmation")
    asks = not (options.yes or request.dry_run)
    confirm = (lambda q: typer.confirm(q, default=False)) if asks else None
    try:
        adapters = stack_adapters(
            request.stack,
            root,
            builder=request.builder,
            allow_dirty=request.allow_dirty,
            lock_project=options.lock_project,
            lock_database=options.lock_database,
            rollback_to=request.rollback_to,
        )
    except DeployError as exc:
        raise fail(str(exc), as_json=json_out) from None
    target = adapters.target

    reporter = RichReporter(err_console if json_out else console)
    local = target.platform if isinstance(target, LocalTarget) else None
    outcome: DeployOutcome | None = None
    try:
        outcome = run_deploy(
            request,
            target=target,
            preflight=adapters.preflight,
            locker=DeployLockLocker(),
            repo=GitRepo(root),
            reporter=reporter,
            builder=adapters.builder,
            image_tags=default_image_tags(root),
            confirm=confirm,
            adoption=existing_creates if options.check_existing and local is None else None,
            notifier_for=lambda info: deploy_notifier(info, secrets=adapters.secrets),
        )
    finally:
        reporter.close()
        serving = outcome is not None and (
            outcome.exit_code == ExitCode.OK or outcome.rolled_back_to is not None
        )
        if local is not None and serving and not request.dry_run:
            # Like `platform local up`: the deployed (or restored) platform keeps running
            # after we exit.
            local.detach()
    _render(outcome, json_out)
    if (
        local is not None
        and not json_out
        and (outcome.exit_code == ExitCode.OK or outcome.rolled_back_to is not None)
    ):
        console.print("the local platform keeps running: `platform local down` stops it")
    raise typer.Exit(code=int(outcome.exit_code))


@app.callback(invoke_without_command=True)
def deploy(
    ctx: typer.Context,
    stack: Stack = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    json_out: Json = False,
    builder: Builder = "local",
    allow_dirty: AllowDirty = False,
    lock_project: LockProject = None,
    lock_database: LockDatabase = DEFAULT_LOCK_DATABASE,
    check_existing: CheckExisting = False,
) -> None:
    """Deploy a stack through the locked, verified, recorded pipeline.

    Steps: 1 preflight (config, image checks, policy rules; a dirty tree is refused) ·
    2 tooling (pulumi CLI, GCP credentials) · 3 deploy lock + heartbeat · 4 build ·
    5 pulumi up (preview with --dry-run) · 6 verify on Cloud Run · 7 check (a synthetic
    batch must be predicted) · 8 rollout (traffic in steps; local: not applicable) ·
    9 record · 10 release. A failed verify, check or rollout redeploys the last good
    release under the same lock. Announced to PLATFORM_NOTIFY_WEBHOOK (or the secret
    deploy.notify.webhook_url_secret names) and GitHub deployments. The lock is released on
    success, failure, SIGINT and SIGTERM.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not stack:
        raise usage_error("--stack is required (e.g. deploy --stack prod)")
    _execute(
        RunOptions(
            DeployRequest(stack=stack, dry_run=dry_run, builder=builder, allow_dirty=allow_dirty),
            yes=yes,
            json_out=json_out,
            lock_project=lock_project,
            lock_database=lock_database,
            check_existing=check_existing,
        )
    )


def _records_client(stack: str, lock_project: str | None, lock_database: str, as_json: bool):
    try:
        return records_client(stack, REPO_ROOT, lock_project, lock_database)
    except DeployError as exc:
        raise fail(str(exc), as_json=as_json) from None


@app.command(epilog=EXIT_CODES_HELP)
def history(
    stack: Stack = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many records.")] = 20,
    json_out: Json = False,
    lock_project: LockProject = None,
    lock_database: LockDatabase = DEFAULT_LOCK_DATABASE,
) -> None:
    """List the stack's recorded deployments, newest first."""
    if not stack:
        raise usage_error("--stack is required")
    client = _records_client(stack, lock_project, lock_database, json_out)
    try:
        records = DeploymentHistory(client).list(stack, limit=limit)
    except Exception as exc:  # noqa: BLE001 - Firestore unreachable, permission denied
        raise fail(f"cannot read deployment history: {exc}", as_json=json_out) from None
    if json_out:
        import json

        print(
            json.dumps(
                {"ok": True, "stack": stack, "deployments": [r.to_doc() for r in records]},
                default=str,
                sort_keys=True,
            )
        )
        return
    table = Table(title=f"deployments of {stack}")
    for col in ("id", "result", "kind", "commit", "who", "started", "token", "images"):
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(
            r.id,
            r.result,
            r.kind + (f" of {r.rollback_of}" if r.rollback_of else ""),
            r.commit[:12],
            r.who,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "?",
            str(r.lock_token or ""),
            "\n".join(f"{s}: {d[:19]}" for s, d in sorted(r.digests.items())),
        )
    console.print(table)
    if not records:
        console.print(f"no deployments recorded for stack '{stack}'")


@app.command(epilog=EXIT_CODES_HELP)
def rollback(
    stack: Stack = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help=f"A deployment id from `deploy history`, or '{PREVIOUS}' (the succeeded "
            "deployment before the newest succeeded one).",
            show_default=False,
        ),
    ] = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    json_out: Json = False,
    allow_dirty: AllowDirty = False,
    lock_project: LockProject = None,
    lock_database: LockDatabase = DEFAULT_LOCK_DATABASE,
) -> None:
    """Redeploy a recorded deployment's image digests and commit label with HEAD's
    infrastructure config, through the same locked, verified, recorded pipeline.

    Refuses, naming them, when services of that deployment no longer exist in the stack.
    """
    if not stack or not to:
        raise usage_error("--stack and --to are required (e.g. --to previous)")
    client = _records_client(stack, lock_project, lock_database, json_out)
    try:
        target = select_rollback(DeploymentHistory(client), stack, to)
    except DeployError as exc:
        raise fail(str(exc), as_json=json_out) from None
    except Exception as exc:  # noqa: BLE001
        raise fail(f"cannot read deployment history: {exc}", as_json=json_out) from None
    _execute(
        RunOptions(
            DeployRequest(
                stack=stack, dry_run=dry_run, allow_dirty=allow_dirty, rollback_to=target
            ),
            yes=yes,
            json_out=json_out,
            lock_project=lock_project,
            lock_database=lock_database,
        )
    )


def main() -> None:
    run_app(app, prog_name="deploy")


if __name__ == "__main__":
    main()
