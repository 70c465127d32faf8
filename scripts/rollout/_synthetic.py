"""The post-deploy synthetic batch over the coordinator's HTTP API (any stack with a URL).

Items are marked synthetic (batch metadata ``synthetic: true``, ids ``synthetic-...``) so an
operator and the statistics can tell them from real work. Completion is observed through
``GET /status/{batch_id}``; the dead-letter count comes from the caller (Pub/Sub peek of the
stack's dead-letter subscriptions, messages left in place).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from scripts import processes
from shared.contract import API_KEY_HEADER, START_PATH, STATUS_PATH

from ._check import CheckPolicy, CheckResult, judge_check

__all__ = ["synthetic_batch_id", "synthetic_items", "run_synthetic_check"]

POLL_S = 2.0
REQUEST_TIMEOUT_S = 30.0


def synthetic_batch_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"synthetic-{now:%Y%m%dT%H%M%S}-{os.urandom(3).hex()}"


def synthetic_items(n: int) -> list[dict[str, Any]]:
    """``n`` items the worker's baseline predicts (every one predictable)."""
    return [
        {
            "item_id": f"synthetic-{i:05d}",
            "player": f"synthetic {i}",
            "status": "ACTIVE",
            "recent_values": [10.0 + (i % 7), 12.5, 9.0, 14.0, 11.0],
        }
        for i in range(n)
    ]


def run_synthetic_check(
    base_url: str,
    policy: CheckPolicy,
    *,
    api_key: str,
    count_dead_letters: Callable[[str], int],
    auth_header: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    on_output: Callable[[str], None] | None = None,
) -> CheckResult:
    """Start a synthetic batch at ``base_url`` and judge it; never raises for a failed check
    (an unreachable coordinator is a failed check with the reason)."""
    say = on_output or (lambda _m: None)
    http = client or httpx.Client(timeout=REQUEST_TIMEOUT_S)
    headers = {API_KEY_HEADER: api_key, **(auth_header or {})}
    batch_id = synthetic_batch_id()
    t0 = monotonic()

    def failed(why: str, status: Mapping[str, Any] | None = None) -> CheckResult:
        result = judge_check(
            policy,
            batch_id=batch_id,
            status=status or {"state": "not-started"},
            dead_lettered=0,
            elapsed_s=monotonic() - t0,
            target=base_url,
        )
        return dataclasses.replace(result, ok=False, problems=(why, *result.problems))

    body = {
        "batch_id": batch_id,
        "items": synthetic_items(policy.items),
        "metadata": {"synthetic": True, "purpose": "post-deploy check"},
    }
    try:
        response = http.post(base_url.rstrip("/") + START_PATH, json=body, headers=headers)
    except httpx.HTTPError as exc:
        return failed(f"coordinator not reachable at {base_url} ({type(exc).__name__})")
    if response.status_code not in (200, 202):
        return failed(f"{START_PATH} answered HTTP {response.status_code}")
    say(f"synthetic batch {batch_id}: {policy.items} items started at {base_url}")
    status: dict[str, Any] = {}

    def read_status() -> dict[str, Any]:
        nonlocal status
        try:
            got = http.get(f"{base_url.rstrip('/')}{STATUS_PATH}/{batch_id}", headers=headers)
            if got.status_code == 200:
                status = got.json()
        except httpx.HTTPError:
            pass  # transient: the deadline decides (the last status read stands)
        return status

    status = processes.poll(
        read_status,
        done=lambda s: s.get("state") not in (None, "publishing", "running"),
        timeout=max(0.0, t0 + policy.timeout.total_seconds() - monotonic()),
        interval=POLL_S,
        sleep=sleep,
    )
    result = judge_check(
        policy,
        batch_id=batch_id,
        status=status or {"state": "unknown"},
        dead_lettered=count_dead_letters(batch_id),
        elapsed_s=monotonic() - t0,
        target=base_url,
    )
    say(f"synthetic batch {batch_id}: {result.detail}")
    return result
