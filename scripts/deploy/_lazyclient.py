"""A Google client made on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["LazyClient"]


class LazyClient:
    """A Google client made on first use: constructing one looks up credentials, which a dry
    run on a machine without them must not need (it stops at the tooling step instead)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._client is None:
            self._client = self._factory()
        return getattr(self._client, name)
