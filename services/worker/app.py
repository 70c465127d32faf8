"""The worker: one Pub/Sub push per work item, one completion published per item.

The answer decides the message's fate (see :mod:`shared.pubsub`):

* success, or a **permanent** failure (a player who cannot be predicted, a message too large or
  nested too deep to read, which names its item in its attributes): 200, and a completion
  (``ok`` or ``failed``) is published to ``READY_TOPIC``. A message naming no item is
  acknowledged and logged (there is nobody to report to). A 500 for a
  permanent error once made Pub/Sub retry forever and stuck a batch at 87%.
* a **transient** failure (the completion could not be published, an injected fault): 503, so
  Pub/Sub redelivers with backoff and, after ``max_delivery_attempts``, dead-letters it.

Idempotent per (batch, item): a redelivery publishes the same completion again and the
coordinator counts it once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.worker.predictor import PermanentPredictionError, Predictor, RecencyWeightedMean
from shared.contract import MissingEnvironment
from shared.limits import FIRESTORE_MAX_DOCUMENT_BYTES
from shared.log import configure_logging, get_logger
from shared.pubsub import (
    AsyncJsonPublisher,
    MalformedEnvelope,
    UnreadableData,
    parse_push,
    read_body,
)
from shared.startup import exit_with_config_error, require_env
from shared.timing import RequestTimings
from shared.timing import enable as enable_timings

SERVICE = "prediction-worker"
log = get_logger("worker")

#: A work item's message is at most this large: the coordinator stores every item in a
#: Firestore document (1 MiB as Firestore counts; its JSON can be a few times that, e.g. numbers
#: are 8 bytes there and up to 24 characters here) before publishing it, so a larger one is
#: not a work item.
MAX_WORK_MESSAGE_BYTES = 4 * FIRESTORE_MAX_DOCUMENT_BYTES


@dataclass(frozen=True)
class Settings:
    project: str
    ready_topic: str
    transient_items: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        import os

        env = require_env(SERVICE, os.environ if environ is None else environ)
        fault = env.get("FAULT_TRANSIENT_ITEMS", "")
        return cls(
            project=env["GCP_PROJECT_ID"],
            ready_topic=env["READY_TOPIC"],
            transient_items=frozenset(x.strip() for x in fault.split(",") if x.strip()),
        )


class TransientError(RuntimeError):
    """Retrying later may succeed: answer 503."""


def create_app(
    *,
    environ: Mapping[str, str] | None = None,
    predictor: Predictor | None = None,
    publisher: Callable[[Settings], Any] | None = None,
    exit_on_config_error: bool = False,
) -> FastAPI:
    """The worker app; configuration is read at start-up (see the coordinator's create_app)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging()
        try:
            settings = Settings.from_env(environ)
        except MissingEnvironment as exc:
            if exit_on_config_error:
                exit_with_config_error(exc)
            raise
        enable_timings(app, os.environ if environ is None else environ)
        pub = (publisher or _default_publisher)(settings)
        app.state.settings = settings
        app.state.publisher = pub
        app.state.predictor = predictor or RecencyWeightedMean()
        if settings.transient_items:
            log.warning("fault injection on", transient_items=sorted(settings.transient_items))
        log.info("worker started", project=settings.project, topic=pub.topic)
        try:
            yield
        finally:
            closing = pub.close()
            if hasattr(closing, "__await__"):
                await closing

    app = FastAPI(title=SERVICE, lifespan=lifespan)
    app.add_middleware(RequestTimings)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": SERVICE}

    @app.post("/")
    async def handle(request: Request):
        raw = await read_body(request)
        try:
            message = parse_push(raw)
        except MalformedEnvelope as exc:
            # Nobody to report to: acknowledge so it is not retried forever, and log it.
            log.error("malformed message acknowledged", error=str(exc))
            return {"status": "dropped", "error": str(exc)}
        try:
            data = message.json(max_bytes=MAX_WORK_MESSAGE_BYTES)
            batch_id, item_id = data.get("batch_id"), data.get("item_id")
            if not isinstance(batch_id, str) or not batch_id:
                raise MalformedEnvelope("message has no string 'batch_id'")
            if not isinstance(item_id, str) or not item_id:
                raise MalformedEnvelope("message has no string 'item_id'")
        except UnreadableData as exc:
            batch_id = message.attributes.get("batch_id")
            item_id = message.attributes.get("item_id")
            if not batch_id or not item_id:
                log.error("unreadable message acknowledged", error=str(exc))
                return {"status": "dropped", "error": str(exc)}
            # Permanent, and the attributes name the item: report it failed.
            data = {"batch_id": batch_id, "item_id": item_id, "unreadable": str(exc)}
        except MalformedEnvelope as exc:
            log.error("malformed message acknowledged", error=str(exc))
            return {"status": "dropped", "error": str(exc)}
        try:
            return await _process(request.app, message, data, batch_id, item_id)
        except TransientError as exc:
            log.warning(
                "transient failure: asking for redelivery",
                batch_id=batch_id,
                item_id=item_id,
                error=str(exc),
                delivery_attempt=message.delivery_attempt,
            )
            return JSONResponse(status_code=503, content={"retry": True, "error": str(exc)})

    return app


async def _process(
    app: FastAPI, message, data: dict, batch_id: str, item_id: str
) -> dict[str, Any]:
    """Predict and publish the completion, in the event loop: the baseline's prediction takes
    microseconds and the publish is awaited (a heavy model would go to a thread instead)."""
    settings: Settings = app.state.settings
    if item_id in settings.transient_items:
        raise TransientError(f"injected transient failure for item {item_id}")
    payload = data.get("payload")
    completion: dict[str, Any] = {"batch_id": batch_id, "item_id": item_id}
    try:
        if "unreadable" in data:
            raise PermanentPredictionError(f"work item unreadable: {data['unreadable']}")
        if not isinstance(payload, dict):
            raise PermanentPredictionError("message has no 'payload' object")
        prediction = app.state.predictor.predict(payload)
        completion.update(status="ok", prediction=prediction, error=None)
    except PermanentPredictionError as exc:
        completion.update(status="failed", prediction=None, error=str(exc))
    try:
        await app.state.publisher.publish(
            completion, batch_id=batch_id, item_id=item_id, status=completion["status"]
        )
    except Exception as exc:  # noqa: BLE001 - any publish failure is worth a retry
        raise TransientError(
            f"could not publish the completion: {type(exc).__name__}: {exc}"
        ) from exc
    if completion["status"] == "failed":
        log.info(
            "permanent failure acknowledged",
            batch_id=batch_id,
            item_id=item_id,
            error=completion["error"],
        )
    return {
        "status": completion["status"],
        "batch_id": batch_id,
        "item_id": item_id,
        "error": completion["error"],
    }


def _default_publisher(settings: Settings) -> AsyncJsonPublisher:
    # One completion per request, waited for: published at once by the async client, no
    # batching window and no thread (shared/pubsub.py says why).
    return AsyncJsonPublisher(settings.project, settings.ready_topic)


__all__ = ["create_app", "Settings", "TransientError"]
