"""End to end on the local platform: the prod topology on Google's emulators.

The six scenarios of the local platform's issue. Everything goes through the real pieces: the
coordinator's ``/start`` with the API key, Pub/Sub push from the emulator to the services
started from their Dockerfile's CMD, the scheduler jobs' paths, the ``batches`` and
``deploy-lock`` CLIs as operators run them.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infra.paths import REPO_ROOT
from scripts.local import LocalPlatform, RefusedStack, demo_items
from tests.e2e.conftest import IDLE_WINDOW_S, PLATFORM_KEY, prod_config
from tests.polling import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

REPO = REPO_ROOT
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


#: The polls here read the emulators or run the CLI: every 0.25 s unless a call says.
_wait = functools.partial(wait_for, interval=0.25)


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


def test_3_transient_failure_is_dead_lettered_stall_check_resends_replay_counts_nothing(
    platform,
):
    """The scheduled stall check re-sends an item the worker keeps failing (recorded on the
    item, bounded); once the worker is healthy the re-send completes the batch; replaying the
    dead letters afterwards is acknowledged and never counted."""
    flaky = "player-00007"
    platform.restart_service(WORKER, extra_env={"FAULT_TRANSIENT_ITEMS": flaky})
    try:
        platform.start_batch(demo_items(40), batch_id="e2e-transient")
        # The flaky item is retried (5 deliveries) then dead-lettered.
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

        # After the (shortened) idle window the scheduled check re-sends it: attempt 2.
        time.sleep(IDLE_WINDOW_S + 0.5)
        run = platform.run_job("check-stalled")
        assert run.ok, run
        (action,) = json.loads(run.body)["actions"]
        assert (action["action"], action["resent"]) == ("resend", 1), action
        _wait(
            lambda: len(platform.dead_letters(batch_id="e2e-transient")[REQUEST_DL_SUB]) == 2,
            timeout=90,
            what="the re-sent copy dead-lettered too",
        )
        assert platform.batch_status("e2e-transient")["state"] == "running"
    finally:
        platform.restart_service(WORKER, extra_env={})

    # The worker is healthy: the next check's re-send (attempt 3 of 3) completes the batch.
    time.sleep(IDLE_WINDOW_S + 0.5)
    run = platform.run_job("check-stalled")
    assert run.ok, run
    final = platform.wait_batch("e2e-transient", timeout=60)
    assert final["state"] == "completed", (final, run.body)
    assert (final["completed"], final["failed"], final["resent"]) == (40, 0, 2), final

    # The dead letters, replayed now, are second results: acknowledged, recorded, not counted.
    replay = _batches(platform, "dead-letters", "replay", REQUEST_DL_SUB, "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    inspected = _wait(
        lambda: (
            (i := _json(_batches(platform, "inspect", "e2e-transient", "--json")))["strays"][
                "duplicate"
            ]
            == 2
            and i
        ),
        timeout=60,
        what="the two replayed completions recorded as duplicates",
    )
    batch = inspected["batch"]
    assert (batch["completed"], batch["failed"], batch["done"]) == (40, 0, 40), inspected
    assert not platform.dead_letters(batch_id="e2e-transient")[REQUEST_DL_SUB]


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


def _static(status: dict) -> dict:
    """A status without the fields that move with the clock."""
    return {k: v for k, v in status.items() if k not in ("age_seconds", "idle_seconds")}


def _ready_topic(platform: LocalPlatform) -> str:
    env = platform.topology.service(WORKER).env
    return f"projects/{platform.state['project']}/topics/{env['READY_TOPIC']}"


def _publish_completions(platform: LocalPlatform, batch_id: str, item_ids, **fields) -> None:
    admin = platform.pubsub_admin()
    topic = _ready_topic(platform)
    futures = [
        admin.publisher.publish(
            topic,
            json.dumps(
                {"batch_id": batch_id, "item_id": i, "status": "ok", "prediction": {"v": 1}}
                | fields
            ).encode(),
            batch_id=batch_id,
            item_id=i,
        )
        for i in item_ids
    ]
    for f in futures:
        f.result(timeout=30)


def test_8_foreign_and_late_completions_never_change_the_counts(platform):
    """The red team's run: 60 completions for invented items during a 200-item batch, and
    redeliveries after it finished, all through Pub/Sub push to the coordinator."""
    platform.start_batch(demo_items(200), batch_id="e2e-foreign")
    _publish_completions(platform, "e2e-foreign", [f"invented-{n:03d}" for n in range(60)])
    final = platform.wait_batch("e2e-foreign", timeout=120)
    assert final["state"] == "completed", final
    assert (final["completed"], final["failed"], final["done"]) == (200, 0, 200), final

    # Late: every item's completion again, and more invented ones, after the finish.
    _publish_completions(platform, "e2e-foreign", [f"player-{i:05d}" for i in range(50)])
    _publish_completions(platform, "e2e-foreign", ["invented-late"], status="failed")
    _publish_completions(platform, "e2e-unknown-batch", ["x1"])
    inspected = _wait(
        lambda: (
            (i := _json(_batches(platform, "inspect", "e2e-foreign", "--json")))["strays"][
                "foreign"
            ]
            == 61
            and i["strays"]["duplicate"] == 50
            and i
        ),
        timeout=60,
        what="every foreign and late completion recorded",
    )
    batch = inspected["batch"]
    assert (batch["state"], batch["completed"], batch["failed"], batch["done"]) == (
        "completed",
        200,
        0,
        200,
    ), inspected
    assert _static(platform.batch_status("e2e-foreign")) == _static(final)
    unknown = _wait(
        lambda: (
            _batches(platform, "inspect", "e2e-unknown-batch", "--json").stdout.strip()
            and json.loads(_batches(platform, "inspect", "e2e-unknown-batch", "--json").stdout)
            .get("strays", {})
            .get("unknown_batch")
        ),
        timeout=30,
        what="the unknown batch's completion recorded",
    )
    assert unknown == 1


def _seek_to_future(platform: LocalPlatform, subscription: str) -> None:
    from datetime import UTC, datetime, timedelta

    admin = platform.pubsub_admin()
    admin.subscriber.seek(
        request={
            "subscription": admin.subscription_path(subscription),
            "time": datetime.now(UTC) + timedelta(days=1),
        }
    )


def test_9_lost_queues_are_recovered_by_the_scheduled_stall_check_alone(platform):
    """Both hops' queued messages dropped mid-batch (Seek to the future, see FACTS.md): the
    batch stalls; the scheduled check re-sends exactly the open items and it completes with
    every item predicted, no operator action, no completion needed to trigger it."""
    subs = [s.name for s in platform.topology.subscriptions if s.push_endpoint]
    assert len(subs) == 2, subs
    platform.start_batch(demo_items(400), batch_id="e2e-lost")
    _wait(
        lambda: (s := platform.batch_status("e2e-lost"))["state"] == "running" and s["done"] >= 20,
        timeout=60,
        interval=0.05,
        what="the batch under way",
    )
    for sub in subs:
        _seek_to_future(platform, sub)
    stalled = _wait(
        lambda: (
            (a := platform.batch_status("e2e-lost"))["idle_seconds"] >= IDLE_WINDOW_S
            and (time.sleep(1.0) or platform.batch_status("e2e-lost")["done"] == a["done"])
            and a
        ),
        timeout=60,
        what="the batch to stall",
    )
    assert stalled["state"] == "running" and stalled["done"] < 400, (
        f"nothing was lost (the queues drained before the seek): {stalled}"
    )
    run = platform.run_job("check-stalled")
    assert run.ok, run
    actions = [a for a in json.loads(run.body)["actions"] if a["batch_id"] == "e2e-lost"]
    assert [a["action"] for a in actions] == ["resend"], run.body
    final = platform.wait_batch("e2e-lost", timeout=120)
    assert final["state"] == "completed", final
    assert (final["completed"], final["failed"], final["done"]) == (400, 0, 400), final
    assert final["resent"] == 400 - stalled["done"], (final, stalled)
    inspected = _json(_batches(platform, "inspect", "e2e-lost", "--json"))
    assert inspected["missing"] == [] and inspected["open_total"] == 0, inspected


def _envelope(data: bytes, **attributes: str) -> bytes:
    import base64

    return json.dumps(
        {
            "message": {
                "data": base64.b64encode(data).decode(),
                "attributes": attributes,
                "messageId": f"e2e-{time.monotonic_ns()}",
                "publishTime": "2026-12-01T00:00:00Z",
            },
            "subscription": "projects/p/subscriptions/e2e",
        }
    ).encode()


def _post(url: str, body: bytes) -> tuple[int, dict, float]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read() or b"{}"), time.monotonic() - t0
    except urllib.error.HTTPError as exc:
        return exc.code, {"body": exc.read()[:300].decode(errors="replace")}, time.monotonic() - t0


def test_10_the_four_permanent_errors_are_acknowledged(platform):
    """Each answered 2xx (a 5xx would be redelivered until dead-lettered) and, where the
    message names an item of the batch, recorded as that item's failed outcome."""
    from shared.batch_store import BatchStore

    # The batch's four items registered but never published: these messages are their only
    # outcomes (a published item would be completed by the worker first).
    store = BatchStore(platform.firestore_client())
    store.create("e2e-perm", 4)
    store.register_items("e2e-perm", [(f"player-{i:05d}", {}) for i in range(4)])
    assert store.mark_published("e2e-perm", 4)
    worker = platform.service_url(WORKER) + "/"
    coordinator = platform.service_url(COORDINATOR) + "/complete"
    deep = b"[" * 100_000 + b"]" * 100_000
    attrs = {"batch_id": "e2e-perm"}

    # 1. Deeply nested JSON to the worker (RecursionError before), naming item 0.
    body = b'{"batch_id": "e2e-perm", "item_id": "player-00000", "payload": ' + deep + b"}"
    code, answer, _ = _post(worker, _envelope(body, **attrs, item_id="player-00000"))
    assert code == 200 and answer["status"] == "failed", (code, answer)
    # 2. Deeply nested JSON to the coordinator, a completion for item 1.
    body = b'{"batch_id": "e2e-perm", "item_id": "player-00001", "status": "ok", "x": ' + deep
    code, answer, _ = _post(coordinator, _envelope(body + b"}", **attrs, item_id="player-00001"))
    assert code == 200 and answer["outcome"] == "recorded", (code, answer)
    # 3. A result larger than a Firestore document (1 MiB), for item 2.
    huge = json.dumps(
        {
            "batch_id": "e2e-perm",
            "item_id": "player-00002",
            "status": "ok",
            "prediction": {"values": [0.5] * 200_000},
        }
    ).encode()
    code, answer, _ = _post(coordinator, _envelope(huge, **attrs, item_id="player-00002"))
    assert code == 200 and answer["outcome"] == "recorded", (code, answer)
    # 4. A 10 MB message to the worker (503 after 47 s before), for item 3.
    ten_mb = b'{"batch_id": "e2e-perm", "item_id": "player-00003", "payload": {"pad": "'
    ten_mb += b"x" * (10_000_000 - len(ten_mb) - 3) + b'"}}'
    code, answer, _ = _post(worker, _envelope(ten_mb, **attrs, item_id="player-00003"))
    assert code == 200 and answer["status"] == "failed", (code, answer)

    final = platform.wait_batch("e2e-perm", timeout=60)
    assert final["state"] == "completed", final
    assert (final["completed"], final["failed"]) == (0, 4), final
    errors = {
        f["item_id"]: f["error"]
        for f in _json(_batches(platform, "inspect", "e2e-perm", "--json"))["failed"]
    }
    assert "nested too deeply" in errors["player-00000"], errors
    assert "nested too deeply" in errors["player-00001"], errors
    assert "document limit" in errors["player-00002"], errors
    assert "exceeds the limit" in errors["player-00003"], errors
    # Nothing was retried into the dead-letter subscriptions.
    time.sleep(2)
    assert not any(platform.dead_letters(batch_id="e2e-perm").values())


def test_11_the_batch_document_changes_about_once_a_second(platform):
    """Every write to the batch document of a 400-item batch, seen by a Firestore listener
    (it sees each commit: checked against 200 rapid updates in FACTS-style probing)."""
    from google.cloud.firestore_v1 import DocumentSnapshot

    db = platform.firestore_client()
    doc = db.collection("prediction_batches").document("e2e-hot")
    seen: list[float] = []

    def on_change(snaps: list[DocumentSnapshot], changes, read_time) -> None:
        for snap in snaps:
            if snap.exists:
                seen.append(snap.update_time.timestamp())

    watch = doc.on_snapshot(on_change)
    try:
        time.sleep(0.5)
        t0 = time.time()
        platform.start_batch(demo_items(400), batch_id="e2e-hot")
        final = platform.wait_batch("e2e-hot", timeout=120)
        elapsed = time.time() - t0
        time.sleep(1.0)
    finally:
        watch.unsubscribe()
    assert final["state"] == "completed" and final["done"] == 400, final
    writes = sorted(set(seen))
    # Creation, running and completed are transitions; the rest summaries, 1 s apart at most.
    assert len(writes) <= int(elapsed) + 4, (len(writes), round(elapsed, 2), writes)
    per_second = max(sum(1 for t in writes if w <= t < w + 1.0) for w in writes)
    assert per_second <= 3, (per_second, writes)
