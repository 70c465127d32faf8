"""The operator's secrets file (``.local/secrets.yaml``): never shown, never world-readable.

Unit-level on ``scripts.local._secrets`` (no emulators), plus ``platform local up --json`` on a
malformed file, which stops before anything starts.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts.cli_common import ExitCode
from scripts.local import PlatformError, SecretsFileError, load_secrets
from scripts.local_cli import app

#: A value that must never appear in any message.
VALUE = "s3cr3t-Value-that-must-not-leak"
NEEDED = {"coordinator-api-key"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write(path: Path, text: str, file_mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, file_mode)
    return path


def test_a_new_file_is_generated_0600(tmp_path: Path) -> None:
    path = tmp_path / ".local" / "secrets.yaml"
    values = load_secrets(path, NEEDED)
    assert set(values) == NEEDED and len(values["coordinator-api-key"]) >= 32
    assert mode(path) == 0o600
    assert load_secrets(path, NEEDED) == values, "read back unchanged"
    assert not list(path.parent.glob(".*.tmp")), "no temporary file left"


def test_a_world_readable_file_is_forced_to_0600_when_written(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.yaml", f"other-secret: {VALUE}\n")
    values = load_secrets(path, NEEDED | {"other-secret"})
    assert values["other-secret"] == VALUE, "existing values kept"
    assert mode(path) == 0o600


def test_a_world_readable_file_is_forced_to_0600_when_only_read(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.yaml", f"coordinator-api-key: {VALUE}\n", 0o664)
    assert load_secrets(path, NEEDED) == {"coordinator-api-key": VALUE}
    assert mode(path) == 0o600


def test_a_stale_temporary_file_does_not_widen_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    write(tmp_path / ".secrets.yaml.tmp", "left behind\n", 0o666)
    load_secrets(path, NEEDED)
    assert mode(path) == 0o600


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (f"coordinator-api-key: {VALUE}: oops\n", "not valid YAML at line 1, column"),
        (f"coordinator-api-key: [{VALUE}\n", "not valid YAML at line 2"),
        (f"coordinator-api-key:\n\t{VALUE}\n", "not valid YAML at line 2"),
        (f"{VALUE}\n", "not a mapping of secret id to value (the whole file is one str)"),
        (f"- {VALUE}\n", "the whole file is one list"),
        (f"coordinator-api-key: [{VALUE}]\n", "secret 'coordinator-api-key' is not 'id: string"),
        (f"{VALUE}: [x]\n", "entry 1 is not 'id: string value'"),
        ("coordinator-api-key: 12345\n", "quote the value"),
        (b"coordinator-api-key: \xff\xfe\n", "not UTF-8 text"),
    ],
)
def test_a_malformed_file_is_one_line_naming_the_file_never_the_value(
    tmp_path: Path, text: str | bytes, fragment: str
) -> None:
    path = tmp_path / "secrets.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        write(path, text)
    with pytest.raises(SecretsFileError) as info:
        load_secrets(path, NEEDED)
    message = str(info.value)
    assert isinstance(info.value, PlatformError)
    assert message.startswith(f"{path}: ") and fragment in message, message
    assert "\n" not in message, message
    assert VALUE not in message and "12345" not in message, message
    err = info.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), (
        "no chained YAML error (its text quotes the line)"
    )
    assert mode(path) == 0o600, "tightened even when refused"


def test_platform_local_up_json_on_a_malformed_file(tmp_path: Path) -> None:
    """Today's incident: a traceback quoting the secret value. Now one JSON line, exit 1, and
    nothing started (the file is read before the emulators)."""
    write(tmp_path / "secrets.yaml", f"coordinator-api-key: {VALUE}: oops\n")
    result = CliRunner().invoke(app, ["up", "--state-dir", str(tmp_path), "--json"])
    assert result.exit_code == ExitCode.ERROR, result.output
    assert VALUE not in result.output
    assert "Traceback" not in result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    payload = json.loads(lines[0])
    assert payload["ok"] is False
    assert payload["error"].startswith(f"{tmp_path / 'secrets.yaml'}: not valid YAML at line 1")
    assert not (tmp_path / "state.json").exists(), "nothing was started"
