"""``platform local``: the stack on Google's emulators, run end to end on this machine.

Thin over :mod:`scripts.local` (``LocalPlatform``). ``up`` leaves the emulators, services and
scheduler running in the background, with their state in ``.local/`` so ``status``, ``demo``,
``trigger`` and ``down`` work from any shell. Ctrl-C (or SIGTERM) during ``up`` stops
everything that ``up`` had started.

Exit codes: 0 ok · 1 error (stack refused, a service did not start, a demo batch that did not
complete, nothing running for ``status``) · 64 usage.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from scripts.cli_common import ExitCode, console, emit, err_console, fail, make_app, run_app

app = make_app(
    help="The platform on Google's Firestore and Pub/Sub emulators: up, status, demo, down."
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where the local platform keeps its state, logs and secrets (default: .local/).",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


def _sigterm_as_interrupt() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _print_status(status: Any, *, notes: bool = False) -> None:
    from rich.table import Table

    procs = Table(
        title=f"Local platform: stack {status.stack} (project {status.project})",
        title_justify="left",
    )
    for col in ("process", "kind", "address", "pid", "state", "RSS MiB"):
        procs.add_column(col)
    for p in status.processes:
        procs.add_row(
            p.name,
            p.kind,
            p.address,
            str(p.pid),
            "[green]running[/green]" if p.alive else "[red]stopped[/red]",
            "" if p.rss_mib is None else f"{p.rss_mib:.0f}",
        )
    console.print(procs)
    subs = Table(title="Pub/Sub (emulator)", title_justify="left")
    subs.add_column("subscription")
    subs.add_column("delivers to")
    for name, endpoint in status.subscriptions:
        subs.add_row(name, endpoint)
    console.print(subs)
    if status.jobs:
        jobs = Table(title="Scheduler (local)", title_justify="left")
        for col in ("job", "schedule", "target", "next run (UTC)"):
            jobs.add_column(col)
        for row in status.jobs:
            jobs.add_row(*row)
        console.print(jobs)
    if status.monitoring is not None:
        _print_monitoring(status.monitoring)
    if status.notes and notes:
        table = Table(title="Not applied to the emulators", title_justify="left")
        for col in ("type", "resources", "instead"):
            table.add_column(col, overflow="fold")
        for row in status.notes:
            table.add_row(*row)
        console.print(table)
    elif status.notes:
        parts = status.not_applied()
        console.print(
            "Not applied: "
            + "; ".join(parts)
            + " · all: [bold]platform local status --notes[/bold]"
        )
    console.print(
        f"State and logs: {status.state_dir} · stop with [bold]platform local down[/bold]"
    )


def _alert_cell(flag: Any) -> str:
    if flag is None:
        return "[dim]none declared[/dim]"
    if flag.fires is None:
        return "not judged"
    return "[bold red]would fire[/bold red]" if flag.fires else "[green]quiet[/green]"


def _print_monitoring(mon: Any) -> None:
    """The cloud alerts' local equivalents, readable at 80 columns: one row per subscription
    or stuck batch, then each alert that would fire, its condition and runbook section."""
    from datetime import timedelta

    from rich import box
    from rich.table import Table

    from shared.batch_model import format_duration

    def dur(seconds: float) -> str:
        return format_duration(timedelta(seconds=round(seconds)))

    table = Table(
        title="Alerts: local equivalents (Cloud Monitoring has no emulator)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("measured on the emulators", overflow="fold")
    table.add_column("now")
    table.add_column("cloud alert")
    if mon.dead_letters:
        table.add_row("[bold]dead letters held[/bold] (peeked, left in place)", "", "")
    for d in mon.dead_letters:
        table.add_row(
            f"  {d.subscription}", f"{d.depth}{'+' if d.capped else ''}", _alert_cell(d.alert)
        )
    if mon.push_backlog:
        table.add_row("[bold]push backlog[/bold] (unacknowledged)", "", "")
    for b in mon.push_backlog:
        now = "not countable" if b.backlog is None else str(b.backlog)
        table.add_row(f"  {b.subscription}", now, _alert_cell(b.alert))
    if mon.stuck is not None:
        st = mon.stuck
        table.add_row(
            f"[bold]stuck batches[/bold] (no progress for {dur(st.idle_window_s)})",
            str(len(st.batches)),
            _alert_cell(st.alert),
        )
        for b in st.batches:
            table.add_row(
                f"  {b['batch_id']}",
                f"{b['done']}/{b['total_items']}, idle {dur(b['idle_seconds'])}",
                "",
            )
    console.print(table)
    if mon.stuck is not None:
        console.print(
            f"Stuck: the idle window is {mon.stuck.window_from}; the stall check re-sends or "
            "closes these, and a close is what the cloud alert counts.",
            highlight=False,
        )
    if mon.push_backlog:
        line = f"Push backlog: {mon.push_backlog[0].why}."
        if mon.stuck is not None:
            line += (
                f" Instead: {mon.stuck.open_items} item(s) of {mon.stuck.active} active "
                "batch(es) have no outcome yet (in a push hop or a service)."
            )
        console.print(line, highlight=False)
    for flag in mon.firing:
        console.print(
            f"[bold red]Would fire[/bold red] in the cloud: {flag.policy} ({flag.condition}); "
            f'runbook: {flag.runbook.split("#")[0]} "{flag.section}"',
            highlight=False,
        )
    for error in mon.errors:
        err_console.print(f"[yellow]Not measured:[/yellow] {error}", highlight=False)


@app.command()
def up(
    stack: Annotated[
        str, typer.Option(help="Stack whose topology to run (Pulumi.<stack>.yaml).")
    ] = "prod",
    config: Annotated[
        Path | None,
        typer.Option(help="A Pulumi.<stack>.yaml to use instead of the stack's own file."),
    ] = None,
    state_dir: StateDir = None,
    as_json: JsonOut = False,
) -> None:
    """Evaluate the stack, run the preflight, start the emulators and services, apply.

    A stack that fails validation or the preflight (e.g. a topic with no subscription) is
    refused before anything starts. Running it again re-applies (idempotent).
    """
    from infra.config import ConfigError
    from scripts.emulators import EmulatorUnavailable
    from scripts.local import (
        LocalPlatform,
        PlatformError,
        RefusedStack,
        ServiceStartError,
        read_config_file,
    )

    raw = None
    if config is not None:
        try:
            raw = read_config_file(config, stack)
        except PlatformError as exc:
            raise fail(str(exc), as_json=as_json) from None
        except ConfigError as exc:
            problems = [str(i) for i in exc.issues]
            raise fail(str(exc), as_json=as_json, data={"problems": problems}) from None
    _sigterm_as_interrupt()
    say = None if as_json else (lambda s: console.print(f"  {s}", highlight=False))
    lp = LocalPlatform(stack, state_dir=state_dir, config=raw, on_output=say)
    t0 = time.monotonic()
    try:
        status = lp.up()
    except RefusedStack as exc:
        raise fail(str(exc), as_json=as_json, data={"problems": exc.problems}) from None
    except (PlatformError, ServiceStartError, EmulatorUnavailable) as exc:
        raise fail(str(exc), as_json=as_json) from None
    except KeyboardInterrupt:
        err_console.print("[red]Interrupted:[/red] stopped everything this `up` started.")
        raise typer.Exit(code=ExitCode.ERROR) from None
    lp.detach()
    counts = lp.last_apply.counts() if lp.last_apply else {}
    if as_json:
        emit({"status": status.to_dict(), "applied": counts}, as_json=True)
        return
    console.print(
        f"[green]Up[/green] in {time.monotonic() - t0:.1f} s "
        f"(Pub/Sub: {counts.get('create', 0)} created, {counts.get('update', 0)} updated, "
        f"{counts.get('delete', 0)} deleted, {counts.get('same', 0)} unchanged)"
    )
    _print_status(status)


@app.command()
def down(state_dir: StateDir = None, as_json: JsonOut = False) -> None:
    """Stop the scheduler, the services and the emulators started by `up`."""
    from scripts.local import LocalPlatform, NotRunning

    try:
        lp = LocalPlatform.attach(state_dir)
    except NotRunning:
        emit({"stopped": []}, as_json=as_json, human="Nothing running.")
        return
    stopped = lp.down()
    emit(
        {"stopped": stopped},
        as_json=as_json,
        human=f"Stopped: {', '.join(stopped) or 'nothing was running'}.",
    )


@app.command()
def status(
    state_dir: StateDir = None,
    notes: Annotated[
        bool, typer.Option("--notes", help="List every resource not applied, and why.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """What runs where: emulators, services (URL, pid, memory), subscriptions, jobs.

    Then the cloud alerts' local equivalents: each dead-letter subscription's depth
    (counted, left in place), each push subscription's backlog (what the emulator lets
    count), the stuck batches (no progress for the stall check's idle window), each
    flagged where its cloud alert would fire, with its runbook section. Exits 1 when
    nothing runs or a process has died (a firing alert alone does not change the code).
    """
    from scripts.local import LocalPlatform, NotRunning

    try:
        st = LocalPlatform.attach(state_dir).status()
    except NotRunning as exc:
        raise fail(str(exc), as_json=as_json) from None
    if as_json:
        print(json.dumps({"ok": st.healthy, **st.to_dict()}, default=str, sort_keys=True))
    else:
        _print_status(st, notes=notes)
    if not st.healthy:
        dead = ", ".join(st.dead)
        if not as_json:
            err_console.print(f"[red]Not running:[/red] {dead} (see the logs in {st.state_dir})")
        raise typer.Exit(code=ExitCode.ERROR)


@app.command()
def trigger(
    job: Annotated[str, typer.Argument(help="Scheduler job (e.g. check-stalled).")],
    state_dir: StateDir = None,
    as_json: JsonOut = False,
) -> None:
    """Run a scheduler job now, as the local scheduler runs it at its cron."""
    from scripts.local import LocalPlatform, NotRunning

    try:
        run = LocalPlatform.attach(state_dir).run_job(job)
    except (NotRunning, KeyError) as exc:
        raise fail(str(exc).strip("'\""), as_json=as_json) from None
    emit(
        run.to_dict(),
        as_json=as_json,
        human=f"{run.job}: HTTP {run.status} after {run.attempts} attempt(s), "
        f"{run.elapsed_s:.2f} s\n{run.body}",
    )
    if not run.ok:
        raise typer.Exit(code=ExitCode.ERROR)


@app.command()
def demo(
    items: Annotated[int, typer.Option(min=1, max=100_000, help="Work items in the batch.")] = 500,
    out_every: Annotated[
        int, typer.Option(min=0, help="Every Nth player is OUT (a permanent failure); 0: none.")
    ] = 50,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for completion.")] = 300,
    state_dir: StateDir = None,
    as_json: JsonOut = False,
) -> None:
    """Start a batch through /start (with the API key) and show its progress until it ends.

    Prints items done, permanent failures, dead letters and elapsed time; exits 1 unless the
    batch completed.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from scripts.local import LocalPlatform, NotRunning, PlatformError, demo_items, demo_summary

    try:
        lp = LocalPlatform.attach(state_dir)
        header = lp.start_batch(
            demo_items(items, out_every=out_every), metadata={"source": "platform local demo"}
        )
    except (NotRunning, PlatformError, OSError) as exc:
        raise fail(str(exc), as_json=as_json) from None
    batch_id = header["batch_id"]
    t0 = time.monotonic()
    final: dict[str, Any] = {}
    if as_json:
        final = lp.wait_batch(batch_id, timeout=timeout)
    else:
        console.print(f"Batch [bold]{batch_id}[/bold]: {items} items through /start")
        live = console.is_terminal
        last_decile = [-1]
        with Progress(
            TextColumn("[bold]{task.fields[state]:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "ok {task.fields[ok]} · failed {task.fields[failed]} · "
                "published {task.fields[published]}"
            ),
            TimeElapsedColumn(),
            console=console,
            disable=not live,
        ) as progress:
            task = progress.add_task(
                "batch", total=items, state="publishing", ok=0, failed=0, published=0
            )

            def show(s: dict[str, Any]) -> None:
                progress.update(
                    task,
                    completed=s.get("done", 0),
                    state=s.get("state"),
                    ok=s.get("completed", 0),
                    failed=s.get("failed", 0),
                    published=s.get("published", 0),
                )
                decile = int(s.get("percent", 0) // 10)
                if not live and decile != last_decile[0]:
                    last_decile[0] = decile
                    console.print(
                        f"  {s.get('state'):<10} {s.get('done')}/{items} done "
                        f"({s.get('percent')}%), {time.monotonic() - t0:.1f} s"
                    )

            try:
                final = lp.wait_batch(batch_id, timeout=timeout, on_progress=show)
            except KeyboardInterrupt:
                err_console.print(
                    f"Interrupted; batch {batch_id} keeps running "
                    "(`platform local down` stops the platform)."
                )
                raise typer.Exit(code=ExitCode.ERROR) from None
    elapsed = time.monotonic() - t0
    dead = lp.count_dead_letters(batch_id)
    summary = demo_summary(
        final, batch_id=batch_id, items=items, dead_letters=dead, elapsed=elapsed
    )
    ok = summary["ok"]
    if as_json:
        print(json.dumps(summary, sort_keys=True))
    else:
        colour = "green" if ok else "red"
        console.print(
            f"[{colour}]{final.get('state')}[/{colour}]: {final.get('done')}/{items} items done "
            f"({final.get('completed')} predicted, {final.get('failed')} permanent failures), "
            f"{dead} dead letters, {elapsed:.1f} s ({summary['items_per_s']} items/s)"
        )
    if not ok:
        raise typer.Exit(code=ExitCode.ERROR)


def main() -> None:
    run_app(app, prog_name="platform local")


if __name__ == "__main__":
    main()
