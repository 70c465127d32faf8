"""``deploy-lock``: the operator CLI of the per-stack deploy lock (library: scripts.deploylock)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from scripts.cli_common import (
    EXIT_CODES_HELP,
    console,
    emit,
    err_console,
    fail,
    make_app,
    parse_duration,
    run_app,
)
from scripts.deploylock import (
    CLI_MIN_TTL,
    DATABASE_ENV,
    DEFAULT_DATABASE,
    DEFAULT_GRACE,
    DEFAULT_TTL,
    HOLDER_SECRET_ENV,
    DeployLock,
    DeployLockError,
    HolderInfo,
    InvalidLockConfig,
    LockHeld,
    LockUnavailable,
    event_row,
    exit_code,
    once_per_holder,
    open_lock,
    release_token,
    renew_token,
    run_locked,
    validate_grace,
    validate_stack,
)

app = make_app(
    name="deploy-lock",
    help=(
        "The per-stack deploy lock in Firestore: one deploy of a stack at a time.\n\n"
        "A lease expires after [b]--ttl[/b] unless renewed (by [b]run[/b]'s heartbeat, or "
        "[b]renew[/b]), judged by Firestore's clock; every grant has a fencing token greater "
        "than all earlier ones, and a holder secret that only its acquirer knows ([b]renew[/b] "
        "and [b]release[/b] need it). [b]run[/b] stops its command before the lease could "
        "pass to anyone else. Every acquire, renewal, release, takeover of an expired lease, "
        "force-release and refused attempt is kept as history ([b]status[/b]).\n\n"
        "Talks to the emulator when FIRESTORE_EMULATOR_HOST is set, else to Firestore with "
        "Application Default Credentials."
    ),
)


def _parse_ttl(value: str) -> timedelta:
    ttl = parse_duration(value)
    if ttl < CLI_MIN_TTL:
        raise typer.BadParameter(
            f"TTL must be at least {CLI_MIN_TTL.total_seconds():g} s, got {ttl.total_seconds():g} s"
        )
    return ttl


def _check_stack(value: str) -> str:
    try:
        return validate_stack(value)
    except InvalidLockConfig as exc:
        raise typer.BadParameter(str(exc)) from None


Stack = Annotated[
    str,
    typer.Option(
        "--stack",
        "-s",
        help="Stack to lock (prod, staging, ...).",
        envvar="DEPLOY_LOCK_STACK",
        callback=_check_stack,
        show_default=False,
    ),
]
Project = Annotated[
    str | None,
    typer.Option(
        help="Google Cloud project of the Firestore database. Default: GOOGLE_CLOUD_PROJECT, "
        "else the credentials' project.",
        envvar="GOOGLE_CLOUD_PROJECT",
        show_default=False,
    ),
]
Database = Annotated[
    str,
    typer.Option(
        help="Firestore database id (the bootstrap program creates it; shared with `deploy`).",
        envvar=DATABASE_ENV,
    ),
]


def _check_ttl(value: str) -> str:
    _parse_ttl(value)
    return value


Ttl = Annotated[
    str,
    typer.Option(
        callback=_check_ttl,
        help=f"Lease TTL: seconds, or 90s, 10m, 1h (at least {CLI_MIN_TTL.total_seconds():g} s).",
    ),
]
Wait = Annotated[
    float,
    typer.Option(
        min=0,
        help="Seconds to wait for the current holder (polling with backoff and jitter, "
        "showing who holds it); 0 fails at once.",
    ),
]
Reason = Annotated[
    str | None, typer.Option(help="Why you lock (shown to anyone who finds it held).")
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
Token = Annotated[
    int, typer.Option(min=1, help="Fencing token printed by acquire.", show_default=False)
]
HolderSecret = Annotated[
    str | None,
    typer.Option(
        "--holder-secret",
        envvar=HOLDER_SECRET_ENV,
        help=f"The holder secret printed by acquire (or ${HOLDER_SECRET_ENV}). Without it the "
        "attempt is refused (exit 3) and recorded.",
        show_default=False,
        show_envvar=False,
    ),
]
_DEFAULT_TTL_TEXT = f"{int(DEFAULT_TTL.total_seconds())}s"


def _lock(project: str | None, database: str, stack: str, ttl: str, as_json: bool) -> DeployLock:
    try:
        return open_lock(project=project, database=database, stack=stack, ttl=_parse_ttl(ttl))
    except LockUnavailable as exc:
        raise fail(str(exc), as_json=as_json) from None


def _on_wait(as_json: bool) -> Any:
    return once_per_holder(
        lambda status: err_console.print(f"waiting: {status.describe()}", highlight=False)
    )


def _domain_error(exc: DeployLockError, as_json: bool) -> typer.Exit:
    data = {"status": exc.status.to_dict()} if isinstance(exc, LockHeld) else None
    return fail(str(exc), exit_code(exc), as_json=as_json, data=data)


@app.command(
    help=(
        "Acquire the lock; print its fencing token and holder secret.\n\n"
        "Keep the secret: [b]renew[/b] and [b]release[/b] need it (nothing else shows it). "
        "Exits 3, naming the holder, if someone else holds it (after --wait)."
    ),
    short_help="Acquire the lock; print its fencing token and holder secret.",
    epilog=EXIT_CODES_HELP,
)
def acquire(
    stack: Stack,
    project: Project = None,
    database: Database = DEFAULT_DATABASE,
    ttl: Ttl = _DEFAULT_TTL_TEXT,
    wait: Wait = 0,
    reason: Reason = None,
    json_out: Json = False,
) -> None:
    lock = _lock(project, database, stack, ttl, json_out)
    try:
        lease = lock.acquire(
            HolderInfo.detect(reason=reason), wait=wait, on_wait=_on_wait(json_out)
        )
    except DeployLockError as exc:
        raise _domain_error(exc, json_out) from None
    emit(
        {"lease": lease.to_dict(), "holder_secret": lease.holder_secret},
        as_json=json_out,
        human=f"acquired the lock of stack [b]{stack}[/b]: token [b]{lease.token}[/b], "
        f"expires {lease.expires_at:%Y-%m-%d %H:%M:%S} UTC unless renewed.\n"
        f"holder secret (keep it; renew and release need it):\n"
        f"  export {HOLDER_SECRET_ENV}={lease.holder_secret}\n"
        f"renew:   deploy-lock renew --stack {stack} --token {lease.token}\n"
        f"release: deploy-lock release --stack {stack} --token {lease.token}",
    )


def _release(lock: DeployLock, stack: str, token: int, secret: str | None) -> tuple[Any, str]:
    released = release_token(lock, token, secret)
    note = "released" if released else "was already released"
    return (
        {"stack": stack, "token": token, "released": released},
        f"lock of stack [b]{stack}[/b] (token {token}) {note}",
    )


def _renew(lock: DeployLock, stack: str, token: int, secret: str | None) -> tuple[Any, str]:
    lease = renew_token(lock, token, secret)
    return (
        {"lease": lease.to_dict()},
        f"renewed the lock of stack [b]{stack}[/b] (token {token}): expires "
        f"{lease.expires_at:%Y-%m-%d %H:%M:%S} UTC",
    )


def _lease_command(
    use: Callable[[DeployLock, str, int, str | None], tuple[Any, str]],
) -> Callable[..., None]:
    """A command acting on the lease with ``--token``, proven by its holder secret: ``use``
    returns (the JSON object, the human line); the lock's errors map to the exit codes."""

    def command(
        stack: Stack,
        token: Token,
        holder_secret: HolderSecret = None,
        project: Project = None,
        database: Database = DEFAULT_DATABASE,
        json_out: Json = False,
    ) -> None:
        lock = _lock(project, database, stack, _DEFAULT_TTL_TEXT, json_out)
        try:
            data, human = use(lock, stack, token, holder_secret)
        except DeployLockError as exc:
            raise _domain_error(exc, json_out) from None
        emit(data, as_json=json_out, human=human)

    return command


app.command(
    "release",
    help=(
        "Release the lease with this fencing token, proving it with its holder secret.\n\n"
        "Exits 3 without the right secret (refused and recorded), or if it is no longer the "
        "current lease (taken over after expiring, or force-released); releasing twice is "
        "harmless."
    ),
    short_help="Release the lease with this fencing token and holder secret.",
    epilog=EXIT_CODES_HELP,
)(_lease_command(_release))
app.command(
    "renew",
    help=(
        "Extend the lease with this fencing token by its TTL (needs its holder secret).\n\n"
        "Exits 3 without the right secret (refused and recorded), or if it is no longer the "
        "current lease."
    ),
    short_help="Extend the lease with this fencing token by its TTL.",
    epilog=EXIT_CODES_HELP,
)(_lease_command(_renew))


@app.command(
    help="Show the current holder (or that the lock is free) and the last events.",
    short_help="Show the current holder (or that the lock is free) and the last events.",
    epilog=EXIT_CODES_HELP,
)
def status(
    stack: Stack,
    project: Project = None,
    database: Database = DEFAULT_DATABASE,
    limit: Annotated[int, typer.Option(min=1, max=500, help="History events to show.")] = 10,
    json_out: Json = False,
) -> None:
    lock = _lock(project, database, stack, _DEFAULT_TTL_TEXT, json_out)
    try:
        st = lock.status()
        events = lock.history(limit)
    except DeployLockError as exc:
        raise _domain_error(exc, json_out) from None
    if json_out:
        emit({"status": st.to_dict(), "events": [e.to_dict() for e in events]}, as_json=True)
        return
    console.print(st.describe(), highlight=False)
    if not events:
        return
    table = Table("seq", "at (UTC)", "event", "token", "holder", "details", box=None)
    for ev in events:
        table.add_row(*event_row(ev))
    console.print(table)


@app.command(
    "force-release",
    help=(
        "Take the lock from whoever holds it; --reason is required and recorded.\n\n"
        "Prints who is displaced. A live lease is revoked: its holder is told within seconds "
        "and stops its command (its renew or release exits 3); the lock is free once it has "
        "stopped, or when its lease expires if it is gone, so the next acquire never overlaps "
        "the old command (use acquire --wait). An expired lease is removed at once. [b]--now[/b] "
        "frees it at once, only for a holder known to be gone."
    ),
    short_help="Take the lock from whoever holds it; --reason is required and recorded.",
    epilog=EXIT_CODES_HELP,
)
def force_release(
    stack: Stack,
    reason: Annotated[str, typer.Option(help="Why (recorded, and shown to the displaced holder).")],
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="Free the lock at once, without waiting for the holder to stop or its lease to "
            "expire. Only for a holder known to be gone (its machine is off): a command still "
            "running would overlap the next holder until its safe time. Recorded.",
        ),
    ] = False,
    project: Project = None,
    database: Database = DEFAULT_DATABASE,
    json_out: Json = False,
) -> None:
    if not reason.strip():
        raise typer.BadParameter("must not be empty", param_hint="--reason")
    lock = _lock(project, database, stack, _DEFAULT_TTL_TEXT, json_out)
    try:
        displaced = lock.force_release(reason=reason, now=now)
    except DeployLockError as exc:
        raise _domain_error(exc, json_out) from None
    if displaced is None:
        emit(
            {"stack": stack, "displaced": None},
            as_json=json_out,
            human=f"lock of stack [b]{stack}[/b] was not held: nothing to release",
        )
        return
    assert displaced.holder is not None
    if now and not displaced.expired:
        human = (
            f"force-released stack [b]{stack}[/b] at once: removed lease {displaced.token} of "
            f"{displaced.holder.describe()}; the lock is free (its command, if it still runs, "
            f"may until {displaced.expires_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
    elif displaced.expired:
        human = (
            f"force-released stack [b]{stack}[/b]: removed the expired lease "
            f"{displaced.token} of {displaced.holder.describe()}; the lock is free"
        )
    else:
        human = (
            f"force-released stack [b]{stack}[/b]: revoked lease {displaced.token} of "
            f"{displaced.holder.describe()}; the lock is free once it has stopped, at the "
            f"latest {displaced.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    emit({"stack": stack, "displaced": displaced.to_dict()}, as_json=json_out, human=human)


@app.command(
    context_settings={"allow_interspersed_args": False},
    help=(
        "Acquire, run the command after -- with a heartbeat, release when it ends.\n\n"
        "A watchdog process keeps the command within the lease: it gets SIGINT --grace before "
        "the lease's safe time and SIGKILL at it unless a renewal confirms the lease first, and "
        "at once when the lease is lost or force-released or this process dies (also SIGKILL "
        "or SIGSTOP). Releases on every way out; SIGINT, SIGTERM and SIGHUP are forwarded to the "
        "command (SIGKILL after --grace). Once the command runs, exits with its own code (128+N "
        "if killed by signal N), or 3 if it was stopped to stay within the lease, or the lease "
        "was lost. Exits 3 if the lock is held."
    ),
    short_help="Acquire, run the command after -- with a heartbeat, release when it ends.",
    epilog=EXIT_CODES_HELP,
)
def run(
    stack: Stack,
    command: Annotated[list[str], typer.Argument(help="The command, after --.")],
    project: Project = None,
    database: Database = DEFAULT_DATABASE,
    ttl: Ttl = _DEFAULT_TTL_TEXT,
    wait: Wait = 0,
    reason: Reason = None,
    grace: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Seconds the command gets to exit after SIGINT/SIGTERM before SIGKILL; spent "
            f"inside the lease, so at most TTL/2 - margin. Default {DEFAULT_GRACE.seconds} s, "
            "or less if the TTL cannot hold it.",
            show_default=False,
        ),
    ] = None,
    json_out: Json = False,
) -> None:
    try:
        grace_td = validate_grace(grace, _parse_ttl(ttl))
    except InvalidLockConfig as exc:
        raise typer.BadParameter(str(exc), param_hint="--grace") from None
    lock = _lock(project, database, stack, ttl, json_out)

    def log(msg: str) -> None:
        err_console.print(f"deploy-lock: {msg}", highlight=False)

    try:
        code = run_locked(
            lock,
            command,
            holder=HolderInfo.detect(reason=reason, command=" ".join(command)),
            wait=wait,
            grace=grace_td,
            on_wait=_on_wait(json_out),
            log=log,
        )
    except DeployLockError as exc:
        raise _domain_error(exc, json_out) from None
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point (``deploy-lock``)."""
    run_app(app, prog_name="deploy-lock")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = ["app", "main"]
