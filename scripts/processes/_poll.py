"""Waiting for a condition with a deadline (tenacity), for readiness and progress polls."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

__all__ = ["poll"]

T = TypeVar("T")


def poll(
    check: Callable[[], T],
    *,
    done: Callable[[T], bool],
    timeout: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``check`` every ``interval`` s until ``done(result)`` or ``timeout`` s have passed;
    the last result either way (the caller tells a timeout by ``done``). An exception from
    ``check`` ends the wait at once and is raised: a process that exited is not retried.

    A fixed interval, no jitter: these poll a local port or a status page, not a shared
    service that a herd of retries could overload. ``sleep``: what waits between calls (tests
    pass one that returns at once).
    """
    return tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda result: not done(result)),
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result(),
    )(check)
