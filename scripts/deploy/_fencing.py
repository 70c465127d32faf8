"""Stopping a deploy once it may no longer hold the lock, or is told to stop: the fence checked
before each step that changes the world, the lost-lease message, and SIGINT/SIGTERM raising
:class:`Interrupted` once so that the cleanup (record, release) still runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._errors import Interrupted, LeaseLost

__all__ = ["signals_raise", "fence", "lost_message"]


@contextmanager
def signals_raise(on_signal: Callable[[int], None]) -> Iterator[None]:
    """SIGINT/SIGTERM raise :class:`Interrupted` once (after ``on_signal``); later ones are
    ignored so the cleanup (record, release) runs to the end. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            return
        fired.append(signum)
        on_signal(signum)
        raise Interrupted(f"received {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def fence(
    lost: threading.Event, why: list[str], stack: str, verify: Callable[[], None]
) -> Callable[[], None]:
    """Raises LeaseLost once the heartbeat has lost the lease, or ``verify`` (a read) finds it
    superseded (before each traffic change)."""

    def check() -> None:
        if lost.is_set():
            raise LeaseLost(lost_message(stack, why))
        verify()

    return check


def lost_message(stack: str, why: list[str]) -> str:
    return (
        f"the deploy lock on '{stack}' was lost during the deploy ({'; '.join(why) or '?'}): "
        "another run may now hold it"
    )
