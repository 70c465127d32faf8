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
from tests.services.conftest import register

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
def request_topic(pubsub):
    return pubsub.topic("req-cli")


@pytest.fixture
def stuck_batch(store, clock, request_topic):
    """102 of 104 items done, the last completion 20 minutes ago (the store's clock)."""
    clock.advance(minutes=-30)
    store.create("b-stuck", 104, request_topic=request_topic.path)
    register(store, "b-stuck", [f"p{i:03d}" for i in range(104)])
    clock.advance(minutes=10)
    for i in range(102):
        store.record_completion("b-stuck", f"p{i:03d}", ok=i != 5, error="OUT" if i == 5 else None)
    clock.advance(minutes=20)
    # A fresh batch, progressing now: never stuck.
    store.create("b-fresh", 3, request_topic=request_topic.path)
    register(store, "b-fresh", ["a", "b", "c"])
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
    assert data["open_total"] == 2 and data["open"] == ["p102", "p103"]
    assert data["failed"] == [{"item_id": "p005", "error": "OUT"}]
    assert data["missing"] == [] and data["strays"]["foreign"] == 0
    human = cli("inspect", "b-stuck").output
    assert "101 ok, 1 failed (0 missing), 2 pending" in human and "p102, p103" in human


def test_inspect_shows_strays_and_missing_items(cli, stuck_batch, store):
    store.record_completion("b-stuck", "invented", ok=True, message_id="m1")
    store.record_completion("b-stuck", "p000", ok=False, message_id="m2")  # a second result
    store.finish("b-stuck", "complete", "test")
    store.record_completion("b-stuck", "p103", ok=True, message_id="m3")  # after the close
    data = json.loads(cli("inspect", "b-stuck", "--json").output)
    assert data["batch"]["state"] == "partial"
    assert [(m["item_id"], m["error"]) for m in data["missing"]] == [
        ("p102", "test"),
        ("p103", "test"),
    ]
    assert data["strays"] == {"duplicate": 1, "late": 1, "foreign": 1, "unknown_batch": 0}
    assert sorted((r["kind"], r["item_id"]) for r in data["stray_items"]) == [
        ("duplicate", "p000"),
        ("foreign", "invented"),
        ("late", "p103"),
    ]
    human = cli("inspect", "b-stuck").output
    assert "not counted: 1 duplicate, 1 late, 1 foreign" in human, human
    assert "missing p102: test" in human


def test_inspect_unknown_batch_exits_1_and_shows_its_completions(cli, store):
    assert "no batch" in cli("inspect", "nope", code=1).output
    store.record_completion("ghost", "i1", ok=True, message_id="m1")
    out = json.loads(cli("inspect", "ghost", "--json", code=1).output)
    assert out["strays"]["unknown_batch"] == 1, out
    assert "1 completion(s) recorded for it" in cli("inspect", "ghost", code=1).output


def test_check_stalled_dry_run_exits_2_and_changes_nothing(
    cli, stuck_batch, store, pubsub, request_topic
):
    data = json.loads(cli("check-stalled", "--dry-run", "--json", code=2).output)
    assert [(a["batch_id"], a["action"], a["resent"]) for a in data["actions"]] == [
        ("b-stuck", "resend", 2)
    ]
    assert pubsub.drain(request_topic, wait=0.5) == []
    data = json.loads(cli("check-stalled", "--json").output)
    assert [(a["action"], a["applied"]) for a in data["actions"]] == [("resend", True)]
    sent = pubsub.pull(request_topic, expect=2, timeout=15)
    assert sorted((m.attributes["item_id"], m.attributes["attempt"]) for m in sent) == [
        ("p102", "2"),
        ("p103", "2"),
    ]
    assert store.get("b-stuck").state == "running" and store.get("b-stuck").resent_count == 2
    assert store.get("b-fresh").state == "running"


def test_force_complete(cli, stuck_batch, store):
    out = cli("force-complete", "b-stuck", "--reason", "upstream feed broken").output
    assert "partial" in out and "2 open item(s) recorded missing" in out
    batch = store.get("b-stuck")
    assert batch.state == "partial" and (batch.completed_count, batch.failed_count) == (101, 3)
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
