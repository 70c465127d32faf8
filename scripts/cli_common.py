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

Help texts render literally: typer reads them as rich markup, where ``[secret]`` would be a
style tag and vanish. :func:`literal_help` escapes every bracket except the few markup tags
help texts use on purpose (:data:`HELP_MARKUP`: ``[b]``, ``[i]``, ``[dim]``); apps made by
:func:`make_app` apply it to every command, option and epilog, so a docstring says
``Config secrets are shown as [secret].`` and the help prints exactly that.

:func:`lazy_group` gives a group sub-commands whose modules are imported when they run, not
when ``--help`` lists them (``platform``: the deploy tooling loads Google's clients).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from enum import IntEnum
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

__all__ = [
    "ExitCode",
    "EXIT_CODES_HELP",
    "HELP_MARKUP",
    "UsageExitGroup",
    "lazy_group",
    "literal_help",
    "make_app",
    "parse_duration",
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


#: The rich markup tags help texts may use on purpose; every other ``[...]`` is literal.
HELP_MARKUP = frozenset({"b", "bold", "i", "italic", "dim"})
_LITERAL_BRACKET = re.compile(r"(?<!\\)\[(?!/?(?:" + "|".join(sorted(HELP_MARKUP)) + r")\]|/\])")


def _literal(text: str | None) -> str | None:
    return _LITERAL_BRACKET.sub(r"\\[", text) if text else text


def _reflowed(text: str | None) -> str | None:
    """Each paragraph on one line, for the terminal to wrap (typer keeps a docstring's line
    breaks after the first paragraph, which wrap raggedly at 80 columns); a paragraph that
    starts with click's ``\\b`` keeps its lines."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split("\n")) for p in paragraphs)


def literal_help(command: Any) -> Any:
    """Escape the rich markup in a click command's help, epilog and parameter help (and its
    sub-commands'), except :data:`HELP_MARKUP`, and put each help paragraph on one line;
    idempotent. Returns the command."""
    command.help = _literal(_reflowed(command.help))
    command.short_help = _literal(command.short_help)
    command.epilog = _literal(_reflowed(command.epilog))
    for param in getattr(command, "params", ()):
        if getattr(param, "help", None):
            param.help = _literal(param.help)
    for sub in (getattr(command, "commands", None) or {}).values():
        literal_help(sub)
    return command


class UsageExitGroup(TyperGroup):
    """A typer group whose usage errors exit 64 (not click's 2), also under ``CliRunner``.

    Usage errors are raised while parsing the group's or a sub-command's arguments
    (``make_context``) and by ``typer.BadParameter`` inside a command (``invoke``). Its help
    texts, and its commands', render literally (:func:`literal_help`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        literal_help(self)

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


def lazy_group(
    commands: Mapping[str, str], load: Callable[[str], typer.Typer]
) -> type[UsageExitGroup]:
    """A :class:`UsageExitGroup` class (``make_app(cls=...)``) with ``commands`` (name -> its
    one-line help) as sub-commands, each loaded by ``load(name)`` on first use: the group's
    ``--help`` lists them without importing them."""

    class LazyGroup(UsageExitGroup):
        def list_commands(self, ctx: Any) -> list[str]:
            return [*super().list_commands(ctx), *(n for n in commands if n not in self.commands)]

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            found = super().get_command(ctx, cmd_name)
            if found is None and cmd_name in commands:
                # Listed in --help without importing its module: a stand-in with its help.
                return typer.main.TyperCommand(cmd_name, help=_literal(commands[cmd_name]))
            return found

        def resolve_command(self, ctx: Any, args: list[str]) -> Any:
            name = args[0] if args else None
            if name in commands and name not in self.commands:
                self.add_command(literal_help(typer.main.get_command(load(name))), name)
            return super().resolve_command(ctx, args)

    return LazyGroup


def make_app(**kwargs: Any) -> typer.Typer:
    """A ``typer.Typer`` with the project's conventions: rich help, the exit-code epilog,
    usage errors exiting 64, no shell-completion options, no locals in tracebacks."""
    kwargs.setdefault("rich_markup_mode", "rich")
    kwargs.setdefault("epilog", EXIT_CODES_HELP)
    kwargs.setdefault("add_completion", False)
    kwargs.setdefault("pretty_exceptions_show_locals", False)
    kwargs.setdefault("no_args_is_help", True)
    kwargs.setdefault("cls", UsageExitGroup)
    return typer.Typer(**kwargs)


def run_app(
    app: typer.Typer, args: Sequence[str] | None = None, *, prog_name: str | None = None
) -> NoReturn:
    """Run a typer app and exit with its code; click usage errors exit 64, never 2.

    The console-script entry point: ``def main() -> None: run_app(app)``. Works for apps not
    made by :func:`make_app` too (a single-command app, for instance). Exits with
    :attr:`ExitCode.ERROR` on Ctrl-C outside a command that handles it.
    """
    command = literal_help(typer.main.get_command(app))
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


_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """The one duration grammar of the project's command lines: seconds (``600``, ``1.5``) or
    units (``90s``, ``10m``, ``1h30m``, ``10m00s``, ``250ms``, ``2d``).

    Raises ``typer.BadParameter`` naming the grammar, so an option's callback can use it as is.
    """
    value = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return timedelta(seconds=float(value))
    if not _DURATION.fullmatch(value):
        raise typer.BadParameter(
            f"{text!r} is not a duration: seconds (600) or with units (90s, 10m, 1h30m)"
        )
    return timedelta(
        seconds=sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value))
    )


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
