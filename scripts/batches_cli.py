"""``batches``: operate prediction batches directly on Firestore and Pub/Sub.

For when the coordinator itself is down or stuck: the commands run the same batch store code
(:mod:`shared.batch_store`) the coordinator runs, against the project's Firestore (or the
emulator when ``FIRESTORE_EMULATOR_HOST`` is set), and read/replay dead-letter subscriptions
through the official Pub/Sub client (``PUBSUB_EMULATOR_HOST`` likewise).

Exit codes: 0 ok · 1 error (batch not found, Google API error) · 2 ``check-stalled --dry-run``
found batches it would finish · 64 usage.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from scripts.cli_common import (
    ExitCode,
    console,
    emit,
    fail,
    make_app,
    parse_duration,
    run_app,
)
from shared.batch_model import (
    DEFAULT_IDLE_WINDOW,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_ATTEMPTS,
    StallPolicy,
    format_duration,
    utcnow,
)

app = make_app(help="Inspect and repair prediction batches (Firestore) and dead letters.")
dead_letters_app = make_app(help="Read and replay a dead-letter subscription.")
app.add_typer(dead_letters_app, name="dead-letters")

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


class _Ctx:
    project: str | None = None
    database: str | None = None


_ctx = _Ctx()


@app.callback()
def _root(
    project: Annotated[
        str | None,
        typer.Option(envvar="GCP_PROJECT_ID", help="GCP project (default: $GCP_PROJECT_ID)."),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            envvar="FIRESTORE_DATABASE",
            help="Firestore database id (default: the project's (default) database).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Inspect and repair prediction batches (Firestore) and dead letters."""
    _ctx.project = project
    _ctx.database = database


@dead_letters_app.callback()
def _dead_letters() -> None:
    """Read and replay a dead-letter subscription."""


def _project(as_json: bool) -> str:
    if not _ctx.project:
        raise fail(
            "no project: pass --project or set GCP_PROJECT_ID", ExitCode.USAGE, as_json=as_json
        )
    return _ctx.project


def _store(as_json: bool):
    from google.cloud import firestore

    from shared.batch_store import BatchStore

    project = _project(as_json)
    return BatchStore(firestore.Client(project=project, database=_ctx.database))


def _google_errors() -> tuple[type[Exception], ...]:
    from google.api_core.exceptions import GoogleAPICallError, RetryError
    from google.auth.exceptions import DefaultCredentialsError

    return (GoogleAPICallError, RetryError, DefaultCredentialsError)


@app.command("list-stuck")
def list_stuck(
    idle: Annotated[
        str, typer.Option(help="Active batches with no progress for at least this long.")
    ] = format_duration(DEFAULT_IDLE_WINDOW),
    as_json: JsonOpt = False,
) -> None:
    """List active batches with no completion or publishing progress for IDLE."""
    window = parse_duration(idle)
    try:
        store = _store(as_json)
        now = utcnow()
        stuck = store.list_stuck(idle_for=window, now=now)
    except _google_errors() as exc:
        raise fail(f"Firestore: {exc}", as_json=as_json) from None
    rows = [b.summary(now) for b in stuck]
    if as_json:
        emit({"idle_seconds": window.total_seconds(), "batches": rows}, as_json=True)
        return
    if not rows:
        console.print(f"No active batch idle for {format_duration(window)} or more.")
        return
    from rich.table import Table

    table = Table(title=f"Batches idle for {format_duration(window)} or more")
    for col in ("batch", "state", "done", "percent", "age", "idle", "last completion"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["batch_id"],
            r["state"],
            f"{r['done']}/{r['total_items']}",
            f"{r['percent']}%",
            format_duration(timedelta(seconds=r["age_seconds"])),
            format_duration(timedelta(seconds=r["idle_seconds"])),
            r["last_completion_at"] or "-",
        )
    console.print(table)


@app.command()
def inspect(
    batch_id: Annotated[str, typer.Argument(help="The batch to inspect.")],
    limit: Annotated[int, typer.Option(min=0, help="Items of each kind to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Counts, open and missing items, failed items, strays (foreign, late, duplicate and
    unknown-batch completions, never counted), last completion and age of one batch.

    Exits 1 for an unknown batch, listing the completions recorded for it anyway."""
    from shared.batch_model import InvalidBatchId

    try:
        store = _store(as_json)
        now = utcnow()
        batch = store.status(batch_id)
        strays = store.strays(batch_id, limit=limit)
        stray_counts = store.stray_counts(batch_id)
        if batch is None:
            raise fail(
                f"no batch {batch_id!r}"
                + (
                    f"; {sum(stray_counts.values())} completion(s) recorded for it"
                    if strays
                    else ""
                ),
                as_json=as_json,
                data={"batch_id": batch_id, "strays": stray_counts, "stray_items": strays},
            )
        open_items: list[str] = []
        open_total = 0
        for page in store.iter_missing(batch_id):
            open_total += len(page)
            open_items.extend(page[: max(limit - len(open_items), 0)])
        failed = store.failed_items(batch_id, limit=limit)
        missing = store.missing_items(batch_id, limit=limit)
    except InvalidBatchId as exc:
        raise fail(str(exc), as_json=as_json) from None
    except _google_errors() as exc:
        raise fail(f"Firestore: {exc}", as_json=as_json) from None
    summary = batch.summary(now)
    data = {
        "batch": summary,
        "open_total": open_total,
        "open": open_items,
        "missing": missing,
        "failed": [{"item_id": f["item_id"], "error": f.get("error")} for f in failed],
        "strays": stray_counts,
        "stray_items": strays,
    }
    if as_json:
        emit(data, as_json=True)
        return
    s = summary
    console.print(
        f"[bold]{s['batch_id']}[/bold]  state [bold]{s['state']}[/bold]  "
        f"{s['done']}/{s['total_items']} done ({s['percent']}%)",
        highlight=False,
    )
    console.print(
        f"{s['completed']} ok, {s['failed']} failed ({s['missing']} missing), "
        f"{s['pending']} pending; {s['published']} published, {s['resent']} re-sent",
        highlight=False,
    )
    console.print(
        f"age {format_duration(timedelta(seconds=s['age_seconds']))}, "
        f"idle {format_duration(timedelta(seconds=s['idle_seconds']))}, "
        f"last completion {s['last_completion_at'] or 'never'}",
        highlight=False,
    )
    if s["reason"]:
        console.print(f"reason: {s['reason']}", highlight=False, markup=False)
    if open_total:
        more = f" (first {len(open_items)})" if open_total > len(open_items) else ""
        console.print(
            f"open items: {open_total}{more}: {', '.join(open_items)}",
            highlight=False,
            markup=False,
        )
    for m in missing:
        console.print(f"missing {m['item_id']}: {m['error']}", highlight=False, markup=False)
    for f in data["failed"]:
        console.print(f"failed {f['item_id']}: {f['error']}", highlight=False, markup=False)
    if any(stray_counts.values()):
        kinds = ", ".join(f"{n} {k}" for k, n in stray_counts.items() if n)
        console.print(f"not counted: {kinds}", highlight=False, markup=False)
        for r in strays:
            console.print(
                f"  {r['kind']} {r['item_id']} ({r['status']}) at {r['received_at']}",
                highlight=False,
                markup=False,
            )


def _sender(project: str):
    """Re-sends through the official Pub/Sub client (``PUBSUB_EMULATOR_HOST`` honoured)."""
    from google.cloud import pubsub_v1

    from shared.pubsub import publish_messages

    client = pubsub_v1.PublisherClient()
    return lambda topic, messages: publish_messages(client, project, topic, messages)


@app.command("check-stalled")
def check_stalled(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, change nothing.")] = False,
    idle: Annotated[
        str, typer.Option(help="Idle window before a batch counts as stalled.")
    ] = format_duration(DEFAULT_IDLE_WINDOW),
    max_attempts: Annotated[
        int, typer.Option(min=1, help="Publishes per item before it is recorded missing.")
    ] = DEFAULT_MAX_ATTEMPTS,
    max_age: Annotated[
        str, typer.Option(help="Batches older than this are failed.")
    ] = format_duration(DEFAULT_MAX_AGE),
    as_json: JsonOpt = False,
) -> None:
    """Apply the coordinator's stall rules now (what its /check-stalled does).

    A batch idle for IDLE has its open items published again (to the batch's request topic)
    until each was sent MAX_ATTEMPTS times; then it is closed partial, each missing item
    recorded with why. Stalled publishing becomes publish_failed; batches older than MAX_AGE
    are failed. With --dry-run, exits 2 when it would act on any batch.
    """
    policy = StallPolicy(
        idle_window=parse_duration(idle),
        max_attempts=max_attempts,
        max_age=parse_duration(max_age),
    )
    try:
        store = _store(as_json)
        send = None if dry_run else _sender(_project(as_json))
        actions = store.check_stalled(policy, send=send, dry_run=dry_run)
    except _google_errors() as exc:
        raise fail(f"Firestore or Pub/Sub: {exc}", as_json=as_json) from None
    rows = [a.to_dict() for a in actions]
    if as_json:
        emit({"dry_run": dry_run, "actions": rows}, as_json=True)
    elif not rows:
        console.print("No stalled batch.")
    else:
        verb = "would" if dry_run else "did"
        for a in rows:
            console.print(
                f"{a['batch_id']}: {verb} {a['action']} ({a['percent']}%): {a['reason']}",
                highlight=False,
                markup=False,
            )
    if dry_run and rows:
        raise typer.Exit(code=ExitCode.CHANGES)


@app.command("force-complete")
def force_complete(
    batch_id: Annotated[str, typer.Argument(help="The batch to complete.")],
    reason: Annotated[str, typer.Option(help="Why (recorded on the batch).")],
    as_json: JsonOpt = False,
) -> None:
    """Close an active batch now: its open items are recorded missing (state partial, or
    completed when none was open)."""
    from shared.batch_model import BatchNotFound, InvalidBatchId

    if not reason.strip():
        raise typer.BadParameter("--reason must not be empty")
    try:
        result = _store(as_json).finish(batch_id, "complete", f"forced by operator: {reason}")
    except (BatchNotFound, InvalidBatchId) as exc:
        raise fail(str(exc), as_json=as_json) from None
    except _google_errors() as exc:
        raise fail(f"Firestore: {exc}", as_json=as_json) from None
    if not result.applied:
        raise fail(f"{batch_id}: {result.reason}", as_json=as_json, data=result.to_dict())
    emit(
        result.to_dict(),
        as_json=as_json,
        human=(
            f"{batch_id}: {result.state} ({result.percent}%), {result.missing_recorded} open "
            f"item(s) recorded missing; reason: {result.reason}"
        ),
    )


@dead_letters_app.command("list")
def dead_letters_list(
    subscription: Annotated[str, typer.Argument(help="Dead-letter subscription (id or path).")],
    limit: Annotated[int, typer.Option(min=1, help="Messages to read at most.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Show what the dead-letter subscription holds, leaving it there."""
    from shared.dead_letters import peek

    try:
        letters = peek(_project(as_json), subscription, limit=limit)
    except _google_errors() as exc:
        raise fail(f"Pub/Sub: {exc}", as_json=as_json) from None
    rows = [d.summary() for d in letters]
    if as_json:
        emit({"subscription": subscription, "count": len(rows), "messages": rows}, as_json=True)
        return
    console.print(
        f"{len(rows)} message(s) in {subscription}" + (" (limit)" if len(rows) >= limit else ""),
        highlight=False,
    )
    for r in rows:
        attrs = " ".join(f"{k}={v}" for k, v in sorted(r["attributes"].items()))
        console.print(
            f"  {r['message_id']}  {r['publish_time']}  deliveries={r['delivery_count']}  "
            f"from={r['source_subscription']}  {attrs}",
            highlight=False,
            markup=False,
        )


@dead_letters_app.command("replay")
def dead_letters_replay(
    subscription: Annotated[str, typer.Argument(help="Dead-letter subscription (id or path).")],
    limit: Annotated[int, typer.Option(min=1, help="Messages to replay at most.")] = 100,
    topic: Annotated[
        str | None,
        typer.Option(help="Publish here instead of the source subscription's topic."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, publish nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Republish dead letters to their source topic, then ack them (once the cause is fixed).

    Each message is acknowledged only after its publish succeeded; one that fails stays in the
    dead-letter subscription and the command exits 1.
    """
    from shared.dead_letters import replay

    try:
        result = replay(_project(as_json), subscription, limit=limit, topic=topic, dry_run=dry_run)
    except _google_errors() as exc:
        raise fail(f"Pub/Sub: {exc}", as_json=as_json) from None
    data: dict[str, Any] = {"subscription": subscription, "dry_run": dry_run, **result.to_dict()}
    if result.failed:
        raise fail(
            f"{len(result.failed)} message(s) not replayed: "
            + "; ".join(f"{f['message_id']}: {f['error']}" for f in result.failed[:5]),
            as_json=as_json,
            data=data,
        )
    verb = "would replay" if dry_run else "replayed"
    emit(
        data,
        as_json=as_json,
        human=f"{verb} {len(result.replayed)} message(s) from {subscription}"
        + "".join(f"\n  {r['message_id']} -> {r['topic']}" for r in result.replayed),
    )


def main() -> None:
    run_app(app, prog_name="batches")


if __name__ == "__main__":
    main()


__all__ = ["app", "main", "parse_duration"]
