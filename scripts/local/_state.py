"""The local platform's state file: what runs (pids, ports), the applied topology, the stack.

One JSON document, ``state.json`` in the state directory (``.local/`` by default,
git-ignored), so another shell (``platform local status`` / ``down``) can find and stop what
``up`` started. Its shape::

    {"stack", "project", "root", "started_at", "applied_at",
     "emulators": {"firestore": {"host", "proc"}, "pubsub": {"host", "proc"}},
     "services": {NAME: {"port", "url", "config_hash", "proc"}},
     "scheduler": {"proc", "jobs", "runs"},
     "service_env": {NAME: {VAR: value}},   # local-only overrides (no secrets)
     "topology": {...}}

where each ``proc`` is a :class:`~scripts.local.processes.ProcRecord` as a dict.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.paths import REPO_ROOT
from scripts import processes
from scripts.local._topology import (
    AlertWatch,
    JobSpec,
    ServiceSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
)
from scripts.processes import ProcRecord

__all__ = [
    "DEFAULT_STATE_DIR",
    "REPO_ROOT",
    "STATE_FILE",
    "SECRETS_FILE",
    "read_state",
    "write_state",
    "record",
    "records",
    "record_applied",
    "stop_all",
    "remove_state",
    "topology_to_state",
    "topology_from_state",
]

DEFAULT_STATE_DIR = REPO_ROOT / ".local"
STATE_FILE = "state.json"
SECRETS_FILE = "secrets.yaml"
#: The scheduler's jobs (what it fires) and its runs (what it fired), in the state directory.
SCHEDULER_JOBS_FILE = "scheduler-jobs.json"
SCHEDULER_RUNS_FILE = "scheduler-runs.jsonl"
#: The process kinds a state holds, in the order ``down`` stops them.
STOP_ORDER = ("scheduler", "services", "emulators")


def read_state(state_dir: Path) -> dict[str, Any]:
    """The state in ``state_dir``; ``{}`` when there is none or it cannot be read."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_state(state_dir: Path, state: Mapping[str, Any]) -> None:
    """Replace the state file atomically (a reader never sees half a document)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def record(state: Mapping[str, Any], kind: str, name: str | None = None) -> ProcRecord | None:
    """The process of ``kind`` (``"scheduler"``) or of one ``name`` in it (a service)."""
    entry = state.get(kind)
    if name is not None:
        entry = (entry or {}).get(name)
    return ProcRecord.from_dict(entry["proc"]) if entry else None


def records(state: Mapping[str, Any], kinds: tuple[str, ...] = STOP_ORDER) -> list[ProcRecord]:
    """Every process recorded under ``kinds``, in that order."""
    out: list[ProcRecord] = []
    for kind in kinds:
        if kind == "scheduler":
            rec = record(state, kind)
            out += [rec] if rec is not None else []
        else:
            out += [ProcRecord.from_dict(e["proc"]) for e in (state.get(kind) or {}).values()]
    return out


def stop_all(state: Mapping[str, Any], *, on_stop: Callable[[ProcRecord], None]) -> list[str]:
    """Stop every process ``state`` records (:data:`STOP_ORDER`), ``on_stop`` each one that
    was running; their names. An emulator's log under /tmp goes with it."""
    stopped: list[str] = []
    for rec in records(state):
        if processes.stop(rec):
            stopped.append(rec.name)
            on_stop(rec)
        if rec.name.endswith("-emulator") and rec.log.startswith("/tmp"):
            with contextlib.suppress(OSError):
                Path(rec.log).unlink()
    return stopped


def remove_state(state_dir: Path) -> None:
    """Remove the state file and the scheduler's jobs file (its runs log stays)."""
    for name in (STATE_FILE, SCHEDULER_JOBS_FILE):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()


def record_applied(
    state: MutableMapping[str, Any],
    *,
    stack: str,
    root: Path,
    topo: Topology,
    service_env: Mapping[str, Mapping[str, str]],
) -> None:
    """Record a finished apply of ``topo`` in ``state`` (``started_at``: the first one)."""
    state.update(
        stack=stack,
        project=topo.project,
        root=str(root),
        applied_at=datetime.now(UTC).isoformat(),
        topology=topology_to_state(topo),
        # What `status` judges the stall window by, from any shell (no secrets here).
        service_env=service_env,
    )
    state.setdefault("started_at", state["applied_at"])


def topology_to_state(topo: Topology) -> dict[str, Any]:
    d = asdict(topo)
    for s in d["services"]:
        s["dockerfile"] = str(s["dockerfile"]) if s["dockerfile"] else None
    return d


def topology_from_state(d: Mapping[str, Any]) -> Topology:
    return Topology(
        project=d["project"],
        topics=tuple(TopicSpec(**t) for t in d["topics"]),
        subscriptions=tuple(SubscriptionSpec(**s) for s in d["subscriptions"]),
        services=tuple(
            ServiceSpec(**{**s, "dockerfile": Path(s["dockerfile"]) if s["dockerfile"] else None})
            for s in d["services"]
        ),
        jobs=tuple(JobSpec(**j) for j in d["jobs"]),
        notes=tuple(tuple(n) for n in d.get("notes", ())),
        alerts=tuple(
            AlertWatch(**{**a, "watches": tuple(a["watches"])}) for a in d.get("alerts", ())
        ),
    )
