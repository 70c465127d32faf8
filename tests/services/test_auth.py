"""The coordinator's operator endpoints: the API key before the body, and bounded bodies.

``/start`` and ``/admin/clear-batch`` once read and validated a 10 MB unauthenticated body and
answered 422 with the validation details before looking at the key. The ASGI-level test drives
the app with a ``receive`` that counts what it hands out, so "not read" is observed, not
assumed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.coordinator.app import ADMIN_MAX_BODY_BYTES, START_MAX_BODY_BYTES
from tests.services.conftest import API_KEY, items

pytestmark = pytest.mark.emulator

TEN_MB = 10 * 1000 * 1000
OPERATOR_PATHS = ["/start", "/admin/clear-batch"]


def _asgi_post(app: Any, path: str, headers: dict[str, str], chunks: list[bytes]):
    """POST ``chunks`` to ``app`` over ASGI; returns (status, body, chunks the app received)."""
    handed: list[int] = []
    sent: list[dict] = []

    async def receive() -> dict:
        if len(handed) < len(chunks):
            handed.append(len(chunks[len(handed)]))
            return {
                "type": "http.request",
                "body": chunks[len(handed) - 1],
                "more_body": len(handed) < len(chunks),
            }
        await asyncio.sleep(3600)  # a client that sends nothing more
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "app": app,
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, handed


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_a_request_without_the_key_is_refused_before_its_body_is_read(coordinator, path):
    chunk = b"x" * (1024 * 1024)
    headers = {"content-type": "application/json", "content-length": str(10 * len(chunk))}
    status, body, handed = _asgi_post(coordinator.client.app, path, headers, [chunk] * 10)
    assert status == 401, body
    assert json.loads(body) == {"detail": "missing or wrong X-API-Key"}
    assert handed == [], f"the app read {sum(handed):,} body bytes before refusing"


@pytest.mark.parametrize("path", OPERATOR_PATHS)
@pytest.mark.parametrize("key", [None, "nope"])
def test_a_large_invalid_body_without_the_right_key_is_401_not_422(coordinator, path, key):
    headers = {"X-API-Key": key} if key else {}
    resp = coordinator.client.post(
        path, content=b"{" + b" " * TEN_MB, headers={**headers, "content-type": "application/json"}
    )
    assert resp.status_code == 401, resp.text[:300]
    assert "loc" not in resp.text, "no validation details to an unauthenticated caller"


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/start", START_MAX_BODY_BYTES), ("/admin/clear-batch", ADMIN_MAX_BODY_BYTES)],
)
def test_an_authorized_body_above_the_limit_is_413(coordinator, path, limit):
    resp = coordinator.client.post(
        path,
        content=b" " * (limit + 1),
        headers={"X-API-Key": API_KEY, "content-type": "application/json"},
    )
    assert resp.status_code == 413, resp.text[:300]
    assert resp.json() == {"detail": f"request body exceeds {limit:,} bytes"}


def test_a_body_streamed_past_the_limit_is_413_and_read_no_further(coordinator):
    """No (or a false) Content-Length: the limit still holds, and reading stops at it."""
    chunk = b" " * (1024 * 1024)
    n = ADMIN_MAX_BODY_BYTES // len(chunk) + 5
    status, body, handed = _asgi_post(
        coordinator.client.app,
        "/admin/clear-batch",
        {"x-api-key": API_KEY, "content-type": "application/json"},
        [chunk] * n,
    )
    assert status == 413, body
    assert len(handed) == 1, f"read {len(handed)} chunks past a {ADMIN_MAX_BODY_BYTES} limit"


def test_with_the_key_validation_still_answers_422_with_details(coordinator):
    resp = coordinator.client.post("/start", json={"items": []}, headers={"X-API-Key": API_KEY})
    assert resp.status_code == 422, resp.text
    (error,) = resp.json()["detail"]
    assert error["loc"] == ["body", "items"], error
    bad_json = coordinator.client.post(
        "/start", content=b"{not json", headers={"X-API-Key": API_KEY}
    )
    assert bad_json.status_code == 422, bad_json.text
    assert coordinator.start(items(2), batch_id="b-auth-ok").status_code == 202
