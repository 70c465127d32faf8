"""processes.poll: until done or the deadline, the last result either way; errors end it."""

from __future__ import annotations

import time

import pytest

from scripts import processes


def test_poll_returns_the_first_result_that_is_done():
    results = iter([0, 1, 2, 3])
    assert processes.poll(lambda: next(results), done=lambda n: n >= 2, timeout=5, interval=0) == 2


def test_poll_returns_the_last_result_when_the_deadline_passes():
    calls: list[float] = []

    def check() -> int:
        calls.append(time.monotonic())
        return len(calls)

    last = processes.poll(check, done=lambda _n: False, timeout=0.3, interval=0.05)
    assert last == len(calls) >= 3, calls
    assert calls[-1] - calls[0] >= 0.25


def test_an_error_in_the_check_ends_the_poll_at_once():
    calls = []

    def check() -> bool:
        calls.append(1)
        raise RuntimeError("the process exited")

    with pytest.raises(RuntimeError, match="exited"):
        processes.poll(check, done=bool, timeout=5, interval=0.01)
    assert len(calls) == 1
