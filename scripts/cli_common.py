"""What every CLI of the project shares: the exit-code table, running a typer app, output.

The exit codes are a contract CI branches on (documented in the README's "Exit codes" table):

====  ==========  =============================================================
code  name        meaning
====  ==========  =============================================================
0     OK          success; for plan/drift commands: no changes
1     ERROR       failure (Firestore unreachable, bad credentials, a bug, ...)
2     CHANGES     changes or drift found (like ``terraform plan -detailed-exitcode``)
3     LOCK_HELD   the deploy lock is held by someone else, or this holder lost it
64    USAGE       bad command line (unknown option, bad value); EX_USAGE of sysexits.h
====  ==========  =============================================================

click exits 2 on a usage error, which CI would read as "drift found": apps made by
:func:`make_app` and run by :func:`run_app` exit 64 instead, so a typo is never taken for drift.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

__all__ = [
    "ExitCode",
    "EXIT_CODES_HELP",
    "UsageExitGroup",
    "make_app",
    "run_app",
    "usage_error",
    "fail",
    "emit",
    "console",
    "err_console",
]


class ExitCode(IntEnum):
    """The one exit-code table of all the project's CLIs."""

    OK = 0
    ERROR = 1
    CHANGES = 2
    LOCK_HELD = 3
    USAGE = 64


#: Ready-made epilog for ``typer.Typer(epilog=...)`` / ``--help``.
EXIT_CODES_HELP = (
    "[b]Exit codes[/b]: 0 ok · 1 error · 2 changes/drift found · "
    "3 lock held by someone else (or lost) · 64 usage error"
)

# typer >= 0.20 vendors its own click (typer._click); find its exception classes through the
# public typer.BadParameter so this works with either.
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

console = Console()
err_console = Console(stderr=True)


class UsageExitGroup(TyperGroup):
    """A typer group whose usage errors exit 64 (not click's 2), also under ``CliRunner``.

    Usage errors are raised while parsing the group's or a sub-command's arguments
    (``make_context``) and by ``typer.BadParameter`` inside a command (``invoke``).
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except _UsageError as exc:
            exc.exit_code = int(ExitCode.USAGE)  # type: ignore[attr-defined]
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageError as exc:
            exc.exit_code = int(ExitCode.USAGE)  # type: ignore[attr-defined]
            raise


def make_app(**kwargs: Any) -> typer.Typer:
    """A ``typer.Typer`` with the project's conventions: rich help, the exit-code epilog,
    usage errors exiting 64, no shell-completion options, no locals in tracebacks."""
    kwargs.setdefault("rich_markup_mode", "rich")
    kwargs.setdefault("epilog", EXIT_CODES_HELP)
    kwargs.setdefault("add_completion", False)
    kwargs.setdefault("pretty_exceptions_show_locals", False)
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(cls=UsageExitGroup, **kwargs)


def run_app(
    app: typer.Typer, args: Sequence[str] | None = None, *, prog_name: str | None = None
) -> NoReturn:
    """Run a typer app and exit with its code; click usage errors exit 64, never 2.

    The console-script entry point: ``def main() -> None: run_app(app)``. Works for apps not
    made by :func:`make_app` too (a single-command app, for instance). Exits with
    :attr:`ExitCode.ERROR` on Ctrl-C outside a command that handles it.
    """
    command = typer.main.get_command(app)
    try:
        rv = command.main(
            args=list(args) if args is not None else None,
            prog_name=prog_name,
            standalone_mode=False,
        )
    except _UsageError as exc:
        _show_click_error(exc)
        raise SystemExit(int(ExitCode.USAGE)) from None
    except _ClickException as exc:
        _show_click_error(exc)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        err_console.print("[red]Aborted.[/red]")
        raise SystemExit(int(ExitCode.ERROR)) from None
    # standalone_mode=False returns the Exit code raised by the command, or its return value.
    raise SystemExit(rv if isinstance(rv, int) else int(ExitCode.OK))


def _show_click_error(exc: Any) -> None:
    try:
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
    except Exception:  # pragma: no cover - typer without rich
        exc.show()


def usage_error(message: str) -> typer.Exit:
    """Report a usage error found after parsing (e.g. two options that exclude each other)."""
    err_console.print(f"[red]Usage error:[/red] {message}")
    return typer.Exit(code=ExitCode.USAGE)


def fail(
    message: str,
    code: ExitCode = ExitCode.ERROR,
    *,
    as_json: bool = False,
    data: Mapping[str, Any] | None = None,
) -> typer.Exit:
    """Print an error (JSON on stdout with ``--json``, else red on stderr); return the Exit.

    Use as ``raise fail("...", ExitCode.LOCK_HELD, as_json=json_out) from None``.
    """
    if as_json:
        payload = {"ok": False, "exit_code": int(code), "error": message}
        if data:
            payload.update(data)
        print(json.dumps(payload, default=str, sort_keys=True))
    else:
        # Escaped: messages quote config and values ("[secret]", "[default]") that rich would
        # otherwise take for markup and drop.
        err_console.print(f"[red]Error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code=int(code))


def emit(data: Mapping[str, Any], *, as_json: bool, human: str | None = None) -> None:
    """Print a result: one JSON object with ``--json``, else the human text (rich markup)."""
    if as_json:
        print(json.dumps({"ok": True, **data}, default=str, sort_keys=True))
    elif human is not None:
        console.print(human, highlight=False)
