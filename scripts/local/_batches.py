"""Batches on the local platform, through the coordinator's HTTP API as a client sees it.

``POST /start`` with the API key (the coordinator's secret from ``.local/secrets.yaml``),
``GET /status/{id}`` until the batch ends, and the dead-letter subscriptions read (left in
place) to count what was lost; :func:`run_synthetic_batch` does all three and never raises
for a batch that fails. :func:`demo_items` makes the work items.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scripts import processes
from scripts.local._apply import PubSubAdmin
from scripts.local._errors import NotRunning, PlatformError
from scripts.local._secrets import load_secrets
from scripts.local._topology import ServiceSpec, Topology
from scripts.rollout import synthetic_batch_id, synthetic_items
from shared.contract import API_KEY_HEADER, START_PATH

__all__ = [
    "API_KEY_HEADER",
    "BatchClient",
    "BatchOutcome",
    "api_key",
    "coordinator",
    "dead_letters",
    "demo_items",
    "demo_summary",
    "run_synthetic_batch",
]

#: The header the coordinator reads the API key from (services/coordinator/app.py).
#: The coordinator's path that takes a batch.
HTTP_TIMEOUT_S = 30.0
#: Poll interval while waiting for a batch.
POLL_S = 0.25
#: Dead-letter messages inspected per subscription when counting a batch's dead letters.
DEAD_LETTER_PEEK = 1000
#: The states of a batch that has not ended yet (services/coordinator).
UNFINISHED = ("publishing", "running")

Status = dict[str, Any]


@dataclass(frozen=True)
class BatchOutcome:
    ok: bool
    batch_id: str
    state: str
    total: int
    completed: int
    failed: int
    dead_lettered: int
    elapsed_s: float
    detail: str = ""
    status: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = dict(self.status)
        return d


def demo_items(n: int, *, out_every: int = 0, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` work items for the worker's baseline; every ``out_every``-th player is OUT."""
    rnd = random.Random(seed)
    items = []
    width = max(len(str(n)), 5)
    for i in range(n):
        status = "OUT" if out_every and (i + 1) % out_every == 0 else "ACTIVE"
        items.append(
            {
                "item_id": f"player-{i:0{width}d}",
                "player": f"player {i}",
                "status": status,
                "recent_values": [round(rnd.uniform(5, 35), 1) for _ in range(5)],
            }
        )
    return items


def demo_summary(
    final: Status, *, batch_id: str, items: int, dead_letters: int, elapsed: float
) -> dict[str, Any]:
    """What ``platform local demo`` reports of a batch: its last ``final`` status, the dead
    letters it left and the rate over ``elapsed`` seconds; ``ok`` only if it completed."""
    return {
        "ok": final.get("state") == "completed",
        "batch_id": batch_id,
        "state": final.get("state"),
        "items": items,
        "done": final.get("done"),
        "completed": final.get("completed"),
        "permanent_failures": final.get("failed"),
        "dead_letters": dead_letters,
        "elapsed_s": round(elapsed, 2),
        "items_per_s": round((final.get("done") or 0) / elapsed, 1) if elapsed else None,
    }


def _http(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, Any]:
    """(status, decoded JSON answer, or its text if not JSON); HTTP errors are answers."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw or b"null")
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")


class BatchClient:
    """The coordinator at ``base_url``; ``api_key`` (header, value) is what ``/start`` needs
    (``/status`` needs none)."""

    def __init__(self, base_url: str, api_key: tuple[str, str] | None = None) -> None:
        self.base_url = base_url
        self.api_key = api_key

    def start(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        batch_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Status:
        """The coordinator's answer to ``/start``; PlatformError unless it took the batch."""
        body: dict[str, Any] = {"items": list(items), "metadata": dict(metadata or {})}
        if batch_id:
            body["batch_id"] = batch_id
        headers = dict([self.api_key]) if self.api_key else {}
        status, answer = _http("POST", self.base_url + START_PATH, body, headers)
        if status not in (200, 202):
            raise PlatformError(f"/start answered {status}: {answer}")
        return answer

    def status(self, batch_id: str) -> Status:
        status, answer = _http("GET", f"{self.base_url}/status/{batch_id}")
        if status != 200:
            raise PlatformError(f"/status/{batch_id} answered {status}: {answer}")
        return answer

    def wait(
        self,
        batch_id: str,
        *,
        timeout: float,
        on_progress: Callable[[Status], None] | None = None,
        until: Callable[[Status], bool] | None = None,
    ) -> Status:
        """Poll ``/status`` until the batch finishes (or ``until(status)``); the last status,
        also when ``timeout`` seconds passed first."""
        done = until or (lambda s: s.get("state") not in UNFINISHED)

        def progress() -> Status:
            status = self.status(batch_id)
            if on_progress:
                on_progress(status)
            return status

        return processes.poll(progress, done=done, timeout=timeout, interval=POLL_S)


def coordinator(topology: Topology | None) -> ServiceSpec:
    """The service that takes ``/start`` (:meth:`Topology.coordinator`); NotRunning before
    an apply, PlatformError when the stack has none."""
    if topology is None:
        raise NotRunning("the platform is not up")
    svc = topology.coordinator()
    if svc is None:
        raise PlatformError("no service of this stack takes /start with an API key")
    return svc


def api_key(svc: ServiceSpec, secrets_file: Path) -> tuple[str, str]:
    """(header, value) for ``/start``: ``svc``'s secret from ``secrets_file``."""
    secret = next(iter(svc.secret_env.values()))
    values = load_secrets(secrets_file, set(svc.secret_env.values()))
    return API_KEY_HEADER, values[secret]


def dead_letters(
    admin: PubSubAdmin, topology: Topology, *, batch_id: str | None = None
) -> dict[str, list[Any]]:
    """Messages each dead-letter subscription holds (left in place), optionally of a batch."""
    out = {}
    for sub in topology.dead_letter_subscriptions():
        msgs = admin.peek(sub.name, max_messages=DEAD_LETTER_PEEK)
        if batch_id is not None:
            msgs = [m for m in msgs if m.attributes.get("batch_id") == batch_id]
        out[sub.name] = msgs
    return out


def run_synthetic_batch(
    connect: Callable[[], BatchClient],
    count_dead_letters: Callable[[str], int],
    *,
    items: int,
    timeout: float,
    say: Callable[[str], None],
    on_progress: Callable[[Status], None] | None = None,
) -> dict[str, Any]:
    """Start a batch of ``items`` through ``/start`` and wait until it completes.

    ``connect``: the coordinator's client (PlatformError when it is not up);
    ``count_dead_letters(batch_id)``: how many of its messages were dead-lettered. Returns
    :class:`BatchOutcome` as a dict; ``ok`` only if it completed with every item done and
    nothing dead-lettered. Never raises for a batch that fails or does not start.
    """
    t0 = time.monotonic()
    # The same synthetic batch as the cloud's check (scripts.rollout): ids `synthetic-...`,
    # metadata `synthetic: true`, every item one the worker's baseline predicts.
    batch_id = synthetic_batch_id()
    try:
        client = connect()
        client.start(
            synthetic_items(items),
            batch_id=batch_id,
            metadata={"synthetic": True, "purpose": "post-deploy check"},
        )
    except (PlatformError, OSError) as exc:
        elapsed = round(time.monotonic() - t0, 3)
        status = {"state": "not-started", "completed": 0, "failed": 0}
        return BatchOutcome(
            False, batch_id, "not-started", items, 0, 0, 0, elapsed, str(exc), status
        ).to_dict()
    say(f"synthetic batch {batch_id}: {items} items started")
    status = client.wait(batch_id, timeout=timeout, on_progress=on_progress)
    elapsed = round(time.monotonic() - t0, 3)
    dead = count_dead_letters(batch_id)
    ok = status.get("state") == "completed" and status.get("done") == items and dead == 0
    detail = (
        f"{status.get('state')}: {status.get('completed')} completed, "
        f"{status.get('failed')} failed of {items} in {elapsed:.1f} s, "
        f"{dead} dead-lettered"
    )
    if status.get("state") in UNFINISHED:
        detail = f"not complete after {timeout:g} s: " + detail
    say(f"synthetic batch {batch_id}: {detail}")
    return BatchOutcome(
        ok,
        batch_id,
        str(status.get("state")),
        items,
        int(status.get("completed") or 0),
        int(status.get("failed") or 0),
        dead,
        elapsed,
        detail,
        status,
    ).to_dict()
