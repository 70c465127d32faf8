"""The deploy-lock CLI: in-process (CliRunner) for options and output, subprocesses for signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts.cli_common import ExitCode
from scripts.deploy_lock_cli import app
from scripts.deploylock import HolderInfo
from tests.polling import wait_for

from .conftest import DEPLOY_LOCK, REPO

runner = CliRunner()
COMMANDS = ["acquire", "release", "renew", "status", "force-release", "run"]


def invoke(args: list[str], env: dict[str, str] | None = None):
    return runner.invoke(app, args, env=env, terminal_width=200)


def expect(result, code: int):
    out = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == code, f"exit {result.exit_code} != {code}:\n{out}"
    return out


def dl(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DEPLOY_LOCK, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def expect_proc(proc: subprocess.CompletedProcess, code: int) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode} != {code}:\n{out}"
    return out


# -- help and usage errors (no Firestore needed) -----------------------------------------------


def test_help_documents_every_command_and_exit_code():
    out = expect(invoke(["--help"]), 0)
    for command in COMMANDS:
        assert command in out
    for code in ("0 ok", "1 error", "2 changes/drift found", "3 lock held", "64 usage error"):
        assert code in out, f"exit code {code!r} missing from --help:\n{out}"


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command):
    out = expect(invoke([command, "--help"]), 0)
    assert "--stack" in out and "Exit codes" in out


@pytest.mark.parametrize(
    "args",
    [
        ["acquire", "--stack", "prod", "--ttl", "5"],  # below the 10 s minimum
        ["acquire", "--stack", "prod", "--ttl", "0"],
        ["acquire", "--stack", "prod", "--ttl", "-5"],
        ["acquire", "--stack", "prod", "--ttl", "ten minutes"],
        ["acquire", "--stack", "Prod/EU"],
        ["acquire", "--stack", "prod", "--wait", "-1"],
        ["acquire"],  # --stack missing
        ["acquire", "--stack", "prod", "--tll", "60"],  # typo
        ["relase", "--stack", "prod"],
        ["release", "--stack", "prod"],  # --token missing
        ["force-release", "--stack", "prod"],  # --reason missing
        ["force-release", "--stack", "prod", "--reason", " "],
        ["run", "--stack", "prod"],  # no command
        # grace larger than the lease can hold (TTL/2 - margin: 4.5 s of a 10 s TTL)
        ["run", "--stack", "prod", "--ttl", "10", "--grace", "5", "--", "true"],
        ["run", "--stack", "prod", "--grace", "271", "--", "true"],  # default TTL 600 s
    ],
)
def test_usage_errors_exit_64_not_2(args):
    out = expect(invoke(args), ExitCode.USAGE)
    assert "Usage" in out or "Error" in out


def test_console_script_maps_usage_error_to_64():
    proc = subprocess.run(
        [*DEPLOY_LOCK, "acquire", "--stack", "prod", "--ttl", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "TTL must be at least 10 s" in expect_proc(proc, 64)


# -- against the emulator -----------------------------------------------------------------------


def test_grace_too_large_names_the_limit():
    out = expect(invoke(["run", "--stack", "prod", "--ttl", "10", "--grace", "5", "--", "true"]),
                 ExitCode.USAGE)  # fmt: skip
    assert "does not fit" in out and "4.5 s" in out, out


@pytest.mark.emulator
def test_acquire_status_renew_release(cli_env):
    out = expect(invoke(["acquire", "--stack", "prod", "--reason", "ship it"], cli_env), 0)
    assert "token 1" in out and "DEPLOY_LOCK_HOLDER_SECRET=" in out
    secret = out.split("DEPLOY_LOCK_HOLDER_SECRET=")[1].split()[0]
    held = expect(invoke(["acquire", "--stack", "prod"], cli_env), ExitCode.LOCK_HELD)
    assert "held by" in held and "ship it" in held and "since" in held
    status = expect(invoke(["status", "--stack", "prod"], cli_env), 0)
    assert "held by" in status and "acquire" in status and secret not in status
    holder_env = {**cli_env, "DEPLOY_LOCK_HOLDER_SECRET": secret}
    expect(invoke(["renew", "--stack", "prod", "--token", "1"], holder_env), 0)
    released = invoke(["release", "--stack", "prod", "--token", "1", "--holder-secret", secret],
                      cli_env)  # fmt: skip
    assert "released" in expect(released, 0)
    again = expect(invoke(["release", "--stack", "prod", "--token", "1"], holder_env), 0)
    assert "already released" in again
    stale = expect(invoke(["renew", "--stack", "prod", "--token", "1"], holder_env), 3)
    assert "already released" in stale


@pytest.mark.emulator
def test_the_token_that_status_prints_cannot_release(cli_env, make_lock):
    lease = make_lock(ttl=60).acquire(HolderInfo(who="alice", host="laptop", pid=7))
    env = {k: v for k, v in cli_env.items() if k != "DEPLOY_LOCK_HOLDER_SECRET"}
    out = expect(invoke(["release", "--stack", "prod", "--token", str(lease.token)], env), 3)
    assert "not the holder" in out and "no holder secret" in out and "force-release" in out
    wrong = invoke(["renew", "--stack", "prod", "--token", "1", "--holder-secret", "guess"], env)
    assert "secret is wrong" in expect(wrong, 3)
    assert make_lock().status().held, "still alice's"
    status = expect(invoke(["status", "--stack", "prod"], env), 0)
    assert "release-refused" in status and "renew-refused" in status, status
    assert "no holder secret given" in status


@pytest.mark.emulator
def test_json_output(cli_env):
    out = expect(invoke(["acquire", "--stack", "prod", "--json"], cli_env), 0)
    acquired = json.loads(out)
    lease = acquired["lease"]
    assert lease["token"] == 1 and lease["holder"]["pid"] == os.getpid()
    assert len(acquired["holder_secret"]) >= 40
    held = json.loads(expect(invoke(["acquire", "--stack", "prod", "--json"], cli_env), 3))
    assert held["ok"] is False and held["exit_code"] == 3
    assert held["status"]["holder"]["pid"] == os.getpid()
    text = expect(invoke(["status", "--stack", "prod", "--json"], cli_env), 0)
    assert acquired["holder_secret"] not in text
    status = json.loads(text)
    assert status["status"]["held"] and [e["event"] for e in status["events"]] == ["acquire"]


@pytest.mark.emulator
def test_force_release_prints_displaced_and_is_recorded(cli_env, make_lock):
    lock = make_lock(ttl=60)
    lease = lock.acquire(HolderInfo(who="alice", host="laptop", pid=7, command="pulumi up"))
    out = expect(
        invoke(["force-release", "--stack", "prod", "--reason", "alice is away"], cli_env), 0
    )
    assert "alice on laptop" in out and "pulumi up" in out and "revoked" in out
    assert "waiting for alice" in expect(invoke(["status", "--stack", "prod"], cli_env), 0)
    # Alice's release (with her secret) acknowledges it: exit 3, and the lock is free.
    stale = expect(invoke(["release", "--stack", "prod", "--token", str(lease.token),
                           "--holder-secret", lease.holder_secret], cli_env), 3)  # fmt: skip
    assert "force-released" in stale and "alice is away" in stale
    status = expect(invoke(["status", "--stack", "prod"], cli_env), 0)
    assert "force-release" in status and "alice is away" in status
    out = expect(invoke(["force-release", "--stack", "prod", "--reason", "x"], cli_env), 0)
    assert "not held" in out
    make_lock(ttl=60).acquire(HolderInfo(who="bob", host="gone", pid=8))
    now = expect(invoke(["force-release", "--stack", "prod", "--reason", "host is off",
                         "--now"], cli_env), 0)  # fmt: skip
    assert "at once" in now and "the lock is free" in now
    assert "(--now): host is off" in expect(invoke(["status", "--stack", "prod"], cli_env), 0)
    assert not make_lock().status().exists


@pytest.mark.emulator
def test_run_exits_with_command_code_and_releases(cli_env, make_lock):
    proc = dl(
        ["run", "--stack", "prod", "--", sys.executable, "-c", "raise SystemExit(7)"], cli_env
    )
    expect_proc(proc, 7)
    lock = make_lock()
    assert [e.event for e in reversed(lock.history(10))] == ["acquire", "release"]
    assert not lock.status().held
    missing = dl(["run", "--stack", "prod", "--", "/nonexistent/cmd"], cli_env)
    assert "cannot run" in expect_proc(missing, 1)
    assert not lock.status().held


@pytest.mark.emulator
def test_two_runs_at_once_second_is_told_who_holds(cli_env, make_lock):
    # The first holds far longer than the second needs to start, however loaded the machine
    # (a 3 s hold once ended before the second process reached its acquire); it is stopped
    # below, which also shows SIGTERM releasing.
    first = subprocess.Popen(
        [*DEPLOY_LOCK, "run", "--stack", "prod", "--reason", "first", "--", "sleep", "60"],
        env=cli_env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lock = make_lock()
    wait_for(lambda: lock.status().held, timeout=20, what="the first run to acquire")
    try:
        second = dl(["run", "--stack", "prod", "--", "sleep", "1"], cli_env)
        out = expect_proc(second, 3)
        assert "held by" in out and "sleep 60" in out and "first" in out, out
        waiting = subprocess.Popen(
            [*DEPLOY_LOCK, "run", "--stack", "prod", "--wait", "60", "--", "true"],
            env=cli_env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # It polls while the first still holds (however long a loaded machine takes to start it).
        seen = _first_line(waiting, 60)
        assert seen.startswith("waiting:"), seen
    finally:
        first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 128 + signal.SIGTERM
    assert waiting.wait(60) == 0
    out = seen + waiting.stderr.read()
    assert "waiting:" in out and "sleep 60" in out, out
    tokens = [(e.event, e.token) for e in reversed(lock.history(10))]
    assert tokens == [("acquire", 1), ("release", 1), ("acquire", 2), ("release", 2)]


@pytest.mark.emulator
def test_run_releases_on_sigterm(cli_env, make_lock):
    proc = subprocess.Popen(
        [*DEPLOY_LOCK, "run", "--stack", "prod", "--", "sleep", "60"],
        env=cli_env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lock = make_lock()
    wait_for(lambda: lock.status().held, timeout=20, what="the run to acquire")
    time.sleep(0.3)  # let it start the command
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(20)
    stderr = proc.stderr.read()
    assert code == 128 + signal.SIGTERM, stderr
    assert "released" in stderr, stderr
    assert not lock.status().held
    assert [e.event for e in lock.history(5)][0] == "release"


@pytest.mark.emulator
def test_run_stops_command_when_lease_is_lost(cli_env, make_lock, tmp_path):
    """Force-release under a running command: heartbeat notices, SIGINT, then SIGKILL."""
    stubborn = tmp_path / "stubborn.py"  # ignores SIGINT: needs the SIGKILL after --grace
    stubborn.write_text(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [*DEPLOY_LOCK, "run", "--stack", "prod", "--ttl", "10", "--grace", "1", "--",
         sys.executable, str(stubborn)],
        env=cli_env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lock = make_lock()
    wait_for(lambda: lock.status().held, timeout=20, what="the run to acquire")
    lock.force_release(reason="testing loss", by=HolderInfo(who="ops", host="h", pid=1))
    started = time.monotonic()
    code = proc.wait(20)
    stderr = proc.stderr.read()
    assert code == ExitCode.LOCK_HELD, stderr
    assert "force-released by ops: testing loss" in stderr and "SIGKILL" in stderr, stderr
    assert time.monotonic() - started < 10  # heartbeat every 3.3 s + 1 s grace
    assert not lock.status().exists, "the runner's release freed the revoked lock"


@pytest.mark.emulator
def test_sigkilled_cli_runner_takes_its_command_with_it(cli_env, make_lock, tmp_path):
    """The CLI wiring of the watchdog (tests/lock/test_supervisor.py has the overlap proofs)."""
    from tests.lock import _workers

    ticks = str(tmp_path / "ticks")
    proc = subprocess.Popen(
        [*DEPLOY_LOCK, "run", "--stack", "prod", "--ttl", "10", "--grace", "1", "--",
         *_workers.ticker_argv(ticks, ignore_sigint=True, escape=True)],
        env=cli_env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(_workers.read_ticks(ticks)[0]) == 2, timeout=60, what="both to tick")
    finally:
        proc.kill()
        proc.wait(10)
    killed = time.monotonic()
    pids = _workers.read_ticks(ticks)[0]
    wait_for(
        lambda: not any(_alive(p) for p in pids), timeout=10, what=f"{pids} to end with the runner"
    )
    assert time.monotonic() - killed < 5  # SIGINT ignored, SIGKILL 1 s later


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stderr.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        proc.kill()
        pytest.fail(f"no output within {timeout} s")
    return lines[0]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.emulator
def test_sigkilled_holder_blocks_until_its_lease_expires(firestore_emulator, make_lock, cli_env):
    ttl = 3
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.lock._workers", firestore_emulator.host,
         firestore_emulator.project, "prod", str(ttl)],
        env=cli_env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().startswith("acquired 1")
        lock = make_lock(ttl=ttl)
        time.sleep(ttl + 1)  # alive: its heartbeat keeps the lease past the TTL
        assert lock.try_acquire(HolderInfo(who="next", host="h", pid=2)) is None
    finally:  # never leave the holder running, whatever failed above
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    killed = time.monotonic()
    assert lock.try_acquire(HolderInfo(who="next", host="h", pid=2)) is None
    lease = lock.acquire(HolderInfo(who="next", host="h", pid=2), wait=ttl * 3)
    waited = time.monotonic() - killed
    # Renewed every TTL/3 until killed: it expires between 2/3 TTL and a TTL after the kill.
    assert ttl * 2 / 3 - 0.3 <= waited <= ttl + 2, waited
    assert lease.token == 2
    takeover = lock.history(1)[0]
    assert takeover.event == "takeover" and takeover.previous_token == 1


def test_unreachable_firestore_exits_1_within_seconds(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": host, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    expect_proc(dl(["status", "--help"], env), 0)  # the interpreter and imports alone
    startup = time.monotonic() - started
    started = time.monotonic()
    proc = dl(["acquire", "--stack", "prod"], env)
    out = expect_proc(proc, 1)
    assert "Firestore unavailable" in out and host in out
    # The lock's retry budget (6 s) plus start-up, not the client's ~49 s of default retries;
    # start-up measured beside it, as it takes seconds on a loaded machine.
    assert time.monotonic() - started - startup < 15
    assert "acquired" not in out


def test_no_credentials_exits_1_with_advice(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"FIRESTORE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"}
    }
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path), NO_GCE_CHECK="true")
    env["PYTHONPATH"] = str(REPO)
    started = time.monotonic()
    out = expect_proc(dl(["status", "--stack", "prod", "--project", "p"], env), 1)
    assert "cannot create a Firestore client" in out and "application-default login" in out
    assert time.monotonic() - started < 15


def test_the_console_script_and_platform_deploy_lock_run_the_same_app():
    """pyproject's ``deploy-lock`` entry point and ``platform deploy-lock`` (its alias under the
    one operator CLI) are the installed scripts of one app: both refuse a TTL under the
    minimum with the same message and the usage exit code."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["deploy-lock"] == "scripts.deploy_lock_cli:main"
    assert scripts["platform"] == "scripts.platform_cli:main"
    bin_dir = Path(sys.executable).parent
    for argv in ([bin_dir / "deploy-lock"], [bin_dir / "platform", "deploy-lock"]):
        proc = subprocess.run(
            [*map(str, argv), "acquire", "--stack", "prod", "--ttl", "1"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "TTL must be at least 10 s" in expect_proc(proc, ExitCode.USAGE), argv
