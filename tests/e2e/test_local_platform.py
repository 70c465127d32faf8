"""End to end on the local platform: the prod topology on Google's emulators.

The six scenarios of the local platform's issue. Everything goes through the real pieces: the
coordinator's ``/start`` with the API key, Pub/Sub push from the emulator to the services
started from their Dockerfile's CMD, the scheduler jobs' paths, the ``batches`` and
``deploy-lock`` CLIs as operators run them.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scripts.local import LocalPlatform, RefusedStack, demo_items
from tests.e2e.conftest import IDLE_WINDOW_S, PLATFORM_KEY, prod_config

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COORDINATOR = "prediction-coordinator"
WORKER = "prediction-worker"
REQUEST_DL_SUB = "prediction-request-prod-dead-letter-sub"


def _cli_env(platform: LocalPlatform) -> dict[str, str]:
    return {
        **os.environ,
        **platform.emulator_env(),
        "NO_GCE_CHECK": "true",
        "GOOGLE_CLOUD_PROJECT": platform.state["project"],
        "GCP_PROJECT_ID": platform.state["project"],
    }


def _batches(platform: LocalPlatform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "batches"), *args],
        env=_cli_env(platform),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def _wait(predicate, *, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def test_1_a_batch_of_200_completes_and_status_agrees_with_batches_inspect(platform):
    started = platform.start_batch(demo_items(200), batch_id="e2e-200")
    assert started["created"] is True, started
    status = platform.wait_batch("e2e-200", timeout=120)
    assert status["state"] == "completed", status
    assert (status["total_items"], status["done"], status["completed"]) == (200, 200, 200)
    assert status["failed"] == 0 and status["published"] == 200, status
    inspected = _json(_batches(platform, "inspect", "e2e-200", "--json"))
    batch = inspected.get("batch", inspected)
    for key in ("state", "completed", "failed"):
        assert batch.get(key) == status[key], f"{key}: inspect {inspected} vs /status {status}"
    assert batch.get("total_items", batch.get("total")) == 200, inspected


def test_2_permanent_failures_are_acknowledged_and_recorded(platform):
    items = demo_items(50, out_every=5)  # every 5th player is OUT: 10 permanent failures
    platform.start_batch(items, batch_id="e2e-permanent")
    status = platform.wait_batch("e2e-permanent", timeout=120)
    assert status["state"] == "completed", status
    assert (status["completed"], status["failed"], status["done"]) == (40, 10, 50), status
    # A 5xx would have been retried (1-2 s backoff here) and dead-lettered after 5 attempts.
    time.sleep(3)
    dead = platform.dead_letters(batch_id="e2e-permanent")
    assert all(not msgs for msgs in dead.values()), {k: len(v) for k, v in dead.items()}


def test_3_transient_failure_is_dead_lettered_stall_check_completes_replay_counts_once(
    platform,
):
    flaky = "player-00007"
    platform.restart_service(WORKER, extra_env={"FAULT_TRANSIENT_ITEMS": flaky})
    try:
        platform.start_batch(demo_items(40), batch_id="e2e-transient")
        # 39/40 = 97.5% done; the flaky item is retried (5 deliveries) then dead-lettered.
        msgs = _wait(
            lambda: platform.dead_letters(batch_id="e2e-transient")[REQUEST_DL_SUB],
            timeout=90,
            what="the flaky item in the dead-letter subscription",
        )
        assert [m.attributes.get("item_id") for m in msgs] == [flaky]
        assert msgs[0].attributes.get("CloudPubSubDeadLetterSourceSubscription") == (
            "prediction-request-worker-prod"
        )
        status = platform.batch_status("e2e-transient")
        assert status["state"] == "running" and status["done"] == 39, status

        # The scheduled stall check, after the (shortened) idle window: complete at >= 95%.
        time.sleep(IDLE_WINDOW_S + 0.5)
        run = platform.run_job("check-stalled")
        assert run.ok, run
        status = platform.batch_status("e2e-transient")
        assert status["state"] == "completed", (status, run.body)
        assert (status["completed"], status["failed"]) == (39, 1), status
    finally:
        platform.restart_service(WORKER, extra_env={})

    # Once the worker is healthy, the operator replays the dead letter: it counts once.
    replay = _batches(platform, "dead-letters", "replay", REQUEST_DL_SUB, "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    final = _wait(
        lambda: (s := platform.batch_status("e2e-transient"))["completed"] == 40 and s,
        timeout=60,
        what="the replayed item's completion",
    )
    assert (final["completed"], final["failed"], final["done"]) == (40, 0, 40), final
    assert not platform.dead_letters(batch_id="e2e-transient")[REQUEST_DL_SUB]
    time.sleep(2)  # a second delivery would show up as a double count
    again = platform.batch_status("e2e-transient")
    assert (again["completed"], again["done"]) == (40, 40), again


def test_4_a_topic_with_no_subscription_is_refused_before_anything_is_applied(tmp_path):
    config = copy.deepcopy(prod_config())
    config[PLATFORM_KEY]["topics"]["orphan-events"] = {"subscriptions": []}
    lp = LocalPlatform("prod", state_dir=tmp_path / "state", config=config)
    with pytest.raises(RefusedStack) as info:
        lp.up()
    assert "orphan-events" in str(info.value), info.value
    assert not (tmp_path / "state" / "state.json").exists()
    assert lp.state.get("emulators") is None, "an emulator was started"

    # The CLI refuses it too, exit 1, naming the topic, and starts nothing.
    import yaml

    stack_file = tmp_path / "Pulumi.orphan.yaml"
    stack_file.write_text(yaml.safe_dump({"config": config}))
    proc = subprocess.run(
        [
            str(BIN / "platform"),
            "local",
            "up",
            "--config",
            str(stack_file),
            "--state-dir",
            str(tmp_path / "cli-state"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "orphan-events" in proc.stderr + proc.stdout
    assert not (tmp_path / "cli-state" / "state.json").exists()


def test_5_coordinator_killed_while_publishing_never_leaves_the_batch_pending(platform):
    platform.start_batch(demo_items(5000), batch_id="e2e-killed")
    seen = _wait(
        lambda: (s := platform.batch_status("e2e-killed"))["published"] > 0 and s,
        timeout=60,
        interval=0.02,
        what="the first published chunk",
    )
    platform.kill_service(COORDINATOR)
    assert seen["state"] == "publishing", f"publishing ended before the kill: {seen}"
    platform.restart_service(COORDINATOR)

    def finished():
        status = platform.batch_status("e2e-killed")
        if status["state"] in ("publishing", "running"):
            platform.run_job("check-stalled")
            status = platform.batch_status("e2e-killed")
        return status if status["state"] not in ("publishing", "running") else None

    final = _wait(finished, timeout=120, interval=1.0, what="the stall check to finish it")
    assert final["state"] in ("publish_failed", "completed"), final
    if final["state"] == "publish_failed":
        assert "publish" in (final.get("reason") or ""), final


def test_6_two_deploy_lock_runs_on_the_local_firestore_one_waits(platform, tmp_path):
    marks = tmp_path / "marks"
    cmd = f"echo start $(date +%s.%N) >> {marks}; sleep 2; echo end $(date +%s.%N) >> {marks}"
    argv = [
        str(BIN / "deploy-lock"),
        "run",
        "--stack",
        "local",
        "--project",
        platform.state["project"],
        "--wait",
        "60",
        "--ttl",
        "30s",
        "--reason",
        "e2e",
        "--",
        "sh",
        "-c",
        cmd,
    ]
    env = _cli_env(platform)
    results: list[subprocess.CompletedProcess] = []

    def one() -> None:
        results.append(subprocess.run(argv, env=env, capture_output=True, text=True, timeout=90))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert r.returncode == 0, r.stdout + r.stderr
    lines = [line.split() for line in marks.read_text().splitlines()]
    assert [kind for kind, _ in lines] == ["start", "end", "start", "end"], lines
    first_end, second_start = float(lines[1][1]), float(lines[2][1])
    assert second_start >= first_end, lines
    assert any("held" in (r.stdout + r.stderr) for r in results), [
        r.stdout + r.stderr for r in results
    ]


def test_7_state_and_log_files_hold_no_secret(platform):
    """After /start calls carrying the API key, no file the platform wrote but the secrets
    file itself (0600) holds a secret value: not state.json, the scheduler's files, nor any
    service's or emulator's log."""
    import stat

    outcome = platform.run_synthetic_batch(items=5, timeout=120)
    assert outcome["ok"], outcome
    values = [v for v in yaml_values(platform.secrets_file) if len(v) >= 16]
    assert values, "the coordinator's API key is in the secrets file"
    assert stat.S_IMODE(platform.secrets_file.stat().st_mode) == 0o600
    scanned = []
    for path in sorted(platform.state_dir.rglob("*")):
        if not path.is_file() or path == platform.secrets_file:
            continue
        data = path.read_bytes()
        scanned.append(path.name)
        for value in values:
            assert value.encode() not in data, f"{path} holds a secret value"
    assert "state.json" in scanned and any(n.endswith(".log") for n in scanned), scanned


def yaml_values(path: Path) -> list[str]:
    import yaml

    return [str(v) for v in (yaml.safe_load(path.read_text()) or {}).values()]
