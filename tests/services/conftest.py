"""Fixtures for the service tests: the apps in-process on Google's Firestore and Pub/Sub
emulators (root fixtures ``firestore_emulator``/``pubsub_emulator``), an injectable clock,
per-test topics, and a pull subscription to see what the services published."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from google.api_core.exceptions import DeadlineExceeded

from tests.conftest import EMULATOR_PROJECT
from tests.polling import wait_for

API_KEY = "test-api-key"


class Clock:
    """An injectable clock: starts at the real time, moves only when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Topic:
    name: str  # short id, as the program sets it in the env
    path: str
    subscription: str  # a pull subscription made by the test, to read what was published


class PubSub:
    """Topics and pull subscriptions on the emulator through the official clients."""

    def __init__(self, host: str) -> None:
        from google.cloud import pubsub_v1

        self.host = host
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def topic(self, prefix: str, *, create: bool = True) -> Topic:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        path = self.publisher.topic_path(EMULATOR_PROJECT, name)
        sub = self.subscriber.subscription_path(EMULATOR_PROJECT, f"{name}-probe")
        if create:
            self.publisher.create_topic(name=path)
            self.subscriber.create_subscription(name=sub, topic=path, ack_deadline_seconds=60)
        return Topic(name, path, sub)

    def pull(self, topic: Topic, *, expect: int, timeout: float = 30.0) -> list[Any]:
        """Pull and ack until ``expect`` messages arrived (or the timeout); returns them."""
        got: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            remaining = deadline - time.monotonic()
            try:
                # The emulator holds an empty pull open until the RPC deadline.
                resp = self.subscriber.pull(
                    request={"subscription": topic.subscription, "max_messages": 1000},
                    timeout=max(min(remaining, 10.0), 0.2),
                )
            except DeadlineExceeded:
                continue
            if resp.received_messages:
                self.subscriber.acknowledge(
                    request={
                        "subscription": topic.subscription,
                        "ack_ids": [m.ack_id for m in resp.received_messages],
                    }
                )
            for m in resp.received_messages:
                got[m.message.message_id] = m.message
        return list(got.values())

    def drain(self, topic: Topic, *, wait: float = 1.0) -> list[Any]:
        """Everything published so far (waits ``wait`` seconds for stragglers)."""
        return self.pull(topic, expect=10**9, timeout=wait)

    def close(self) -> None:
        self.publisher.stop()
        self.subscriber.close()


@pytest.fixture
def pubsub(pubsub_emulator, monkeypatch) -> Iterator[PubSub]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    ps = PubSub(pubsub_emulator.host)
    try:
        yield ps
    finally:
        ps.close()


@pytest.fixture
def firestore_env(firestore_emulator, monkeypatch):
    """A wiped emulator database that the services' default clients reach through the env."""
    firestore_emulator.wipe()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    return firestore_emulator


@pytest.fixture
def store(firestore_env, clock):
    """The batch store on the emulator, on the test's clock (what the CLI and service use)."""
    from google.cloud import firestore

    from shared.batch_store import BatchStore

    db = firestore.Client(project=EMULATOR_PROJECT)
    try:
        yield BatchStore(db, clock=clock)
    finally:
        db.close()


def envelope(
    data: dict[str, Any] | bytes,
    *,
    message_id: str | None = None,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Pub/Sub push envelope as a push subscription POSTs it."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {
        "message": {
            "data": base64.b64encode(raw).decode(),
            "attributes": attributes or {},
            "messageId": message_id or uuid.uuid4().hex,
            "publishTime": datetime.now(UTC).isoformat(),
        },
        "subscription": f"projects/{EMULATOR_PROJECT}/subscriptions/test",
    }


@dataclass
class Coordinator:
    client: TestClient
    request_topic: Topic
    clock: Clock

    def start(self, items: list[dict], batch_id: str | None = None, **extra: Any):
        body: dict[str, Any] = {"items": items, **extra}
        if batch_id:
            body["batch_id"] = batch_id
        return self.client.post("/start", json=body, headers={"X-API-Key": API_KEY})

    def status(self, batch_id: str) -> dict[str, Any]:
        resp = self.client.get(f"/status/{batch_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_published(self, batch_id: str, timeout: float = 60.0) -> dict[str, Any]:
        return self._wait_status(
            batch_id, lambda s: s["state"] != "publishing", "to leave publishing", timeout, 0.05
        )

    def wait_state(self, batch_id: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        """Poll /status until the batch is in ``state`` (the progress tracker finishes batches
        on its own thread, just after the last completion)."""
        return self._wait_status(batch_id, lambda s: s["state"] == state, f"to be {state}", timeout)

    def _wait_status(
        self,
        batch_id: str,
        done: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float,
        interval: float = 0.02,
    ) -> dict[str, Any]:
        seen: list[dict[str, Any]] = []

        def poll() -> dict[str, Any] | None:
            seen.append(self.status(batch_id))
            return seen[-1] if done(seen[-1]) else None

        return wait_for(
            poll,
            timeout=timeout,
            interval=interval,
            what=lambda: f"batch {batch_id} {what}: {seen[-1]}",
        )

    def complete(
        self,
        batch_id: str,
        item_id: str,
        *,
        ok: bool = True,
        message_id: str | None = None,
        prediction: Any = None,
    ):
        data = {
            "batch_id": batch_id,
            "item_id": item_id,
            "status": "ok" if ok else "failed",
            "prediction": (prediction or {"value": 1.0}) if ok else None,
            "error": None if ok else "player status OUT: not predictable",
        }
        attributes = {"batch_id": batch_id, "item_id": item_id}
        return self.client.post(
            "/complete", json=envelope(data, message_id=message_id, attributes=attributes)
        )


def register(store, batch_id: str, item_ids: list[str], *, published: bool = True) -> None:
    """Items of a batch created with ``store.create``, as /start registers them (payload {})."""
    store.register_items(batch_id, [(i, {"n": k}) for k, i in enumerate(item_ids)])
    if published:
        store.mark_published(batch_id, len(item_ids))


def items(n: int, **payload: Any) -> list[dict[str, Any]]:
    return [
        {
            "item_id": f"p{i:05d}",
            "player_id": f"player-{i}",
            "recent_values": [10, 12, 14],
            **payload,
        }
        for i in range(n)
    ]


@pytest.fixture
def coordinator_env(pubsub) -> Callable[..., dict[str, str]]:
    def make(topic: Topic, **extra: str) -> dict[str, str]:
        return {
            "GCP_PROJECT_ID": EMULATOR_PROJECT,
            "REQUEST_TOPIC": topic.name,
            "COORDINATOR_API_KEY": API_KEY,
            **extra,
        }

    return make


@pytest.fixture
def coordinator(firestore_env, pubsub, clock, coordinator_env) -> Iterator[Coordinator]:
    from services.coordinator.app import create_app

    topic = pubsub.topic("request")
    app = create_app(environ=coordinator_env(topic), clock=clock)
    with TestClient(app) as client:
        yield Coordinator(client, topic, clock)
