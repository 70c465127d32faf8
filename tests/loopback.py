"""A real HTTP server on loopback that records what it is sent (the ``http_server`` fixture of
tests/conftest.py): webhooks, GitHub's REST API, a coordinator's ``/start`` and ``/status``.

By default it answers 200 (``{"id": n}`` to a POST to ``.../deployments``, as GitHub does);
``route(recorded) -> (status, payload)`` answers instead when set (return None to fall back).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Recorded", "Server", "serve"]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any


@dataclass
class Server:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    status: int = 200
    next_id: int = 41
    route: Callable[[Recorded], tuple[int, Any] | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def answer(self, request: Recorded) -> tuple[int, Any]:
        if self.route is not None:
            routed = self.route(request)
            if routed is not None:
                return routed
        if request.method == "POST" and request.path.endswith("/deployments"):
            with self._lock:
                self.next_id += 1
                return self.status, {"id": self.next_id}
        return self.status, {"ok": True}

    def posted(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]


@contextmanager
def serve() -> Iterator[Server]:
    state: Server

    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length", 0) or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            recorded = Recorded(
                method, self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            with state._lock:
                state.requests.append(recorded)
            status, payload = state.answer(recorded)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 - http.server's name
            self._handle("POST")

        def do_GET(self):  # noqa: N802
            self._handle("GET")

        def log_message(self, *args):  # keep test output quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Server(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
