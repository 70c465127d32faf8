"""Per-path request timings, opt-in (``REQUEST_TIMINGS=1``), for measuring each push hop.

A plain ASGI middleware (no per-request allocation beyond one float when off): when enabled it
keeps the last :data:`KEEP` durations per path and answers ``GET /debug/timings`` (``?reset=1``
clears them) with their count and percentiles in milliseconds. The local benchmark turns it on
to report each hop's median service time; it is off in the cloud (the env contract lists it
as optional and the program never sets it).
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

__all__ = ["ENV_VAR", "KEEP", "RequestTimings", "enable", "summary"]

ENV_VAR = "REQUEST_TIMINGS"
KEEP = 20_000
_PATH = "/debug/timings"


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(int(q * len(sorted_values)), len(sorted_values) - 1)
    return sorted_values[k]


def summary(durations: dict[str, deque[float]]) -> dict[str, dict[str, float]]:
    out = {}
    for path, values in sorted(durations.items()):
        ordered = sorted(values)
        out[path] = {
            "count": len(ordered),
            "p50_ms": round(_percentile(ordered, 0.5) * 1000, 2),
            "p90_ms": round(_percentile(ordered, 0.9) * 1000, 2),
            "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
        }
    return out


def enable(app: Any, environ: Any) -> bool:
    """At start-up: turn the timings on for ``app`` when ``REQUEST_TIMINGS=1``."""
    on = str(environ.get(ENV_VAR, "")) == "1"
    app.state.request_timings = {} if on else None
    return on


class RequestTimings:
    """ASGI middleware (``app.add_middleware(RequestTimings)``); records only when the app's
    ``state.request_timings`` is a dict (see :func:`enable`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        owner = scope.get("app")
        durations = getattr(getattr(owner, "state", None), "request_timings", None)
        if durations is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == _PATH:
            body = json.dumps(summary(durations)).encode()
            if b"reset=1" in scope.get("query_string", b""):
                durations.clear()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            values = durations.get(path)
            if values is None:
                values = durations[path] = deque(maxlen=KEEP)
            values.append(time.perf_counter() - started)
