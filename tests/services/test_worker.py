"""The worker in-process, publishing completions to Google's Pub/Sub emulator."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from services.worker.predictor import PermanentPredictionError, RecencyWeightedMean
from shared.pubsub import ACK_STATUS_CODES
from tests.conftest import EMULATOR_PROJECT
from tests.services.conftest import envelope

pytestmark = pytest.mark.emulator


@pytest.fixture
def ready_topic(pubsub):
    return pubsub.topic("ready")


def _worker(topic, **extra):
    from services.worker.app import create_app

    env = {"GCP_PROJECT_ID": EMULATOR_PROJECT, "READY_TOPIC": topic.name, **extra}
    return TestClient(create_app(environ=env))


def _work(item_id="p1", **payload):
    return envelope(
        {"batch_id": "b1", "item_id": item_id, "payload": payload},
        attributes={"batch_id": "b1", "item_id": item_id},
    )


def _completions(pubsub, topic, expect):
    return [json.loads(m.data) for m in pubsub.pull(topic, expect=expect, timeout=15)]


def test_prediction_is_published_as_an_ok_completion(pubsub, ready_topic):
    with _worker(ready_topic) as client:
        resp = client.post("/", json=_work(recent_values=[10, 20, 30], status="ACTIVE"))
    assert resp.status_code == 200, resp.text
    (done,) = _completions(pubsub, ready_topic, 1)
    assert done["status"] == "ok" and done["error"] is None
    assert (done["batch_id"], done["item_id"]) == ("b1", "p1")
    assert 20 < done["prediction"]["value"] < 30  # recent values weigh more


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"status": "OUT", "recent_values": [10]}, "player status OUT"),
        ({"status": "injured", "recent_values": [10]}, "player status INJURED"),
        ({"recent_values": []}, "no recent_values"),
        ({"recent_values": [1, "x"]}, "non-number"),
    ],
)
def test_permanent_failure_is_acknowledged_and_reported_failed(pubsub, ready_topic, payload, error):
    with _worker(ready_topic) as client:
        resp = client.post("/", json=_work(**payload))
    assert resp.status_code in ACK_STATUS_CODES and resp.status_code == 200, resp.text
    assert resp.json()["status"] == "failed"
    (done,) = _completions(pubsub, ready_topic, 1)
    assert done["status"] == "failed" and error in done["error"]
    assert done["prediction"] is None


def test_message_without_payload_is_a_failed_completion(pubsub, ready_topic):
    with _worker(ready_topic) as client:
        body = envelope({"batch_id": "b1", "item_id": "p9"})
        assert client.post("/", json=body).status_code == 200
    (done,) = _completions(pubsub, ready_topic, 1)
    assert done["status"] == "failed" and "payload" in done["error"]


@pytest.mark.parametrize(
    "body",
    [b"{", {"nomessage": 1}, envelope(b"\xff\xfe"), envelope({"item_id": "x"})],
)
def test_malformed_message_is_acknowledged_not_retried(pubsub, ready_topic, body):
    with _worker(ready_topic) as client:
        if isinstance(body, bytes):
            resp = client.post("/", content=body)
        else:
            resp = client.post("/", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "dropped"
    assert pubsub.drain(ready_topic, wait=0.5) == []


def test_transient_failure_answers_503_and_publishes_nothing(pubsub, ready_topic):
    with _worker(ready_topic, FAULT_TRANSIENT_ITEMS="p2, p3") as client:
        resp = client.post("/", json=_work("p2", recent_values=[1]))
        assert resp.status_code == 503 and resp.status_code not in ACK_STATUS_CODES
        assert client.post("/", json=_work("p4", recent_values=[1])).status_code == 200
    assert [d["item_id"] for d in _completions(pubsub, ready_topic, 1)] == ["p4"]
    assert pubsub.drain(ready_topic, wait=0.5) == []


def test_completion_that_cannot_be_published_is_retried(pubsub):
    missing = pubsub.topic("ready-missing", create=False)
    with _worker(missing) as client:
        resp = client.post("/", json=_work(recent_values=[1]))
    assert resp.status_code == 503, resp.text
    assert "could not publish the completion" in resp.json()["error"]


def test_redelivery_publishes_the_same_completion(pubsub, ready_topic):
    body = _work(recent_values=[3, 4])
    with _worker(ready_topic) as client:
        assert client.post("/", json=body).status_code == 200
        assert client.post("/", json=body).status_code == 200
    first, second = _completions(pubsub, ready_topic, 2)
    assert first == second


def test_recency_weighted_mean():
    model = RecencyWeightedMean(half_life=1.0)
    assert model.predict({"recent_values": [4]})["value"] == 4
    # weights 1/4, 1/2, 1 for oldest..newest
    assert model.predict({"recent_values": [0, 0, 7]})["value"] == pytest.approx(4.0)
    with pytest.raises(PermanentPredictionError):
        model.predict({"status": "OUT", "recent_values": [1]})


def test_healthz(ready_topic):
    with _worker(ready_topic) as client:
        assert client.get("/healthz").json()["service"] == "prediction-worker"
