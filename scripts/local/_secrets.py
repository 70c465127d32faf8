"""The local platform's secret values: ``.local/secrets.yaml``, a YAML mapping secret id -> value.

Generated where absent, git-ignored (``.local/``), and never world-readable: the file is forced
to mode 0600 whenever the tool reads or writes it (a file someone created 0644 is tightened,
not trusted), and written atomically (a new file created 0600, then renamed over the old one),
so no other user ever sees a value, even half-written.

Failure semantics: :class:`SecretsFileError` (a :class:`PlatformError`) with one line naming
the file, the line and the fix, and never the file's content: a malformed file's YAML error
would quote the line it failed on, which is a secret value.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import yaml

from scripts.local._errors import PlatformError

__all__ = ["SecretsFileError", "load_secrets", "SECRETS_MODE", "SECRET_BYTES"]

#: Owner read/write only.
SECRETS_MODE = 0o600
#: Entropy of a generated value (token_urlsafe: 32 characters).
SECRET_BYTES = 24
_HEADER = "# Local secret values (generated; git-ignored). Secret id -> value.\n"


class SecretsFileError(PlatformError):
    """The secrets file cannot be used; the message names it and the fix, never a value."""


def load_secrets(path: Path, needed: set[str]) -> dict[str, str]:
    """Secret id -> value from ``path``; the ``needed`` ids missing there are generated and
    saved. Raises :class:`SecretsFileError` for a file that cannot be read, is not YAML, or is
    not a mapping of ids to string values (the message never holds a value)."""
    data = _read(path, needed)
    missing = sorted(needed - set(data))
    if missing:
        for name in missing:
            data[name] = secrets.token_urlsafe(SECRET_BYTES)
        _write(path, data)
    return data


def _fix() -> str:
    return "fix it, or delete it and a new one is generated"


def _restrict(path: Path) -> None:
    """Mode 0600, whatever it was: other users must never read a secret value."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != SECRETS_MODE:
            os.chmod(path, SECRETS_MODE)
    except OSError as exc:
        raise SecretsFileError(
            f"{path}: cannot be restricted to mode 0600 ({exc.strerror or type(exc).__name__}):"
            f" run `chmod 600 {path}`"
        ) from None


def _read(path: Path, known_ids: set[str]) -> dict[str, str]:
    if not path.exists():
        return {}
    _restrict(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SecretsFileError(f"{path}: not UTF-8 text; {_fix()}") from None
    except OSError as exc:
        raise SecretsFileError(
            f"{path}: cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The parser's own message quotes the offending line: say where, never what.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SecretsFileError(f"{path}: not valid YAML{where}; {_fix()}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SecretsFileError(
            f"{path}: not a mapping of secret id to value (the whole file is one "
            f"{type(loaded).__name__}); {_fix()}"
        )
    data: dict[str, str] = {}
    for i, (key, value) in enumerate(loaded.items(), start=1):
        if not isinstance(key, str) or not isinstance(value, str):
            # The key is named only if it is an id the stack declares (a value pasted as a key
            # must not be echoed); the value never is.
            what = f"secret '{key}'" if key in known_ids else f"entry {i}"
            raise SecretsFileError(
                f"{path}: {what} is not 'id: string value' (quote the value); {_fix()}"
            )
        data[key] = value
    return data


def _write(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRETS_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), SECRETS_MODE)  # O_CREAT's mode skips a file left behind
            f.write(_HEADER + yaml.safe_dump(dict(sorted(data.items())), sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
