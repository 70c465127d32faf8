"""The coordinator's batch events (shared/events.py): the names the alerts count, and that the
coordinator really logs them, one JSON line each, when a batch ends abnormally."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.events import EVENT_FIELD, STUCK_BATCH_EVENTS, BatchEvent, finish_event
from shared.log import JsonFormatter
from tests.services.conftest import items


def test_the_event_names_are_pinned() -> None:
    """The contract with the log-based metric and its alert (infra/monitoring): renaming an
    event silences the alert in production, so a rename must be a deliberate change here."""
    assert EVENT_FIELD == "event"
    assert {e.name: e.value for e in BatchEvent} == {
        "STALLED": "batch stalled",
        "CLOSED_PARTIAL": "batch closed partial",
        "PUBLISH_FAILED": "batch publish failed",
    }
    assert set(STUCK_BATCH_EVENTS) == set(BatchEvent)


@pytest.mark.parametrize(
    ("action", "missing", "event"),
    [
        ("fail", 0, BatchEvent.STALLED),
        ("publish_failed", 0, BatchEvent.PUBLISH_FAILED),
        ("partial", 2, BatchEvent.CLOSED_PARTIAL),
        ("complete", 2, BatchEvent.CLOSED_PARTIAL),
        ("complete", 0, None),
        ("resend", 0, None),
    ],
)
def test_each_stall_check_action_maps_to_its_event(action, missing, event) -> None:
    assert finish_event(action, missing_recorded=missing) is event


@pytest.fixture
def coordinator_log() -> Iterator[io.StringIO]:
    """The coordinator's log lines, formatted exactly as Cloud Run ships them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("coordinator")
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def _events(out: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return [entry for entry in lines if EVENT_FIELD in entry]


@pytest.mark.emulator
def test_the_coordinator_logs_each_abnormal_end_once(
    coordinator, store, clock, coordinator_log
) -> None:
    coordinator.start(items(2), batch_id="b-stuck")
    coordinator.wait_published("b-stuck")
    clock.advance(hours=5, minutes=40)  # b-stuck reaches the max age (6 h) on the 2nd check
    coordinator.start(items(20), batch_id="b-partial")
    coordinator.wait_published("b-partial")
    for i in range(19):
        coordinator.complete("b-partial", f"p{i:05d}")
    store.create("b-crashed", 10)  # the publisher died: still "publishing"
    coordinator.start(items(2), batch_id="b-normal")
    coordinator.wait_published("b-normal")
    coordinator.complete("b-normal", "p00000")
    coordinator.complete("b-normal", "p00001")
    coordinator.wait_state("b-normal", "completed")

    clock.advance(minutes=11)
    assert coordinator.client.post("/check-stalled", json={"dry_run": True}).status_code == 200
    assert _events(coordinator_log) == [], "a dry run closes nothing, so it logs no event"

    # 1st: b-crashed publish_failed; b-partial and b-stuck re-sent (recovery: no event).
    # 2nd: b-stuck past its max age (failed); b-partial re-sent again (its last attempt).
    # 3rd: b-partial's attempts spent: closed partial.
    for _ in range(3):
        coordinator.client.post("/check-stalled")
        clock.advance(minutes=11)
    got = [(e["batch_id"], e[EVENT_FIELD], e["severity"]) for e in _events(coordinator_log)]
    assert set(got) == {
        ("b-partial", "batch closed partial", "WARNING"),
        ("b-stuck", "batch stalled", "WARNING"),
        ("b-crashed", "batch publish failed", "WARNING"),
    }
    # Each closed once: a further check finds nothing active and logs nothing more.
    coordinator.client.post("/check-stalled")
    assert len(_events(coordinator_log)) == len(got) == 3
