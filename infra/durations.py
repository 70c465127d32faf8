"""Google API durations (``"600s"``): the one place that writes and reads them.

Cloud Run's request timeout, Pub/Sub's backoff and retention, and Cloud Scheduler's deadlines
are ``google.protobuf.Duration`` values, which the APIs and Pulumi take in their JSON form:
seconds with an ``s`` suffix (``"600s"``, ``"0.5s"``).
https://protobuf.dev/reference/protobuf/google.protobuf/#duration
protobuf's own ``Duration`` writes and parses that form, so nothing here hand-rolls it.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.duration_pb2 import Duration

__all__ = ["api_duration", "api_seconds"]


def api_duration(seconds: float) -> str:
    """``600`` -> ``"600s"``, as a Google API (and the Pulumi provider) takes a duration."""
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1_000_000_000))
    return duration.ToJsonString()


def api_seconds(value: Any) -> float | None:
    """``"600s"`` or ``600`` -> ``600.0``; ``None`` for anything that is not a duration
    (an unknown value in a preview, an empty string, ``"10m"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    duration = Duration()
    try:
        duration.FromJsonString(value)
    except ValueError:
        return None
    return duration.ToTimedelta().total_seconds()
