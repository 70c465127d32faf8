"""The ``batches`` CLI on the Firestore and Pub/Sub emulators."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from google.api_core.exceptions import DeadlineExceeded
from typer.testing import CliRunner

from scripts.batches_cli import app
from tests.conftest import EMULATOR_PROJECT

pytestmark = pytest.mark.emulator

runner = CliRunner()


@pytest.fixture
def cli(firestore_env, pubsub_emulator, monkeypatch):
    monkeypatch.setenv("GCP_PROJECT_ID", EMULATOR_PROJECT)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, f"exit {result.exit_code}:\n{result.output}"
        return result

    return invoke


@pytest.fixture
def stuck_batch(store, clock):
    """102 of 104 items done, the last completion 20 minutes ago (the store's clock)."""
    clock.advance(minutes=-30)
    store.create("b-stuck", 104)
    store.add_published("b-stuck", [f"p{i:03d}" for i in range(104)])
    store.mark_published("b-stuck")
    clock.advance(minutes=10)
    for i in range(102):
        store.record_completion("b-stuck", f"p{i:03d}", ok=i != 5, error="OUT" if i == 5 else None)
    clock.advance(minutes=20)
    # A fresh batch, progressing now: never stuck.
    store.create("b-fresh", 3)
    store.add_published("b-fresh", ["a", "b", "c"])
    store.mark_published("b-fresh")
    store.record_completion("b-fresh", "a", ok=True)
    return "b-stuck"


def test_help():
    for args in (["--help"], ["inspect", "--help"], ["dead-letters", "replay", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output


def test_list_stuck(cli, stuck_batch):
    data = json.loads(cli("list-stuck", "--json").output)
    assert [b["batch_id"] for b in data["batches"]] == ["b-stuck"]
    assert data["batches"][0]["idle_seconds"] >= 20 * 60 - 5
    assert "b-stuck" in cli("list-stuck").output
    assert json.loads(cli("list-stuck", "--idle", "1h", "--json").output)["batches"] == []


def test_inspect(cli, stuck_batch):
    data = json.loads(cli("inspect", "b-stuck", "--json").output)
    batch = data["batch"]
    assert (batch["completed"], batch["failed"], batch["pending"]) == (101, 1, 2)
    assert batch["state"] == "running" and batch["last_completion_at"]
    assert data["missing_total"] == 2 and data["missing"] == ["p102", "p103"]
    assert data["failed"] == [{"item_id": "p005", "error": "OUT", "reason": None}]
    human = cli("inspect", "b-stuck").output
    assert "101 ok, 1 failed, 2 pending" in human and "p102, p103" in human


def test_inspect_unknown_batch_exits_1(cli):
    assert "no batch" in cli("inspect", "nope", code=1).output


def test_check_stalled_dry_run_exits_2_and_changes_nothing(cli, stuck_batch, store):
    data = json.loads(cli("check-stalled", "--dry-run", "--json", code=2).output)
    assert [(a["batch_id"], a["action"]) for a in data["actions"]] == [("b-stuck", "complete")]
    assert store.get("b-stuck").state == "running"
    data = json.loads(cli("check-stalled", "--json").output)
    assert [a["applied"] for a in data["actions"]] == [True]
    assert store.get("b-stuck").state == "completed"
    assert store.get("b-fresh").state == "running"


def test_force_complete(cli, stuck_batch, store):
    out = cli("force-complete", "b-stuck", "--reason", "upstream feed broken").output
    assert "2 missing item(s) recorded as failed" in out
    batch = store.get("b-stuck")
    assert batch.state == "completed" and (batch.completed_count, batch.failed_count) == (101, 3)
    assert batch.reason == "forced by operator: upstream feed broken"
    again = cli("force-complete", "b-stuck", "--reason", "again", "--json", code=1)
    assert json.loads(again.output)["ok"] is False


def test_force_complete_needs_a_reason(cli):
    assert cli("force-complete", "b", code=64)


def test_no_project_is_a_usage_error(firestore_env, monkeypatch):
    monkeypatch.delenv("GCP_PROJECT_ID", raising=False)
    result = runner.invoke(app, ["list-stuck"])
    assert result.exit_code == 64, result.output


def test_bad_duration_is_a_usage_error(cli):
    cli("list-stuck", "--idle", "soon", code=64)


@pytest.fixture
def dead_lettered(pubsub):
    """A real dead letter: nacked 5 times on a subscription with a dead-letter policy."""
    source = pubsub.topic("req")  # with a probe subscription to see replays
    dlt = pubsub.topic("req-dl")
    sub = pubsub.subscriber.subscription_path(EMULATOR_PROJECT, f"{source.name}-push")
    pubsub.subscriber.create_subscription(
        request={
            "name": sub,
            "topic": source.path,
            "dead_letter_policy": {"dead_letter_topic": dlt.path, "max_delivery_attempts": 5},
            "retry_policy": {"minimum_backoff": {"seconds": 0}, "maximum_backoff": {"seconds": 0}},
        }
    )
    pubsub.publisher.publish(
        source.path, b'{"batch_id": "b1", "item_id": "p7"}', batch_id="b1", item_id="p7"
    ).result()
    pubsub.pull(source, expect=1)  # the probe saw the original; only replays count below
    # Nack every delivery; the emulator moves the message to the dead-letter topic when it
    # would deliver it a 6th time. Stop once the dead-letter subscription has it.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for subscription, nack_all in ((sub, True), (dlt.subscription, False)):
            try:
                resp = pubsub.subscriber.pull(
                    request={"subscription": subscription, "max_messages": 10}, timeout=2
                )
            except DeadlineExceeded:
                continue
            ack_ids = [m.ack_id for m in resp.received_messages]
            if ack_ids:
                pubsub.subscriber.modify_ack_deadline(
                    request={
                        "subscription": subscription,
                        "ack_ids": ack_ids,
                        "ack_deadline_seconds": 0,
                    }
                )
                if not nack_all:
                    return source, dlt
    raise AssertionError("the message was not dead-lettered within 60 s")


def test_dead_letters_list_and_replay(cli, pubsub, dead_lettered):
    source, dlt = dead_lettered
    for _ in range(2):  # listing leaves the messages in place
        data = json.loads(cli("dead-letters", "list", dlt.subscription, "--json").output)
        assert data["count"] == 1, data
    (msg,) = data["messages"]
    assert msg["attributes"] == {"batch_id": "b1", "item_id": "p7"}
    assert msg["delivery_count"] == 5
    assert msg["source_subscription"].endswith(f"{source.name}-push")

    short_id = dlt.subscription.rsplit("/", 1)[1]  # ids work as well as paths
    dry = json.loads(cli("dead-letters", "replay", short_id, "--dry-run", "--json").output)
    assert len(dry["replayed"]) == 1 and pubsub.drain(source, wait=0.5) == []

    out = json.loads(cli("dead-letters", "replay", dlt.subscription, "--json").output)
    assert [r["topic"] for r in out["replayed"]] == [source.path]
    (replayed,) = pubsub.pull(source, expect=1, timeout=10)
    assert json.loads(replayed.data) == {"batch_id": "b1", "item_id": "p7"}
    assert dict(replayed.attributes) == {"batch_id": "b1", "item_id": "p7"}
    assert json.loads(cli("dead-letters", "list", dlt.subscription, "--json").output)["count"] == 0


def test_replay_to_a_missing_topic_keeps_the_message(cli, pubsub, dead_lettered):
    _, dlt = dead_lettered
    result = cli("dead-letters", "replay", dlt.subscription, "--topic", "gone", "--json", code=1)
    assert json.loads(result.output)["failed"]
    assert json.loads(cli("dead-letters", "list", dlt.subscription, "--json").output)["count"] == 1


def test_durations():
    from scripts.batches_cli import parse_duration

    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("10m") == timedelta(minutes=10)
    assert parse_duration("1.5h") == parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("10m00s") == timedelta(minutes=10)
