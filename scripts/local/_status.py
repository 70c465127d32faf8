"""What runs where: the local platform's status, read from its state (works from any shell)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts import processes
from scripts.local._errors import NotRunning
from scripts.local._monitoring import MonitoringStatus
from scripts.local._scheduler import next_fire
from scripts.local._state import record
from scripts.local._topology import Topology

__all__ = ["ProcStatus", "PlatformStatus", "platform_status", "peak_memory_mib"]


@dataclass(frozen=True)
class ProcStatus:
    name: str
    kind: str  # emulator | service | scheduler
    pid: int
    alive: bool
    address: str  # host:port or URL
    rss_mib: float | None = None
    peak_rss_mib: float | None = None


@dataclass(frozen=True)
class PlatformStatus:
    stack: str
    project: str
    state_dir: str
    started_at: str
    processes: tuple[ProcStatus, ...]
    topics: tuple[str, ...]
    subscriptions: tuple[tuple[str, str], ...]  # (name, push endpoint or "pull")
    jobs: tuple[tuple[str, str, str, str], ...]  # (name, schedule, target, next run UTC)
    notes: tuple[tuple[str, str, str], ...] = ()
    #: The cloud alerts' local equivalents (:mod:`scripts.local._monitoring`).
    monitoring: MonitoringStatus | None = None

    @property
    def healthy(self) -> bool:
        return all(p.alive for p in self.processes)

    @property
    def dead(self) -> list[str]:
        """The names of the recorded processes that no longer run."""
        return [p.name for p in self.processes if not p.alive]

    def not_applied(self) -> list[str]:
        """The resources not applied to the emulators, in a few words each (the full list:
        :attr:`notes`): the indexes skipped, the IAM kinds not enforced, the cloud-only
        monitoring."""
        index = [n for n in self.notes if n[0] == "Index"]
        iam = [n for n in self.notes if "no IAM" in n[2]]
        monitoring = [n for n in self.notes if "Cloud Monitoring" in n[2]]
        parts = [f"Firestore index {n[1]} skipped (the emulator needs none)" for n in index]
        if iam:
            parts.append(f"{len(iam)} kinds of IAM grant not enforced (the preflight checks them)")
        if monitoring:
            parts.append(
                "alerts, channels, dashboard, log metric: cloud only (Cloud Monitoring has no "
                "emulator; their local equivalents above)"
            )
        return parts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["monitoring"] = self.monitoring.to_dict() if self.monitoring else None
        return d


def _mib(kib: int | None) -> float | None:
    return round(kib / 1024, 1) if kib else None


def peak_memory_mib(state: Mapping[str, Any]) -> dict[str, float | None]:
    """Peak resident memory (VmHWM) of each service ``state`` records, MiB."""
    return {
        name: _mib(processes.peak_rss_kib(int(e["proc"]["pid"])))
        for name, e in (state.get("services") or {}).items()
    }


def _proc_status(rec: processes.ProcRecord, kind: str, address: str) -> ProcStatus:
    alive = processes.alive(rec)
    rss = processes.rss_kib(rec.pid) if alive else None
    peak = processes.peak_rss_kib(rec.pid) if alive else None
    return ProcStatus(rec.name, kind, rec.pid, alive, address, _mib(rss), _mib(peak))


def _processes(state: Mapping[str, Any], topo: Topology | None) -> list[ProcStatus]:
    procs = [
        _proc_status(processes.ProcRecord.from_dict(e["proc"]), "emulator", e["host"])
        for _kind, e in sorted((state.get("emulators") or {}).items())
    ]
    procs += [
        _proc_status(processes.ProcRecord.from_dict(e["proc"]), "service", e["url"])
        for _name, e in sorted((state.get("services") or {}).items())
    ]
    sched = record(state, "scheduler")
    if sched is not None:
        procs.append(_proc_status(sched, "scheduler", f"{len(topo.jobs) if topo else 0} jobs"))
    return procs


def _summarise_notes(notes: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """One line per (type, note): ``("gcp:firestore/index:Index", "2 resources", note)``."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for typ, name, note in notes:
        grouped.setdefault((typ, note), []).append(name)
    return sorted(
        (
            typ.rsplit(":", 1)[-1],
            ", ".join(sorted(names)) if len(names) <= 3 else f"{len(names)} resources",
            note,
        )
        for (typ, note), names in grouped.items()
    )


def platform_status(
    state: Mapping[str, Any],
    topo: Topology | None,
    *,
    stack: str,
    state_dir: Path,
    monitoring: Callable[[], MonitoringStatus | None] | None = None,
) -> PlatformStatus:
    """The status of the platform ``state`` describes; NotRunning if it started nothing.
    ``monitoring()`` computes the alerts' local equivalents (left out when not given)."""
    if not state.get("emulators"):
        raise NotRunning(f"no local platform runs from {state_dir}")
    now = datetime.now(UTC)
    return PlatformStatus(
        stack=state.get("stack", stack),
        project=state.get("project", ""),
        state_dir=str(state_dir),
        started_at=state.get("started_at", ""),
        processes=tuple(_processes(state, topo)),
        topics=tuple(t.name for t in topo.topics) if topo else (),
        subscriptions=tuple((s.name, s.push_endpoint or "pull") for s in topo.subscriptions)
        if topo
        else (),
        jobs=tuple(
            (
                j.name,
                f"{j.schedule} ({j.time_zone})",
                f"{j.method} {j.uri}",
                next_fire(j, now).isoformat(timespec="seconds"),
            )
            for j in topo.jobs
        )
        if topo
        else (),
        notes=tuple(_summarise_notes(topo.notes)) if topo else (),
        monitoring=monitoring() if monitoring is not None else None,
    )
