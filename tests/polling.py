"""The tests' one polling loop: wait until something observable becomes true.

A fixed-interval poll of a predicate, not a retry of a failing call (in the library code that
is google.api_core's Retry): the tests wait for a process, a batch or a subscription to reach
a state, and fail naming what they waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str | Callable[[], str] = "the condition",
) -> T:
    """Call ``predicate()`` every ``interval`` seconds until it returns something truthy, and
    return that. Once ``timeout`` seconds have passed (it is still called one last time) raise
    ``AssertionError`` naming ``what`` (a callable: evaluated then, to show the last state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {detail}")
        time.sleep(interval)
