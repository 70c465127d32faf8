"""Make the running services match the graph's Cloud Run services. Idempotent.

Each service runs on the port it had (a free one the first time) with the exact environment
:func:`~scripts.local._services.service_env` gives it; a hash of that environment and the
command line says whether a running service still matches (``same``), must restart
(``update``) or start (``create``). A service the graph no longer has is stopped
(``delete``). Services go first in an apply: push endpoints must answer before
subscriptions deliver to them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts import processes
from scripts.local._services import ServiceStartError, entry_point, service_env, start_service
from scripts.local._topology import ServiceSpec

__all__ = ["ServiceRun", "assign_ports", "apply_services", "env_for_services", "extra_env"]


def env_for_services(env: Mapping[str, str]) -> dict[str, str]:
    """The deploy variables ``deploy --stack local`` passes that the services get as env too
    (the commit and the lock token; infra/deploy_env.py names them)."""
    from infra.deploy_env import ENV_GIT_COMMIT, ENV_LOCK_TOKEN  # infra.config is slow to load

    return {k: v for k, v in env.items() if k in (ENV_GIT_COMMIT, ENV_LOCK_TOKEN)}


def extra_env(
    services: Sequence[ServiceSpec],
    env: Mapping[str, str],
    overrides: Mapping[str, Mapping[str, str]],
) -> dict[str, dict[str, str]]:
    """Per service: the deploy variables it gets (:func:`env_for_services`) plus the
    platform's local-only ``overrides`` of it (tests: shorter stall windows, faults)."""
    return {s.name: {**env_for_services(env), **overrides.get(s.name, {})} for s in services}


def _hash_env(env: Mapping[str, str], argv: Sequence[str]) -> str:
    blob = json.dumps({"env": dict(sorted(env.items())), "argv": list(argv)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def assign_ports(services: Sequence[ServiceSpec], running: Mapping[str, Any]) -> dict[str, int]:
    """Each service's port: the one it runs on (the state's ``services``), else a free one."""
    return {
        s.name: int(running[s.name]["port"]) if s.name in running else processes.free_port()
        for s in services
    }


@dataclass(frozen=True)
class ServiceRun:
    """What every service of one apply runs with, besides its own spec."""

    root: Path
    log_dir: Path
    secrets: Mapping[str, str]
    emulator_env: Mapping[str, str]
    #: Per service: deploy variables plus the platform's local-only overrides.
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def apply_services(
    services: Sequence[ServiceSpec],
    running: MutableMapping[str, Any],
    ports: Mapping[str, int],
    run: ServiceRun,
    *,
    dry_run: bool,
    say: Callable[[str], None],
    check_abort: Callable[[], None],
    saved: Callable[[], None],
) -> dict[str, int]:
    """Start, restart or stop services so ``running`` (the state's ``services``, updated in
    place; ``saved()`` after each start) matches ``services``. Op counts.

    Raises ServiceStartError when a service names no Dockerfile or does not start.
    """
    counts = {"create": 0, "update": 0, "delete": 0, "same": 0}
    for svc in services:
        check_abort()
        extra = dict(run.extra_env.get(svc.name, {}))
        entry = entry_point(svc.dockerfile) if svc.dockerfile else None
        if entry is None:
            raise ServiceStartError(f"{svc.name}: its image names no Dockerfile")
        port = ports[svc.name]
        want_env = service_env(
            svc,
            entry,
            port=port,
            secret_values=run.secrets,
            emulator_env=run.emulator_env,
            root=run.root,
            extra=extra,
        )
        digest = _hash_env(want_env, entry.argv(port))
        prev = running.get(svc.name)
        alive = prev and processes.alive(processes.ProcRecord.from_dict(prev["proc"]))
        if alive and prev.get("config_hash") == digest:
            counts["same"] += 1
            continue
        action = "update" if prev else "create"
        counts[action] += 1
        if dry_run:
            say(f"would {action} service {svc.name}")
            continue
        if alive:
            say(f"restarting service {svc.name} (its config changed)")
            processes.stop(processes.ProcRecord.from_dict(prev["proc"]))
        say(f"starting service {svc.name} on 127.0.0.1:{port}")
        record = start_service(
            svc,
            root=run.root,
            log_dir=run.log_dir,
            port=port,
            secret_values=run.secrets,
            emulator_env=run.emulator_env,
            extra_env=extra,
        )
        running[svc.name] = {
            "port": port,
            "url": f"http://127.0.0.1:{port}",
            "config_hash": digest,
            "proc": record.to_dict(),
        }
        saved()
    if not dry_run:
        for name in sorted(set(running) - {s.name for s in services}):
            counts["delete"] += 1
            say(f"stopping service {name} (no longer in the graph)")
            processes.stop(processes.ProcRecord.from_dict(running.pop(name)["proc"]))
    return counts
