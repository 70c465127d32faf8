"""Reading an HTTP request's body with a bound, only once the caller is authorized.

FastAPI reads and validates a declared body parameter before the endpoint (or its dependencies
after the body) runs: an unauthenticated 10 MB body was read, parsed and answered 422 with the
validation details before the API key was looked at. Endpoints that check a key therefore take
no body parameter; they check the key, then read at most ``limit`` bytes here (a declared
``Content-Length`` above it is refused before a byte is read), then validate.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BodyTooLarge", "read_limited"]


class BodyTooLarge(ValueError):
    """The body is larger than the endpoint accepts (answer 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body exceeds {limit:,} bytes")


async def read_limited(request: Any, limit: int) -> bytes:
    """The body of a Starlette ``request``, at most ``limit`` bytes; raises
    :class:`BodyTooLarge` as soon as it is known to be larger (reads no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
