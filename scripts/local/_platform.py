"""The local platform: one stack's registered graph, run on Google's emulators.

:class:`LocalPlatform` is the API ``platform local`` and ``deploy --stack local`` use::

    with LocalPlatform("prod") as lp:          # down() on exit (unless detach()ed)
        lp.up()                                # evaluate, preflight, emulators, apply, services
        outcome = lp.run_synthetic_batch(items=20, timeout=120)
        lp.run_job("check-stalled")            # a scheduler job, on demand

Its state (process ids, ports, the applied topology) lives in ``state_dir`` (``.local/`` by
default, git-ignored), so :meth:`LocalPlatform.attach` in another shell can report or stop it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.local import _procs
from scripts.local._apply import ApplyResult, PubSubAdmin, apply_pubsub
from scripts.local._scheduler import JobRun, LocalScheduler, call_job, next_fire
from scripts.local._services import (
    ServiceStartError,
    entry_point,
    load_secrets,
    service_env,
    start_service,
)
from scripts.local._topology import (
    JobSpec,
    ServiceSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    TopologyError,
    dangling_topics,
    topology_from_resources,
)

__all__ = [
    "LocalPlatform",
    "PlatformError",
    "RefusedStack",
    "NotRunning",
    "PlatformStatus",
    "ProcStatus",
    "BatchOutcome",
    "demo_items",
    "DEFAULT_STATE_DIR",
]

OnOutput = Callable[[str], None]
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".local"
#: The stack name the deploy tools use for the local platform (`deploy --stack local`).
LOCAL_STACK = "local"
#: The emulators' project when the stack names none (any id works on an emulator).
FALLBACK_PROJECT = "local-project"
STATE_FILE = "state.json"
SECRETS_FILE = "secrets.yaml"
#: The header the coordinator reads the API key from (services/coordinator/app.py).
API_KEY_HEADER = "X-API-Key"
#: The service that takes ``/start`` (the one whose config reads the API key secret).
START_PATH = "/start"
HTTP_TIMEOUT_S = 30.0
#: Poll interval while waiting for a batch.
POLL_S = 0.25
#: Dead-letter messages inspected per subscription when counting a batch's dead letters.
DEAD_LETTER_PEEK = 1000


class PlatformError(RuntimeError):
    """The local platform could not do what was asked; the message says why."""


class RefusedStack(PlatformError):
    """The stack is refused before anything is applied (invalid config, a failing rule)."""

    def __init__(self, stack: str, problems: Sequence[str]):
        self.stack = stack
        self.problems = list(problems)
        super().__init__(
            f"stack {stack!r} refused before anything was applied:\n"
            + "\n".join(f"  - {p}" for p in self.problems)
        )


class NotRunning(PlatformError):
    """No local platform runs from this state directory."""


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

    @property
    def healthy(self) -> bool:
        return all(p.alive for p in self.processes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    import random

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


def _hash_env(env: Mapping[str, str], argv: Sequence[str]) -> str:
    blob = json.dumps({"env": dict(sorted(env.items())), "argv": list(argv)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _http(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, Any]:
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


class LocalPlatform:
    """One stack's topology on the emulators, its services and scheduler (see module doc).

    :param stack: the stack whose ``Pulumi.<stack>.yaml`` describes the topology.
    :param root: the checkout (stack files, Dockerfiles, the code the services run).
    :param state_dir: where state, logs and ``secrets.yaml`` live (default ``.local/``).
    :param config: a ``config:`` mapping to evaluate instead of the stack file.
    :param service_env: local-only extra env per service (tests: shorter stall windows,
        injected faults); never part of the graph.
    """

    def __init__(
        self,
        stack: str = "prod",
        *,
        root: Path | None = None,
        state_dir: Path | None = None,
        config: Mapping[str, Any] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        on_output: OnOutput | None = None,
    ) -> None:
        self.stack = stack
        self.root = (root or REPO_ROOT).resolve()
        self.state_dir = (state_dir or DEFAULT_STATE_DIR).resolve()
        self.config = dict(config) if config is not None else None
        self.service_env = {k: dict(v) for k, v in (service_env or {}).items()}
        self.on_output = on_output
        self.plan: Any = None
        self.topology: Topology | None = None  # localised
        self.state: dict[str, Any] = {}
        self.last_apply: ApplyResult | None = None
        self._admin: PubSubAdmin | None = None
        self._abort = threading.Event()
        self._detached = False
        self._load_state()

    # --- state --------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / SECRETS_FILE

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def _load_state(self) -> None:
        if self.state_file.exists():
            try:
                self.state = json.loads(self.state_file.read_text())
            except (OSError, json.JSONDecodeError):
                self.state = {}
        if self.state.get("topology"):
            self.topology = _topology_from_state(self.state["topology"])

    def _save_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True, default=str))
        tmp.replace(self.state_file)

    def _record(self, kind: str, name: str | None = None) -> _procs.ProcRecord | None:
        entry = self.state.get(kind)
        if name is not None:
            entry = (entry or {}).get(name)
        return _procs.ProcRecord.from_dict(entry["proc"]) if entry else None

    def _say(self, text: str, on_output: OnOutput | None = None) -> None:
        out = on_output or self.on_output
        if out is not None:
            out(text)

    @classmethod
    def attach(
        cls, state_dir: Path | None = None, *, on_output: OnOutput | None = None
    ) -> LocalPlatform:
        """The platform an earlier ``up`` (maybe another shell) started from ``state_dir``.

        Raises :class:`NotRunning` if there is no state there.
        """
        state_dir = (state_dir or DEFAULT_STATE_DIR).resolve()
        path = state_dir / STATE_FILE
        if not path.exists():
            raise NotRunning(f"no local platform state in {state_dir} (run `platform local up`)")
        state = json.loads(path.read_text())
        return cls(
            state.get("stack", "prod"),
            root=Path(state.get("root", REPO_ROOT)),
            state_dir=state_dir,
            on_output=on_output,
        )

    # --- evaluation and preflight --------------------------------------------------------

    def evaluate(self, *, env: Mapping[str, str] | None = None) -> Any:
        """The stack's offline plan, refused (RefusedStack) when it must not be applied:
        invalid config, a topic with no subscription, or a failing preflight rule."""
        from infra.config import ConfigError
        from scripts.offline_plan import PlanError, evaluate_stack

        try:
            plan = evaluate_stack(
                self.stack,
                root=self.root,
                config=self.config,
                env=dict(env) if env is not None else {},
            )
        except ConfigError as exc:
            raise RefusedStack(self.stack, [str(i) for i in exc.issues]) from None
        except PlanError as exc:
            raise RefusedStack(self.stack, [str(exc)]) from None
        topo = topology_from_resources(plan.resources, project=plan.config.project, root=self.root)
        problems = [
            f"topic {t!r} has no subscription: its messages would be lost"
            for t in dangling_topics(topo)
        ]
        problems += self._preflight(plan)
        if problems:
            raise RefusedStack(self.stack, problems)
        self.plan = plan
        return plan

    @staticmethod
    def _preflight(plan: Any) -> list[str]:
        """Error-level findings of the preflight rules (``policy/rules.py``)."""
        try:
            from policy import rules
        except ImportError:  # pragma: no cover - the rules are part of the project
            return []
        return [str(f) for f in rules.run_rules(plan.resources) if f.blocks]

    # --- emulators ---------------------------------------------------------------------

    def _project(self) -> str:
        """The project id of everything on the emulators: the stack's own ``gcp:project``,
        from the first emulator start on (the lock, the deployment records and the batch
        state must not move between projects once a plan is evaluated)."""
        if self.plan is not None:
            return self.plan.config.project
        if self.state.get("project"):
            return self.state["project"]
        raw = self.config
        if raw is None:
            from infra.config import ConfigError
            from scripts.offline_plan import load_stack_file

            try:
                raw = load_stack_file(self.stack, root=self.root)
            except ConfigError:
                raw = {}
        return str(raw.get("gcp:project") or FALLBACK_PROJECT)

    def running_firestore(self, database: str | None = None) -> Any:
        """A client on this platform's Firestore emulator if it runs; never starts one.

        Raises :class:`NotRunning` when it is not up (`platform local up` starts it).
        """
        from scripts.emulators import firestore_client

        entry = (self.state.get("emulators") or {}).get("firestore")
        if not entry or not _procs.alive(_procs.ProcRecord.from_dict(entry["proc"])):
            raise NotRunning(
                f"the local platform's Firestore emulator is not running ({self.state_dir}): "
                "run `platform local up`"
            )
        return firestore_client(entry["host"], self._project(), database=database)

    def emulator_env(self) -> dict[str, str]:
        emu = self.state.get("emulators") or {}
        return {
            "FIRESTORE_EMULATOR_HOST": emu["firestore"]["host"],
            "PUBSUB_EMULATOR_HOST": emu["pubsub"]["host"],
        }

    def ensure_running(self) -> None:
        """Start the Firestore and Pub/Sub emulators unless they already run (idempotent).

        Raises ``scripts.emulators.EmulatorUnavailable`` when Java or an emulator is missing.
        """
        from scripts import emulators

        project = self._project()
        current = self.state.get("emulators") or {}
        changed = False
        for kind, start in (
            ("firestore", emulators.start_firestore),
            ("pubsub", emulators.start_pubsub),
        ):
            entry = current.get(kind)
            if entry and _procs.alive(_procs.ProcRecord.from_dict(entry["proc"])):
                continue
            self._say(f"starting the {kind} emulator")
            # Detached: the local platform owns it from here; its atexit hook (or `down`)
            # stops it, and `detach()` can leave it running for another shell.
            emu = start(project, detached=True)
            record = _procs.ProcRecord(
                name=f"{kind}-emulator",
                pid=emu.proc.pid,
                start_ticks=_procs._start_ticks(emu.proc.pid),
                log=str(emu.log_path),
                cmd=tuple(emu.proc.args),
                port=emu.port,
            )
            _procs._own(record, emu.proc)
            current[kind] = {"host": emu.host, "proc": record.to_dict()}
            changed = True
        if changed or not self.state.get("emulators"):
            self.state["emulators"] = current
            self.state.setdefault("project", project)
            self.state.setdefault("stack", self.stack)
            self.state.setdefault("root", str(self.root))
            self._save_state()

    def firestore_client(self, database: str | None = None) -> Any:
        """An official Firestore client on the local Firestore emulator (``database``: the
        platform's ``(default)`` unless named, e.g. the deploy lock's)."""
        from scripts.emulators import firestore_client

        self.ensure_running()
        host = self.state["emulators"]["firestore"]["host"]
        return firestore_client(host, self._project(), database=database)

    def pubsub_admin(self) -> PubSubAdmin:
        if self._admin is None:
            self._admin = PubSubAdmin(self.state["emulators"]["pubsub"]["host"], self._project())
        return self._admin

    # --- apply ---------------------------------------------------------------------------

    def apply(
        self,
        stack: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        dry_run: bool = False,
        on_output: OnOutput | None = None,
    ) -> dict[str, int]:
        """Evaluate, preflight, and make the local platform match the graph. Idempotent.

        ``stack``: ``None``/``"local"`` keeps this platform's stack; another name switches to
        that stack's topology. ``env``: deploy variables (``PLATFORM_GIT_COMMIT``,
        ``PLATFORM_LOCK_TOKEN``) the plan is evaluated with and the services get. With
        ``dry_run`` nothing changes. Returns op counts ``{"create", "update", "delete",
        "same"}`` over topics, subscriptions and services. Raises RefusedStack before
        touching anything, PlatformError / ServiceStartError / ApplyAborted on failure.
        """
        if stack and stack != "local" and stack != self.stack:
            self.stack = stack
        self._abort.clear()
        env = dict(env or {})
        self._say(f"evaluating stack {self.stack} (offline plan, preflight)", on_output)
        plan = self.evaluate(env=env)
        self.ensure_running()
        if self.state.get("project") != plan.config.project:
            self.state["project"] = plan.config.project
        raw = topology_from_resources(plan.resources, project=plan.config.project, root=self.root)
        services_state = self.state.setdefault("services", {})
        ports: dict[str, int] = {}
        for svc in raw.services:
            prev = services_state.get(svc.name)
            ports[svc.name] = int(prev["port"]) if prev else _procs.free_port()
        topo = raw.localise({n: f"http://127.0.0.1:{p}" for n, p in ports.items()})
        counts = {"create": 0, "update": 0, "delete": 0, "same": 0}

        # Services first: push endpoints must answer before subscriptions deliver to them.
        secrets = load_secrets(
            self.secrets_file, {s for svc in topo.services for s in svc.secret_env.values()}
        )
        emu_env = self.emulator_env()
        for svc in topo.services:
            self._check_abort()
            extra = {**env_for_services(env), **self.service_env.get(svc.name, {})}
            entry = entry_point(svc.dockerfile) if svc.dockerfile else None
            if entry is None:
                raise ServiceStartError(f"{svc.name}: its image names no Dockerfile")
            port = ports[svc.name]
            want_env = service_env(
                svc,
                entry,
                port=port,
                secret_values=secrets,
                emulator_env=emu_env,
                root=self.root,
                extra=extra,
            )
            digest = _hash_env(want_env, entry.argv(port))
            prev = services_state.get(svc.name)
            running = prev and _procs.alive(_procs.ProcRecord.from_dict(prev["proc"]))
            if running and prev.get("config_hash") == digest:
                counts["same"] += 1
                continue
            action = "update" if prev else "create"
            counts[action] += 1
            if dry_run:
                self._say(f"would {action} service {svc.name}", on_output)
                continue
            if running:
                self._say(f"restarting service {svc.name} (its config changed)", on_output)
                _procs.stop(_procs.ProcRecord.from_dict(prev["proc"]))
            self._say(f"starting service {svc.name} on 127.0.0.1:{port}", on_output)
            record = start_service(
                svc,
                root=self.root,
                log_dir=self.log_dir,
                port=port,
                secret_values=secrets,
                emulator_env=emu_env,
                extra_env=extra,
            )
            services_state[svc.name] = {
                "port": port,
                "url": f"http://127.0.0.1:{port}",
                "config_hash": digest,
                "proc": record.to_dict(),
            }
            self._save_state()
        if not dry_run:
            for name in sorted(set(services_state) - {s.name for s in topo.services}):
                counts["delete"] += 1
                self._say(f"stopping service {name} (no longer in the graph)", on_output)
                _procs.stop(_procs.ProcRecord.from_dict(services_state.pop(name)["proc"]))

        admin = self.pubsub_admin()
        admin._abort.clear()
        result = apply_pubsub(
            admin, topo, dry_run=dry_run, on_output=lambda s: self._say(s, on_output)
        )
        self.last_apply = result
        for k, v in result.counts().items():
            counts[k] += v
        if dry_run:
            return counts
        self.topology = topo
        self.state.update(
            stack=self.stack,
            project=plan.config.project,
            root=str(self.root),
            applied_at=datetime.now(UTC).isoformat(),
            topology=_topology_to_state(topo),
        )
        self.state.setdefault("started_at", self.state["applied_at"])
        self._restart_scheduler(topo)
        self._save_state()
        return counts

    def _check_abort(self) -> None:
        from scripts.local._apply import ApplyAborted

        if self._abort.is_set():
            raise ApplyAborted("apply aborted before completion")

    def stop_apply(self) -> None:
        """Abort an apply in progress before its next change (callable from any thread)."""
        self._abort.set()
        if self._admin is not None:
            self._admin.abort()

    def _restart_scheduler(self, topo: Topology) -> None:
        jobs_file = self.state_dir / "scheduler-jobs.json"
        runs_file = self.state_dir / "scheduler-runs.jsonl"
        payload = json.dumps([asdict(j) for j in topo.jobs], indent=2, sort_keys=True)
        prev = self._record("scheduler")
        if prev and _procs.alive(prev) and jobs_file.exists() and jobs_file.read_text() == payload:
            return
        if prev:
            _procs.stop(prev, grace=3)
        jobs_file.write_text(payload)
        import sys

        record = _procs.spawn(
            "scheduler",
            [sys.executable, "-m", "scripts.local._scheduler", str(jobs_file), str(runs_file)],
            env={
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": str(self.root),
                "HOME": os.environ.get("HOME", "/tmp"),
            },
            cwd=self.root,
            log_path=self.log_dir / "scheduler.log",
        )
        self.state["scheduler"] = {
            "proc": record.to_dict(),
            "jobs": str(jobs_file),
            "runs": str(runs_file),
        }

    def up(self, *, on_output: OnOutput | None = None) -> PlatformStatus:
        """Evaluate, preflight, start the emulators and services, apply; the status after.

        On any failure everything this call started is stopped again.
        """
        before = self._owned_pids()
        try:
            self.apply(on_output=on_output)
        except BaseException:
            if not before:
                self.down(quiet=True)
            raise
        return self.status()

    def _owned_pids(self) -> set[int]:
        recs = [self._record("scheduler")]
        recs += [
            _procs.ProcRecord.from_dict(e["proc"])
            for e in (self.state.get("emulators") or {}).values()
        ]
        recs += [
            _procs.ProcRecord.from_dict(e["proc"])
            for e in (self.state.get("services") or {}).values()
        ]
        return {r.pid for r in recs if r is not None and _procs.alive(r)}

    def detach(self) -> None:
        """Leave everything running when this process exits (``platform local up``)."""
        self._detached = True
        records = [self._record("scheduler")]
        records += [
            _procs.ProcRecord.from_dict(e["proc"])
            for e in (self.state.get("emulators") or {}).values()
        ]
        records += [
            _procs.ProcRecord.from_dict(e["proc"])
            for e in (self.state.get("services") or {}).values()
        ]
        _procs.disown([r for r in records if r is not None])

    def down(self, *, quiet: bool = False) -> list[str]:
        """Stop the scheduler, the services and the emulators; remove the state. Idempotent.

        Returns the names of what was running.
        """
        stopped: list[str] = []
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        order: list[_procs.ProcRecord | None] = [self._record("scheduler")]
        order += [
            _procs.ProcRecord.from_dict(e["proc"])
            for e in (self.state.get("services") or {}).values()
        ]
        order += [
            _procs.ProcRecord.from_dict(e["proc"])
            for e in (self.state.get("emulators") or {}).values()
        ]
        for rec in order:
            if rec is None:
                continue
            if _procs.stop(rec):
                stopped.append(rec.name)
                if not quiet:
                    self._say(f"stopped {rec.name} (pid {rec.pid})")
            if rec.name.endswith("-emulator") and rec.log.startswith("/tmp"):
                with contextlib.suppress(OSError):
                    Path(rec.log).unlink()
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        for name in ("scheduler-jobs.json",):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / name).unlink()
        self.state = {}
        self.topology = None
        return stopped

    def __enter__(self) -> LocalPlatform:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._detached:
            self.down(quiet=True)

    # --- status --------------------------------------------------------------------------

    def status(self) -> PlatformStatus:
        """What runs where (works from another shell, through :meth:`attach`)."""
        if not self.state.get("emulators"):
            raise NotRunning(f"no local platform runs from {self.state_dir}")
        procs: list[ProcStatus] = []
        for _kind, e in sorted((self.state.get("emulators") or {}).items()):
            procs.append(
                _proc_status(_procs.ProcRecord.from_dict(e["proc"]), "emulator", e["host"])
            )
        for _name, e in sorted((self.state.get("services") or {}).items()):
            procs.append(_proc_status(_procs.ProcRecord.from_dict(e["proc"]), "service", e["url"]))
        sched = self._record("scheduler")
        if sched is not None:
            procs.append(
                _proc_status(
                    sched, "scheduler", f"{len(self.topology.jobs) if self.topology else 0} jobs"
                )
            )
        topo = self.topology
        now = datetime.now(UTC)
        return PlatformStatus(
            stack=self.state.get("stack", self.stack),
            project=self.state.get("project", ""),
            state_dir=str(self.state_dir),
            started_at=self.state.get("started_at", ""),
            processes=tuple(procs),
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
        )

    # --- services (tests, benchmark, demo) ------------------------------------------------

    def service_url(self, name: str) -> str:
        try:
            return self.state["services"][name]["url"]
        except KeyError:
            raise NotRunning(f"service {name!r} is not running") from None

    def service_record(self, name: str) -> _procs.ProcRecord:
        rec = self._record("services", name)
        if rec is None:
            raise NotRunning(f"service {name!r} is not running")
        return rec

    def kill_service(self, name: str) -> None:
        """SIGKILL a service's process group at once (a crash)."""
        _procs.kill(self.service_record(name))

    def restart_service(self, name: str, *, extra_env: Mapping[str, str] | None = None) -> None:
        """Restart one service on its port, optionally with new local-only env."""
        if extra_env is not None:
            self.service_env[name] = dict(extra_env)
        prev = self.state["services"].get(name)
        if prev is not None:
            _procs.stop(_procs.ProcRecord.from_dict(prev["proc"]))
            prev["config_hash"] = "restart"
        self._save_state()
        self.apply()

    def peak_memory_mib(self) -> dict[str, float | None]:
        """Peak resident memory (VmHWM) of each running service, MiB."""
        out = {}
        for name, e in (self.state.get("services") or {}).items():
            kib = _procs.peak_rss_kib(int(e["proc"]["pid"]))
            out[name] = round(kib / 1024, 1) if kib else None
        return out

    # --- scheduler -----------------------------------------------------------------------

    def jobs(self) -> list[JobSpec]:
        return list(self.topology.jobs) if self.topology else []

    def run_job(self, name: str) -> JobRun:
        """Run a scheduler job now (physical or logical name), as the scheduler would."""
        sched = LocalScheduler(self.jobs(), runs_file=self.state_dir / "scheduler-runs.jsonl")
        return sched.run_now(name)

    # --- batches -------------------------------------------------------------------------

    def coordinator(self) -> ServiceSpec:
        """The service that takes ``/start``: the one reading the API-key secret."""
        if self.topology is None:
            raise NotRunning("the platform is not up")
        for svc in self.topology.services:
            if svc.secret_env:
                return svc
        raise PlatformError("no service of this stack takes /start with an API key")

    def api_key(self) -> tuple[str, str]:
        """(header, value) for ``/start``: the coordinator's secret from ``secrets.yaml``."""
        svc = self.coordinator()
        var, secret = next(iter(svc.secret_env.items()))
        values = load_secrets(self.secrets_file, set(svc.secret_env.values()))
        return API_KEY_HEADER, values[secret]

    def start_batch(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        batch_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        header, key = self.api_key()
        body: dict[str, Any] = {"items": list(items), "metadata": dict(metadata or {})}
        if batch_id:
            body["batch_id"] = batch_id
        status, answer = _http(
            "POST", self.service_url(self.coordinator().name) + START_PATH, body, {header: key}
        )
        if status not in (200, 202):
            raise PlatformError(f"/start answered {status}: {answer}")
        return answer

    def batch_status(self, batch_id: str) -> dict[str, Any]:
        status, answer = _http(
            "GET", f"{self.service_url(self.coordinator().name)}/status/{batch_id}"
        )
        if status != 200:
            raise PlatformError(f"/status/{batch_id} answered {status}: {answer}")
        return answer

    def wait_batch(
        self,
        batch_id: str,
        *,
        timeout: float,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Poll ``/status`` until the batch finishes (or ``until(status)``); the last status."""
        deadline = time.monotonic() + timeout
        done = until or (lambda s: s.get("state") not in ("publishing", "running"))
        while True:
            status = self.batch_status(batch_id)
            if on_progress:
                on_progress(status)
            if done(status) or time.monotonic() > deadline:
                return status
            time.sleep(POLL_S)

    def dead_letters(self, *, batch_id: str | None = None) -> dict[str, list[Any]]:
        """Messages each dead-letter subscription holds (left in place), optionally of a batch."""
        if self.topology is None:
            return {}
        admin = self.pubsub_admin()
        out = {}
        for sub in self.topology.dead_letter_subscriptions():
            msgs = admin.peek(sub.name, max_messages=DEAD_LETTER_PEEK)
            if batch_id is not None:
                msgs = [m for m in msgs if m.attributes.get("batch_id") == batch_id]
            out[sub.name] = msgs
        return out

    def run_synthetic_batch(
        self,
        *,
        items: int = 20,
        timeout: float = 120.0,
        on_output: OnOutput | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Start a batch of ``items`` through ``/start`` and wait until it completes.

        Returns ``{"ok", "batch_id", "state", "completed", "failed", "dead_lettered",
        "elapsed_s", "detail", ...}``; ``ok`` only if it completed with every item done and
        nothing dead-lettered. Never raises for a batch that fails; raises NotRunning if the
        platform is not up.
        """
        t0 = time.monotonic()
        batch_id = f"synthetic-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.urandom(3).hex()}"
        try:
            self.start_batch(demo_items(items), batch_id=batch_id, metadata={"synthetic": True})
        except (PlatformError, OSError) as exc:
            return BatchOutcome(
                False,
                batch_id,
                "not-started",
                items,
                0,
                0,
                0,
                round(time.monotonic() - t0, 3),
                str(exc),
            ).to_dict()
        self._say(f"synthetic batch {batch_id}: {items} items started", on_output)
        status = self.wait_batch(batch_id, timeout=timeout, on_progress=on_progress)
        elapsed = round(time.monotonic() - t0, 3)
        dead = sum(len(v) for v in self.dead_letters(batch_id=batch_id).values())
        ok = status.get("state") == "completed" and status.get("done") == items and dead == 0
        detail = (
            f"{status.get('state')}: {status.get('completed')} completed, "
            f"{status.get('failed')} failed of {items} in {elapsed:.1f} s, "
            f"{dead} dead-lettered"
        )
        if status.get("state") in ("publishing", "running"):
            detail = f"not complete after {timeout:g} s: " + detail
        self._say(f"synthetic batch {batch_id}: {detail}", on_output)
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


# --- helpers ---------------------------------------------------------------------------------

#: Deploy variables ``deploy --stack local`` passes; the services get them as env too.
_DEPLOY_VARS = ("PLATFORM_GIT_COMMIT", "PLATFORM_LOCK_TOKEN")


def env_for_services(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k in _DEPLOY_VARS}


def _proc_status(rec: _procs.ProcRecord, kind: str, address: str) -> ProcStatus:
    alive = _procs.alive(rec)
    rss = _procs.rss_kib(rec.pid) if alive else None
    peak = _procs.peak_rss_kib(rec.pid) if alive else None
    return ProcStatus(
        rec.name,
        kind,
        rec.pid,
        alive,
        address,
        round(rss / 1024, 1) if rss else None,
        round(peak / 1024, 1) if peak else None,
    )


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


def _topology_to_state(topo: Topology) -> dict[str, Any]:
    d = asdict(topo)
    for s in d["services"]:
        s["dockerfile"] = str(s["dockerfile"]) if s["dockerfile"] else None
    return d


def _topology_from_state(d: Mapping[str, Any]) -> Topology:
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
    )


_ = (TopologyError, call_job)


def running_firestore(database: str | None = None, *, state_dir: Path | None = None) -> Any:
    """A Firestore client on the running local platform (the one `platform local up` or
    `deploy --stack local` left in ``state_dir``), with its project; never starts anything.

    What `deploy-lock --stack local` and `deploy history --stack local` use, so every tool
    sees the same lock and records as `deploy --stack local`. Raises :class:`NotRunning`.
    """
    return LocalPlatform.attach(state_dir).running_firestore(database)
