"""The coordinator: starts batches, publishes their items, counts completions, finishes stalls.

Endpoints (the Pulumi program wires them; see the README's "Services" section):

* ``POST /start`` (``X-API-Key``, checked before the body is read; at most
  :data:`START_MAX_BODY_BYTES`): create a batch and answer 202 at once; publishing happens in
  a background thread (the service runs with CPU always allocated for that reason).
  Idempotent per ``batch_id``: a second call answers 200 with the batch's status.
* ``POST /complete``: Pub/Sub push of a worker's completion; counted once per item the batch
  published while it is open, anything else acknowledged and recorded as a stray (see
  :mod:`shared.batch_store`). Only a transient error (Firestore unreachable, a deadline) is
  answered 503; everything permanent (malformed, too large, too deep) is acknowledged.
* ``GET /status/{batch_id}``: exact counts, percent, age, state.
* ``POST /check-stalled`` (scheduler, every 15 min): re-sends the open items of idle batches,
  closes them once the attempts are spent; ``POST /cleanup-stuck`` (hourly).
* ``POST /admin/clear-batch`` (``X-API-Key`` first, like ``/start``): complete, fail or
  delete a batch, with a reason.
* ``GET /healthz``.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from services.coordinator.settings import SERVICE, Settings
from shared.batch_model import (
    BatchNotFound,
    Clock,
    CompletionOutcome,
    InvalidBatchId,
    InvalidItemId,
    utcnow,
    validate_batch_id,
    validate_item_id,
)
from shared.contract import MissingEnvironment
from shared.events import EVENT_FIELD, BatchEvent, log_finish
from shared.limits import FIRESTORE_MAX_WRITES_PER_COMMIT
from shared.log import configure_logging, get_logger
from shared.pubsub import JsonPublisher, MalformedEnvelope, UnreadableData, parse_push, read_body
from shared.request_body import BodyTooLarge, read_limited
from shared.startup import ConfigError, exit_with_config_error
from shared.timing import RequestTimings
from shared.timing import enable as enable_timings

log = get_logger("coordinator")

#: Items registered (one Firestore commit) and then published per chunk.
PUBLISH_CHUNK = FIRESTORE_MAX_WRITES_PER_COMMIT
#: Seconds to wait for one chunk's publish futures.
PUBLISH_CHUNK_TIMEOUT_S = 120.0
#: Publishing progress is written to the batch document at most this often.
PUBLISH_NOTE_INTERVAL_S = 1.0
_ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
#: The largest /start body read (after the key is checked): a 5,000-item batch of typical items
#: is about 0.4 MB; 16 MiB is well above any batch started in one call, and under Cloud Run's
#: 32 MiB HTTP/1 request limit (https://cloud.google.com/run/quotas).
START_MAX_BODY_BYTES = 16 * 1024 * 1024
#: /admin/clear-batch takes a batch id, a reason and an action: a few hundred bytes.
ADMIN_MAX_BODY_BYTES = 16 * 1024

if TYPE_CHECKING:  # the Google clients load at start-up, not at import (fast image check)
    from services.coordinator.progress import ProgressTracker
    from shared.batch_store import BatchStore


def _transient_errors() -> tuple[type[Exception], ...]:
    """Google API errors worth a redelivery (answer 503)."""
    from google.api_core import exceptions as gexc

    return (
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
        gexc.TooManyRequests,
        gexc.Aborted,
        gexc.RetryError,
    )


class StartRequest(BaseModel):
    batch_id: str | None = Field(None, description="idempotency key; generated if omitted")
    items: list[dict[str, Any]] = Field(
        ..., min_length=1, description="work items; each may carry 'item_id' (else its index)"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)


class CheckRequest(BaseModel):
    dry_run: bool = False


class ClearRequest(BaseModel):
    batch_id: str
    reason: str = Field(..., min_length=1)
    action: Literal["fail", "complete", "delete"] = "fail"


@dataclass
class Runtime:
    settings: Settings
    store: BatchStore
    publisher: Any  # JsonPublisher-like: publish_async(payload, **attrs), send(topic, msgs)
    executor: ThreadPoolExecutor
    clock: Clock
    progress: ProgressTracker


def create_app(
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    firestore_client: Callable[[Settings], Any] | None = None,
    publisher: Callable[[Settings], Any] | None = None,
    exit_on_config_error: bool = False,
) -> FastAPI:
    """The coordinator app. Configuration is read at start-up (lifespan), not at import.

    ``clock`` (aware UTC datetimes) drives every timestamp and the stall rules; tests inject
    one. ``exit_on_config_error`` (the module-level app) turns a missing variable into one
    log line and exit code 78 instead of a traceback.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging()
        try:
            settings = Settings.from_env(environ)
        except (MissingEnvironment, ConfigError) as exc:
            if exit_on_config_error:
                exit_with_config_error(exc)
            raise
        enable_timings(app, os.environ if environ is None else environ)
        from services.coordinator.progress import ProgressTracker
        from shared.batch_store import BatchStore

        now = clock or utcnow
        db = (firestore_client or _default_firestore)(settings)
        pub = (publisher or _default_publisher)(settings)
        store = BatchStore(db, clock=now)
        runtime = Runtime(
            settings=settings,
            store=store,
            publisher=pub,
            executor=ThreadPoolExecutor(max_workers=4, thread_name_prefix="publish"),
            clock=now,
            progress=ProgressTracker(store.refresh),
        )
        app.state.runtime = runtime
        started = time.perf_counter()
        try:
            runtime.store.ping()
            log.info("firestore reachable", seconds=round(time.perf_counter() - started, 3))
        except Exception as exc:  # noqa: BLE001 - serve anyway; requests report their errors
            log.warning("firestore not reachable at start-up", error=str(exc))
        log.info("coordinator started", project=settings.project, topic=pub.topic)
        try:
            yield
        finally:
            # Cloud Run gives 10 s after SIGTERM; a batch cut short is failed by the stall
            # check (publish_failed), never left pending.
            runtime.executor.shutdown(wait=True, cancel_futures=False)
            runtime.progress.close()
            pub.close()

    app = FastAPI(title=SERVICE, lifespan=lifespan)
    app.add_middleware(RequestTimings)

    def rt(request: Request) -> Runtime:
        return request.app.state.runtime

    def check_key(request: Request, key: str | None) -> None:
        expected = rt(request).settings.api_key.encode()
        if key is None or not hmac.compare_digest(key.encode(), expected):
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")

    def authorized_body(model: type[BaseModel], limit: int):
        """A dependency: the API key first (401 before a byte of the body is read), then at
        most ``limit`` bytes (413), then ``model``'s validation (422, as a body parameter)."""

        async def body(request: Request, x_api_key: str | None = Header(default=None)):
            check_key(request, x_api_key)
            try:
                raw = await read_limited(request, limit)
            except BodyTooLarge as exc:
                raise HTTPException(status_code=413, detail=str(exc)) from None
            try:
                return model.model_validate_json(raw or b"null")
            except ValidationError as exc:
                errors = exc.errors(include_url=False, include_context=False)
                raise RequestValidationError(
                    [{**e, "loc": ("body", *e["loc"])} for e in errors]
                ) from None

        return body

    start_body = authorized_body(StartRequest, START_MAX_BODY_BYTES)
    clear_body = authorized_body(ClearRequest, ADMIN_MAX_BODY_BYTES)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": SERVICE}

    @app.post("/start", status_code=202)
    def start(
        request: Request,
        # A default, not Annotated: this module's annotations are strings, resolved in its
        # globals, where the closure is not.
        body: StartRequest = Depends(start_body),  # noqa: B008
    ):
        runtime = rt(request)
        batch_id = body.batch_id or f"batch-{runtime.clock():%Y%m%dT%H%M%S}-{_short_uuid()}"
        try:
            validate_batch_id(batch_id)
        except InvalidBatchId as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        items = _normalise_items(body.items)
        batch, created = runtime.store.create(
            batch_id,
            len(items),
            metadata={**body.metadata, "source": "api"},
            request_topic=runtime.publisher.topic,
        )
        now = runtime.clock()
        if not created:
            log.info("start: batch exists", batch_id=batch_id, state=str(batch.state))
            return JSONResponse(
                status_code=200,
                content={
                    "created": False,
                    **batch.summary(now),
                    "status_url": f"/status/{batch_id}",
                },
            )
        log.info("batch created", batch_id=batch_id, total_items=len(items))
        runtime.executor.submit(_publish_batch, runtime, batch_id, items)
        return {"created": True, **batch.summary(now), "status_url": f"/status/{batch_id}"}

    @app.post("/complete")
    async def complete(request: Request):
        raw = await read_body(request)
        runtime = rt(request)
        unreadable: str | None = None
        try:
            message = parse_push(raw)
            try:
                data = message.json()
            except UnreadableData as exc:
                # The data can never be read; the worker's attributes still name the item,
                # whose outcome is then this failure (permanent, so acknowledged).
                unreadable = str(exc)
                attrs = message.attributes
                data = {
                    "batch_id": attrs.get("batch_id"),
                    "item_id": attrs.get("item_id"),
                    "status": "failed",
                    "error": f"completion unreadable: {exc}",
                }
            batch_id = _str_field(data, "batch_id")
            item_id = _str_field(data, "item_id")
            status = data.get("status")
            if status not in ("ok", "failed"):
                raise MalformedEnvelope(f"status {status!r} is not 'ok' or 'failed'")
            validate_batch_id(batch_id)
            validate_item_id(item_id)
            error = data.get("error")
            if error is not None and not isinstance(error, str):
                error = str(error)
        except (MalformedEnvelope, InvalidBatchId, InvalidItemId) as exc:
            # Permanent: acknowledge, or Pub/Sub retries it forever.
            log.warning("complete: malformed message acknowledged", error=unreadable or str(exc))
            return {"acknowledged": True, "outcome": "malformed", "error": unreadable or str(exc)}
        try:
            outcome = await _in_thread(
                runtime.store.record_completion,
                batch_id,
                item_id,
                ok=status == "ok",
                prediction=data.get("prediction"),
                error=error,
                message_id=message.message_id,
            )
        except _transient_errors() as exc:
            log.warning(
                "complete: transient error, asking for redelivery",
                batch_id=batch_id,
                item_id=item_id,
                error=str(exc),
            )
            return JSONResponse(status_code=503, content={"retry": True, "error": str(exc)})
        if outcome == CompletionOutcome.RECORDED:
            runtime.progress.note(batch_id)
        else:
            log.info(
                "complete: acknowledged, not counted",
                outcome=str(outcome),
                batch_id=batch_id,
                item_id=item_id,
            )
        return {
            "acknowledged": True,
            "outcome": str(outcome),
            "batch_id": batch_id,
            "item_id": item_id,
        }

    @app.get("/status/{batch_id}")
    def status(request: Request, batch_id: str):
        runtime = rt(request)
        try:
            batch = runtime.store.status(batch_id)
        except InvalidBatchId as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        if batch is None:
            raise HTTPException(status_code=404, detail=f"no batch {batch_id!r}")
        return batch.summary(runtime.clock())

    def sweep(request: Request, body: CheckRequest | None, event: str, method: str) -> dict:
        """A scheduled sweep over the batches (the store's ``method``), each action logged."""
        runtime = rt(request)
        dry_run = bool(body and body.dry_run)
        now = runtime.clock()
        run = getattr(runtime.store, method)
        kwargs = {"send": runtime.publisher.send} if method == "check_stalled" else {}
        actions = run(runtime.settings.policy, now=now, dry_run=dry_run, **kwargs)
        for a in actions:
            log.info(event, **a.to_dict(), dry_run=dry_run)
            log_finish(log, a, dry_run=dry_run)  # the alerts' contract: shared/events.py
        return {
            "checked_at": now.isoformat(),
            "dry_run": dry_run,
            "actions": [a.to_dict() for a in actions],
        }

    @app.post("/check-stalled")
    def check_stalled(request: Request, body: Annotated[CheckRequest | None, Body()] = None):
        return sweep(request, body, "check-stalled", "check_stalled")

    @app.post("/cleanup-stuck")
    def cleanup_stuck(request: Request, body: Annotated[CheckRequest | None, Body()] = None):
        return sweep(request, body, "cleanup-stuck", "cleanup_stuck")

    @app.post("/admin/clear-batch")
    def clear_batch(
        request: Request,
        body: ClearRequest = Depends(clear_body),  # noqa: B008
    ):
        store = rt(request).store
        reason = f"cleared by operator: {body.reason}"
        try:
            if body.action == "delete":
                result = store.delete(body.batch_id, reason)
                log.info("clear-batch: deleted", **result)
                return {"action": "delete", **result}
            done = store.finish(body.batch_id, body.action, reason)
        except BatchNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except InvalidBatchId as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        log.info("clear-batch", **done.to_dict())
        if not done.applied:
            return JSONResponse(status_code=409, content=done.to_dict())
        return done.to_dict()

    return app


def _publish_batch(runtime: Runtime, batch_id: str, items: list[tuple[str, dict]]) -> None:
    """Register each chunk of items, then publish it: an item exists before any worker can
    complete it. Progress reaches the batch document at most once a second."""
    from shared.batch_store import work_message

    store, publisher = runtime.store, runtime.publisher
    published = 0
    noted_at = time.monotonic()  # the batch document was just created
    try:
        for start in range(0, len(items), PUBLISH_CHUNK):
            chunk = items[start : start + PUBLISH_CHUNK]
            store.register_items(batch_id, chunk)
            futures = [
                _publish_one(publisher, work_message(batch_id, item_id, payload, 1))
                for item_id, payload in chunk
            ]
            for f in futures:
                f.result(timeout=PUBLISH_CHUNK_TIMEOUT_S)
            published += len(chunk)
            if published < len(items) and time.monotonic() - noted_at >= PUBLISH_NOTE_INTERVAL_S:
                store.note_published(batch_id, published)
                noted_at = time.monotonic()
        if store.mark_published(batch_id, published):
            log.info("batch published", batch_id=batch_id, total_items=len(items))
        else:
            log.warning("batch finished while publishing", batch_id=batch_id)
    except Exception as exc:  # noqa: BLE001 - any failure must finish the batch, not leave it
        log.exception(
            "publishing failed",
            **{EVENT_FIELD: str(BatchEvent.PUBLISH_FAILED)},
            batch_id=batch_id,
        )
        try:
            store.mark_publish_failed(batch_id, f"{type(exc).__name__}: {exc}")
        except Exception:  # pragma: no cover - the stall check marks it later
            log.exception("could not mark publish failure; the stall check will", batch_id=batch_id)


def _publish_one(publisher: Any, message: tuple[dict[str, Any], dict[str, str]]):
    payload, attributes = message
    return publisher.publish_async(payload, **attributes)


def _normalise_items(items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    width = max(len(str(len(items))), 5)
    seen: set[str] = set()
    result = []
    problems = []
    for i, item in enumerate(items):
        payload = dict(item)
        item_id = str(payload.pop("item_id", None) or f"item-{i:0{width}d}")
        if not _ITEM_ID.match(item_id):
            problems.append(f"items[{i}].item_id {item_id!r} is invalid")
        elif item_id in seen:
            problems.append(f"items[{i}].item_id {item_id!r} is a duplicate")
        else:
            try:
                _check_item(item_id, payload)
            except ValueError as exc:
                problems.append(f"items[{i}]: {exc}")
        seen.add(item_id)
        result.append((item_id, payload))
        if len(problems) >= 10:
            break
    if problems:
        raise HTTPException(status_code=422, detail=problems)
    return result


def _check_item(item_id: str, payload: dict[str, Any]) -> None:
    from shared.batch_store import BatchStore

    BatchStore.check_item(item_id, payload)


def _str_field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedEnvelope(f"message has no string '{name}'")
    return value


def _short_uuid() -> str:
    import uuid

    return uuid.uuid4().hex[:8]


async def _in_thread(fn, *args, **kwargs):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)


def _default_firestore(settings: Settings):
    from google.cloud import firestore

    return firestore.Client(project=settings.project, database=settings.firestore_database)


def _default_publisher(settings: Settings) -> JsonPublisher:
    return JsonPublisher(settings.project, settings.request_topic)


__all__ = ["create_app"]
