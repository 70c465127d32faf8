"""Google API durations: written and read in one place, by protobuf's own Duration."""

from __future__ import annotations

import pytest

from infra.durations import api_duration, api_seconds


@pytest.mark.parametrize(("seconds", "text"), [(600, "600s"), (0, "0s"), (0.5, "0.500s")])
def test_written_as_the_apis_take_them(seconds: float, text: str) -> None:
    assert api_duration(seconds) == text
    assert api_seconds(text) == seconds


@pytest.mark.parametrize("value", [None, "", "600", "10m", "abc", True, ["600s"]])
def test_anything_else_is_not_a_duration(value: object) -> None:
    assert api_seconds(value) is None


def test_numbers_are_seconds() -> None:
    assert api_seconds(300) == 300.0 and api_seconds(1.5) == 1.5
