"""The coordinator in-process on Google's Firestore and Pub/Sub emulators."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from scripts import emulators, processes
from tests.conftest import EMULATOR_PROJECT
from tests.polling import wait_for
from tests.services.conftest import API_KEY, envelope, items, register

pytestmark = pytest.mark.emulator

#: /start must answer at once, whatever the batch size (it once took > 15 min).
START_BUDGET_S = 2.0


def test_start_returns_fast_for_5000_items_and_publishes_every_item(coordinator, pubsub):
    batch = items(5000)
    started = time.perf_counter()
    resp = coordinator.start(batch, batch_id="big-batch")
    elapsed = time.perf_counter() - started
    assert resp.status_code == 202, resp.text
    assert elapsed < START_BUDGET_S, f"/start took {elapsed:.2f} s for 5,000 items"
    assert resp.json()["state"] == "publishing"

    status = coordinator.wait_published("big-batch", timeout=120)
    assert status["state"] == "running", status
    assert status["published"] == 5000 and status["total_items"] == 5000

    messages = pubsub.pull(coordinator.request_topic, expect=5000, timeout=60)
    got = {m.attributes["item_id"] for m in messages}
    assert got == {i["item_id"] for i in batch}
    first = json.loads(messages[0].data)
    assert first["batch_id"] == "big-batch"
    assert set(first["payload"]) == {"player_id", "recent_values"}


def test_start_is_idempotent_per_batch_id(coordinator, pubsub):
    assert coordinator.start(items(3), batch_id="b-idem").status_code == 202
    coordinator.wait_published("b-idem")
    again = coordinator.start(items(3), batch_id="b-idem")
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert len(pubsub.drain(coordinator.request_topic)) == 3  # published once, not twice


def test_start_needs_the_api_key(coordinator):
    body = {"items": items(1)}
    assert coordinator.client.post("/start", json=body).status_code == 401
    wrong = coordinator.client.post("/start", json=body, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [{"item_id": "a"}, {"item_id": "a"}]},
        {"items": [{"item_id": "bad/id"}]},
        {"batch_id": "bad/id", "items": [{}]},
    ],
)
def test_start_rejects_bad_batches(coordinator, body):
    resp = coordinator.client.post("/start", json=body, headers={"X-API-Key": API_KEY})
    assert resp.status_code == 422, resp.text


def test_publish_failure_marks_the_batch_publish_failed(
    firestore_env, pubsub, clock, coordinator_env
):
    from services.coordinator.app import create_app

    missing = pubsub.topic("never-created", create=False)
    app = create_app(environ=coordinator_env(missing), clock=clock)
    with TestClient(app) as client:
        resp = client.post(
            "/start", json={"batch_id": "b-pf", "items": items(5)}, headers={"X-API-Key": API_KEY}
        )
        assert resp.status_code == 202
        status = wait_for(
            lambda: (s := client.get("/status/b-pf").json())["state"] != "publishing" and s,
            timeout=30,
            interval=0.05,
            what="the batch to leave publishing",
        )
    assert status["state"] == "publish_failed", status
    assert "NotFound" in status["error"]


def test_redelivered_completions_count_once(coordinator):
    coordinator.start(items(3), batch_id="b-dup")
    coordinator.wait_published("b-dup")
    outcomes = [
        coordinator.complete("b-dup", "p00000", message_id="m1").json()["outcome"] for _ in range(3)
    ]
    assert outcomes == ["recorded", "duplicate", "duplicate"]
    coordinator.complete("b-dup", "p00001", ok=False)
    coordinator.complete("b-dup", "p00001", ok=False)
    status = coordinator.status("b-dup")
    assert (status["completed"], status["failed"], status["done"]) == (1, 1, 2)
    assert status["state"] == "running" and status["percent"] == pytest.approx(66.67)


def test_last_completion_completes_the_batch(coordinator):
    coordinator.start(items(4), batch_id="b-all")
    coordinator.wait_published("b-all")
    for i in range(4):
        coordinator.complete("b-all", f"p{i:05d}", ok=i != 2)
    status = coordinator.wait_state("b-all", "completed")
    assert (status["completed"], status["failed"], status["percent"]) == (3, 1, 100.0)
    assert status["reason"] == "all items done"


def test_completions_arriving_while_publishing_still_complete_the_batch(store):
    store.create("b-race", 2)
    register(store, "b-race", ["a", "b"], published=False)
    store.record_completion("b-race", "a", ok=True)
    store.record_completion("b-race", "b", ok=True)
    assert store.get("b-race").state == "publishing"
    assert store.mark_published("b-race")
    assert store.get("b-race").state == "completed"


def _resent(pubsub, coordinator, expect):
    msgs = pubsub.pull(coordinator.request_topic, expect=expect, timeout=15)
    return sorted((m.attributes["item_id"], json.loads(m.data)["attempt"]) for m in msgs)


def test_stall_check_resends_open_items_then_closes_the_batch_partial(coordinator, clock, pubsub):
    coordinator.start(items(104), batch_id="b-stall")
    coordinator.wait_published("b-stall")
    assert len(pubsub.pull(coordinator.request_topic, expect=104)) == 104
    for i in range(102):
        coordinator.complete("b-stall", f"p{i:05d}", ok=i % 50 != 7)  # 2 failed

    clock.advance(minutes=9, seconds=59)
    # A fresh batch, just as far along, created and progressing at the later time.
    coordinator.start(items(104), batch_id="b-fresh")
    coordinator.wait_published("b-fresh")
    for i in range(102):
        coordinator.complete("b-fresh", f"p{i:05d}")
    pubsub.drain(coordinator.request_topic)
    resp = coordinator.client.post("/check-stalled")
    assert resp.status_code == 200 and resp.json()["actions"] == [], resp.text

    # Idle for the window: the two open items are sent again (attempt 2), the batch stays open.
    clock.advance(seconds=1)
    (action,) = coordinator.client.post("/check-stalled").json()["actions"]
    assert (action["batch_id"], action["action"], action["resent"]) == ("b-stall", "resend", 2)
    assert _resent(pubsub, coordinator, 2) == [("p00102", 2), ("p00103", 2)]
    status = coordinator.status("b-stall")
    assert (status["state"], status["done"], status["resent"]) == ("running", 102, 2)
    # The re-send counts as activity: nothing more until the window passes again.
    assert coordinator.client.post("/check-stalled").json()["actions"] == []

    # One re-sent item completes; the other is re-sent once more (attempt 3, the last).
    coordinator.complete("b-stall", "p00102")
    clock.advance(minutes=10)
    actions = coordinator.client.post("/check-stalled").json()["actions"]
    assert [(a["batch_id"], a["action"], a["resent"]) for a in actions] == [
        ("b-stall", "resend", 1),
        ("b-fresh", "resend", 2),
    ]
    assert ("p00103", 3) in _resent(pubsub, coordinator, 3)

    # Attempts spent: closed partial, the missing item recorded with why.
    clock.advance(minutes=10)
    actions = coordinator.client.post("/check-stalled").json()["actions"]
    stall = next(a for a in actions if a["batch_id"] == "b-stall")
    assert (stall["action"], stall["applied"], stall["missing_recorded"]) == ("partial", True, 1)
    assert "1 item(s) still missing after 3 attempt(s)" in stall["reason"]
    status = coordinator.status("b-stall")
    assert status["state"] == "partial", status
    assert (status["completed"], status["failed"], status["missing"]) == (101, 3, 1)

    # A late completion for the missing item is acknowledged and never counted.
    late = coordinator.complete("b-stall", "p00103")
    assert (late.status_code, late.json()["outcome"]) == (200, "late")
    status = coordinator.status("b-stall")
    assert (status["completed"], status["failed"], status["missing"]) == (101, 3, 1)


def test_stall_check_does_not_need_a_completion_to_arrive(coordinator, clock):
    """A batch that never got a single completion is still judged (by age)."""
    coordinator.start(items(2), batch_id="b-silent")
    coordinator.wait_published("b-silent")
    clock.advance(hours=7)
    actions = coordinator.client.post("/check-stalled").json()["actions"]
    assert [(a["batch_id"], a["action"], a["missing_recorded"]) for a in actions] == [
        ("b-silent", "fail", 2)
    ]
    status = coordinator.status("b-silent")
    assert status["state"] == "failed" and "exceeded max age" in status["reason"]
    assert (status["done"], status["missing"]) == (2, 2)


def test_the_percentage_does_not_decide(coordinator, clock):
    """90% or 10% done, an idle batch is re-sent, not completed or left alone."""
    coordinator.start(items(10), batch_id="b-low")
    coordinator.wait_published("b-low")
    coordinator.complete("b-low", "p00000")
    clock.advance(minutes=30)
    (action,) = coordinator.client.post("/check-stalled").json()["actions"]
    assert (action["action"], action["resent"]) == ("resend", 9)


def test_dry_run_reports_without_acting(coordinator, clock, pubsub):
    coordinator.start(items(2), batch_id="b-dry")
    coordinator.wait_published("b-dry")
    coordinator.complete("b-dry", "p00000")
    coordinator.complete("b-dry", "p00001")  # completes
    coordinator.start(items(20), batch_id="b-dry2")
    coordinator.wait_published("b-dry2")
    for i in range(19):
        coordinator.complete("b-dry2", f"p{i:05d}")
    coordinator.wait_state("b-dry", "completed")
    pubsub.drain(coordinator.request_topic)
    clock.advance(minutes=11)
    body = coordinator.client.post("/check-stalled", json={"dry_run": True}).json()
    assert body["dry_run"] is True
    assert [(a["batch_id"], a["action"], a["resent"], a["applied"]) for a in body["actions"]] == [
        ("b-dry2", "resend", 1, False)
    ]
    assert coordinator.status("b-dry2")["state"] == "running"
    assert pubsub.drain(coordinator.request_topic, wait=0.5) == []


def test_publishing_that_stalled_is_marked_publish_failed(coordinator, store, clock):
    """The coordinator died while publishing: the stall check finishes the batch."""
    store.create("b-crashed", 1000)
    register(store, "b-crashed", [f"i{i}" for i in range(300)], published=False)
    store.note_published("b-crashed", 300)
    clock.advance(minutes=10)
    actions = coordinator.client.post("/check-stalled").json()["actions"]
    assert [(a["batch_id"], a["action"]) for a in actions] == [("b-crashed", "publish_failed")]
    status = coordinator.status("b-crashed")
    assert status["state"] == "publish_failed"
    assert "300/1000 published" in status["reason"]
    # Its registered items are closed too: a completion arriving now is late, not counted.
    assert store.record_completion("b-crashed", "i7", ok=True) == "late"
    assert (status["done"], status["missing"]) == (300, 300)
    # The publisher waking up late cannot resurrect it.
    assert store.mark_published("b-crashed") is False
    assert store.get("b-crashed").state == "publish_failed"


def test_check_stalled_works_through_many_batches_in_pages(store, clock):
    for n in range(23):
        store.create(f"b-page-{n:02d}", 1)
        register(store, f"b-page-{n:02d}", ["x"])
    pages = list(store.iter_active(page_size=5))
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    clock.advance(hours=7)
    actions = store.check_stalled(page_size=5)
    assert len(actions) == 23 and all(a.applied for a in actions)
    assert list(store.iter_active(page_size=5)) == []


def test_cleanup_stuck_finishes_idle_batches_with_a_reason(coordinator, clock):
    coordinator.start(items(10), batch_id="b-stuck")
    coordinator.wait_published("b-stuck")
    coordinator.complete("b-stuck", "p00000")
    clock.advance(minutes=59)
    assert coordinator.client.post("/cleanup-stuck").json()["actions"] == []
    clock.advance(minutes=1)
    (action,) = coordinator.client.post("/cleanup-stuck").json()["actions"]
    assert (action["batch_id"], action["action"], action["applied"]) == ("b-stuck", "partial", True)
    status = coordinator.status("b-stuck")
    assert status["state"] == "partial" and status["reason"].startswith("stuck: no progress")
    assert (status["completed"], status["missing"]) == (1, 9)


def test_admin_clear_batch(coordinator, store):
    coordinator.start(items(3), batch_id="b-clear")
    coordinator.wait_published("b-clear")
    body = {"batch_id": "b-clear", "reason": "bad input file", "action": "complete"}
    assert coordinator.client.post("/admin/clear-batch", json=body).status_code == 401
    headers = {"X-API-Key": API_KEY}
    resp = coordinator.client.post("/admin/clear-batch", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["missing_recorded"] == 3
    status = coordinator.status("b-clear")
    assert status["state"] == "partial" and (status["failed"], status["missing"]) == (3, 3)
    assert status["reason"] == "cleared by operator: bad input file"
    # Finishing a finished batch is a conflict, not a silent success.
    again = coordinator.client.post("/admin/clear-batch", json=body, headers=headers)
    assert again.status_code == 409

    body = {"batch_id": "b-clear", "reason": "cleanup", "action": "delete"}
    resp = coordinator.client.post("/admin/clear-batch", json=body, headers=headers)
    assert resp.status_code == 200 and resp.json()["deleted_documents"] > 3
    assert coordinator.client.get("/status/b-clear").status_code == 404
    audit = [d.to_dict() for d in store.db.collection("prediction_batch_audit").stream()]
    assert [(a["batch_id"], a["reason"]) for a in audit] == [
        ("b-clear", "cleared by operator: cleanup")
    ]
    missing = coordinator.client.post(
        "/admin/clear-batch", json={"batch_id": "nope", "reason": "x"}, headers=headers
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        {"message": {"data": "%%%"}},
        envelope(b"[1, 2]"),
        envelope({"batch_id": "b", "item_id": "i", "status": "weird"}),
        envelope({"item_id": "i", "status": "ok"}),
    ],
)
def test_malformed_completions_are_acknowledged(coordinator, body):
    if isinstance(body, bytes):
        resp = coordinator.client.post("/complete", content=body)
    else:
        resp = coordinator.client.post("/complete", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outcome"] == "malformed"


def test_completion_for_an_unknown_batch_is_acknowledged_and_recorded(coordinator, store):
    resp = coordinator.complete("no-such-batch", "i1", message_id="m-unknown")
    assert resp.status_code == 200 and resp.json()["outcome"] == "unknown_batch"
    assert coordinator.complete("no-such-batch", "i1", message_id="m-unknown").status_code == 200
    (stray,) = store.strays("no-such-batch")  # the redelivery is the same record
    assert (stray["kind"], stray["item_id"], stray["message_id"]) == (
        "unknown_batch",
        "i1",
        "m-unknown",
    )


def test_foreign_and_late_completions_never_change_the_counts(coordinator, store):
    coordinator.start(items(3), batch_id="b-member")
    coordinator.wait_published("b-member")
    for n in range(5):
        resp = coordinator.complete("b-member", f"invented-{n}")
        assert (resp.status_code, resp.json()["outcome"]) == (200, "foreign")
    coordinator.complete("b-member", "p00000", message_id="first")
    # A second result for a counted item (another message): acknowledged, recorded, ignored.
    again = coordinator.complete("b-member", "p00000", ok=False, message_id="second")
    assert again.json()["outcome"] == "duplicate"
    status = coordinator.status("b-member")
    assert (status["completed"], status["failed"], status["done"]) == (1, 0, 1)
    coordinator.complete("b-member", "p00001")
    coordinator.complete("b-member", "p00002")
    status = coordinator.wait_state("b-member", "completed")
    assert (status["completed"], status["done"], status["total_items"]) == (3, 3, 3)
    # After the finish: redeliveries and foreign completions change nothing.
    for item in ("p00001", "p00002", "invented-9"):
        assert coordinator.complete("b-member", item).status_code == 200
    assert coordinator.status("b-member") == status  # the test's clock stands still
    kinds = store.stray_counts("b-member")
    assert kinds == {"duplicate": 3, "late": 0, "foreign": 6, "unknown_batch": 0}


def test_permanent_errors_are_acknowledged_with_a_failed_outcome(coordinator, store):
    coordinator.start(items(3), batch_id="b-perm")
    coordinator.wait_published("b-perm")
    # A result larger than a Firestore document: the item fails with the reason.
    huge = {"values": [1.5] * 140_000}  # ~1.1 MB as Firestore counts it
    resp = coordinator.complete("b-perm", "p00000", prediction=huge)
    assert (resp.status_code, resp.json()["outcome"]) == (200, "recorded"), resp.text
    # A result nested deeper than Firestore allows (and than the parser's recursion).
    deep: Any = 1
    for _ in range(25):
        deep = {"d": deep}
    assert coordinator.complete("b-perm", "p00001", prediction=deep).json()["outcome"] == (
        "recorded"
    )
    nested = "[" * 100_000 + "]" * 100_000
    head = b'{"batch_id": "b-perm", "item_id": "p00002", "status": "ok", "prediction": '
    body = envelope(
        head + nested.encode() + b"}",
        attributes={"batch_id": "b-perm", "item_id": "p00002"},
    )
    assert coordinator.client.post("/complete", json=body).status_code == 200
    status = coordinator.wait_state("b-perm", "completed")
    assert (status["completed"], status["failed"]) == (0, 3), status
    errors = {f["item_id"]: f["error"] for f in store.failed_items("b-perm")}
    assert "exceeds Firestore's document limit" in errors["p00000"], errors
    assert "nested 26 levels deep" in errors["p00001"], errors
    assert "nested too deeply" in errors["p00002"], errors


def test_an_envelope_nested_too_deeply_or_too_large_is_acknowledged(coordinator):
    deep = b'{"message": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    resp = coordinator.client.post("/complete", content=deep)
    assert (resp.status_code, resp.json()["outcome"]) == (200, "malformed"), resp.text
    from shared.limits import MAX_PUSH_BODY_BYTES

    big = b" " * (MAX_PUSH_BODY_BYTES + 1)
    resp = coordinator.client.post("/complete", content=big)
    assert (resp.status_code, resp.json()["outcome"]) == (200, "malformed"), resp.text


def test_status_of_an_unknown_batch_is_404(coordinator):
    assert coordinator.client.get("/status/nope").status_code == 404


def test_firestore_unreachable_answers_503_so_pubsub_redelivers(pubsub, clock, coordinator_env):
    """A real client pointed at a closed port (short deadlines), not a fake."""
    from services.coordinator.app import create_app

    topic = pubsub.topic("request")
    app = create_app(
        environ=coordinator_env(topic),
        clock=clock,
        firestore_client=lambda s: emulators.firestore_client(
            f"127.0.0.1:{processes.free_port()}",
            EMULATOR_PROJECT,
            rpc_timeout=0.5,
            retry_deadline=1.0,
        ),
    )
    with TestClient(app) as client:
        data = {"batch_id": "b", "item_id": "i", "status": "ok"}
        resp = client.post("/complete", json=envelope(data))
    assert resp.status_code == 503, resp.text


def test_healthz(coordinator):
    resp = coordinator.client.get("/healthz")
    assert resp.json() == {"status": "ok", "service": "prediction-coordinator"}
