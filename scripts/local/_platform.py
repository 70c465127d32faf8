"""The local platform: one stack's registered graph, run on Google's emulators.

:class:`LocalPlatform` is the API ``platform local`` and ``deploy --stack local`` use::

    with LocalPlatform("prod") as lp:          # down() on exit (unless detach()ed)
        lp.up()                                # evaluate, preflight, emulators, apply, services
        outcome = lp.run_synthetic_batch(items=20, timeout=120)
        lp.run_job("check-stalled")            # a scheduler job, on demand

It composes the package's parts: the state file (:mod:`._state`), the refusal gate
(:mod:`._evaluation`), the emulators (:mod:`._emulators`), the services (:mod:`._apply_services`),
Pub/Sub (:mod:`._apply`), the scheduler (:mod:`._scheduler`), the status (:mod:`._status`) and
the batch client (:mod:`._batches`). Its state lives in ``state_dir`` (``.local/`` by
default, git-ignored), so :meth:`LocalPlatform.attach` in another shell can report or stop it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts import processes
from scripts.local import _batches, _emulators, _evaluation, _state
from scripts.local._apply import ApplyAborted, ApplyResult, PubSubAdmin, apply_pubsub
from scripts.local._apply_services import (
    ServiceRun,
    apply_services,
    assign_ports,
    extra_env,
)
from scripts.local._errors import NotRunning
from scripts.local._monitoring import MonitoringStatus, monitoring_status
from scripts.local._scheduler import JobRun, LocalScheduler, ensure_scheduler
from scripts.local._services import load_secrets
from scripts.local._status import PlatformStatus, peak_memory_mib, platform_status
from scripts.local._topology import JobSpec, ServiceSpec, Topology

__all__ = ["LocalPlatform", "LOCAL_STACK", "running_firestore"]

OnOutput = Callable[[str], None]
#: The stack name the deploy tools use for the local platform (`deploy --stack local`).
LOCAL_STACK = "local"


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
        self.root = (root or _state.REPO_ROOT).resolve()
        self.state_dir = (state_dir or _state.DEFAULT_STATE_DIR).resolve()
        self.config = dict(config) if config is not None else None
        self.service_env = {k: dict(v) for k, v in (service_env or {}).items()}
        self.on_output = on_output
        self.plan: Any = None
        self.state: dict[str, Any] = _state.read_state(self.state_dir)
        self.topology: Topology | None = (  # localised
            _state.topology_from_state(self.state["topology"])
            if self.state.get("topology")
            else None
        )
        self.last_apply: ApplyResult | None = None
        self._admin: PubSubAdmin | None = None
        self._abort = threading.Event()
        self._detached = False

    @classmethod
    def attach(
        cls, state_dir: Path | None = None, *, on_output: OnOutput | None = None
    ) -> LocalPlatform:
        """The platform an earlier ``up`` (maybe another shell) started from ``state_dir``.

        Raises :class:`NotRunning` if there is no state there.
        """
        state_dir = (state_dir or _state.DEFAULT_STATE_DIR).resolve()
        if not (state_dir / _state.STATE_FILE).exists():
            raise NotRunning(f"no local platform state in {state_dir} (run `platform local up`)")
        state = _state.read_state(state_dir)
        return cls(
            state.get("stack", "prod"),
            root=Path(state.get("root", _state.REPO_ROOT)),
            state_dir=state_dir,
            on_output=on_output,
        )

    # --- state --------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / _state.STATE_FILE

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / _state.SECRETS_FILE

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def _save_state(self) -> None:
        _state.write_state(self.state_dir, self.state)

    def _say(self, text: str, on_output: OnOutput | None = None) -> None:
        out = on_output or self.on_output
        if out is not None:
            out(text)

    # --- evaluation and emulators --------------------------------------------------------

    def evaluate(self, *, env: Mapping[str, str] | None = None) -> Any:
        """The stack's offline plan, refused (RefusedStack) when it must not be applied:
        invalid config, a topic with no subscription, or a failing preflight rule."""
        self.plan = _evaluation.evaluate(
            self.stack, root=self.root, config=self.config, env=env or {}
        )
        return self.plan

    def _project(self) -> str:
        """The project id of everything on the emulators: the stack's own ``gcp:project``,
        from the first emulator start on (the lock, the deployment records and the batch
        state must not move between projects once a plan is evaluated)."""
        if self.plan is not None:
            return self.plan.config.project
        if self.state.get("project"):
            return self.state["project"]
        return _evaluation.stack_project(self.stack, root=self.root, config=self.config)

    def ensure_running(self) -> None:
        """Start the Firestore and Pub/Sub emulators unless they already run (idempotent).

        Raises ``scripts.emulators.EmulatorUnavailable`` when Java or an emulator is missing.
        """
        project = self._project()
        current = self.state.get("emulators") or {}
        changed = _emulators.start_missing(current, project, say=self._say)
        if changed or not self.state.get("emulators"):
            self.state["emulators"] = current
            self.state.setdefault("project", project)
            self.state.setdefault("stack", self.stack)
            self.state.setdefault("root", str(self.root))
            self._save_state()

    def emulator_env(self) -> dict[str, str]:
        return _emulators.emulator_env(self.state.get("emulators") or {})

    def running_firestore(self, database: str | None = None) -> Any:
        """A client on this platform's Firestore emulator if it runs; never starts one.

        Raises :class:`NotRunning` when it is not up (`platform local up` starts it).
        """
        return _emulators.running_firestore(
            self.state.get("emulators") or {},
            self._project(),
            database=database,
            state_dir=self.state_dir,
        )

    def firestore_client(self, database: str | None = None) -> Any:
        """An official Firestore client on the local Firestore emulator (``database``: the
        platform's ``(default)`` unless named, e.g. the deploy lock's)."""
        self.ensure_running()
        return self.running_firestore(database)

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
        code_root: Path | None = None,
    ) -> dict[str, int]:
        """Evaluate, preflight, and make the local platform match the graph. Idempotent.

        ``code_root``: where the services' code comes from (a release's unpacked commit, see
        ``scripts.deploy._releases``); default the work tree.

        ``stack``: ``None``/``"local"`` keeps this platform's stack; another name switches to
        that stack's topology. ``env``: deploy variables (``PLATFORM_GIT_COMMIT``,
        ``PLATFORM_LOCK_TOKEN``) the plan is evaluated with and the services get. With
        ``dry_run`` nothing changes. Returns op counts ``{"create", "update", "delete",
        "same"}`` over topics, subscriptions and services. Raises RefusedStack before
        touching anything, PlatformError / ServiceStartError / ApplyAborted on failure.
        """
        if stack and stack != LOCAL_STACK and stack != self.stack:
            self.stack = stack
        self._abort.clear()
        env = dict(env or {})

        def say(text: str) -> None:
            self._say(text, on_output)

        say(f"evaluating stack {self.stack} (offline plan, preflight)")
        plan = self.evaluate(env=env)
        project = plan.config.project
        code = Path(code_root) if code_root is not None else self.root
        raw = _evaluation.planned_topology(plan, root=code)
        # Before anything starts: a malformed secrets file stops here, with nothing to stop.
        secrets = load_secrets(self.secrets_file, raw.secret_ids())
        self.ensure_running()
        self.state["project"] = project
        running = self.state.setdefault("services", {})
        ports = assign_ports(raw.services, running)
        topo = raw.localise({n: f"http://127.0.0.1:{p}" for n, p in ports.items()})

        run = ServiceRun(
            root=code,
            log_dir=self.log_dir,
            secrets=secrets,
            emulator_env=self.emulator_env(),
            extra_env=extra_env(topo.services, env, self.service_env),
        )
        counts = apply_services(
            topo.services,
            running,
            ports,
            run,
            dry_run=dry_run,
            say=say,
            check_abort=self._check_abort,
            saved=self._save_state,
        )

        admin = self.pubsub_admin()
        admin._abort.clear()
        result = apply_pubsub(admin, topo, dry_run=dry_run, on_output=say)
        self.last_apply = result
        for k, v in result.counts().items():
            counts[k] += v
        if dry_run:
            return counts
        self.topology = topo
        _state.record_applied(
            self.state, stack=self.stack, root=self.root, topo=topo, service_env=self.service_env
        )
        scheduler = ensure_scheduler(
            topo.jobs,
            running=_state.record(self.state, "scheduler"),
            jobs_file=self.state_dir / _state.SCHEDULER_JOBS_FILE,
            runs_file=self.state_dir / _state.SCHEDULER_RUNS_FILE,
            root=self.root,
            log_path=self.log_dir / "scheduler.log",
        )
        if scheduler is not None:
            self.state["scheduler"] = scheduler
        self._save_state()
        return counts

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise ApplyAborted("apply aborted before completion")

    def stop_apply(self) -> None:
        """Abort an apply in progress before its next change (callable from any thread)."""
        self._abort.set()
        if self._admin is not None:
            self._admin.abort()

    # --- lifecycle -----------------------------------------------------------------------

    def up(self, *, on_output: OnOutput | None = None) -> PlatformStatus:
        """Evaluate, preflight, start the emulators and services, apply; the status after.

        On any failure everything this call started is stopped again.
        """
        started_before = any(processes.alive(r) for r in _state.records(self.state))
        try:
            self.apply(on_output=on_output)
        except BaseException:
            if not started_before:
                self.down(quiet=True)
            raise
        return self.status()

    def detach(self) -> None:
        """Leave everything running when this process exits (``platform local up``)."""
        self._detached = True
        processes.disown(_state.records(self.state))

    def down(self, *, quiet: bool = False) -> list[str]:
        """Stop the scheduler, the services and the emulators; remove the state. Idempotent.

        Returns the names of what was running.
        """
        if self._admin is not None:
            self._admin.close()
            self._admin = None

        def said(rec: processes.ProcRecord) -> None:
            if not quiet:
                self._say(f"stopped {rec.name} (pid {rec.pid})")

        stopped = _state.stop_all(self.state, on_stop=said)
        _state.remove_state(self.state_dir)
        self.state = {}
        self.topology = None
        return stopped

    def __enter__(self) -> LocalPlatform:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._detached:
            self.down(quiet=True)

    def status(self, *, monitoring: bool = True) -> PlatformStatus:
        """What runs where (works from another shell, through :meth:`attach`); with
        ``monitoring``, the cloud alerts' local equivalents too (:meth:`monitoring`)."""
        return platform_status(
            self.state,
            self.topology,
            stack=self.stack,
            state_dir=self.state_dir,
            monitoring=self.monitoring if monitoring else None,
        )

    def monitoring(self) -> MonitoringStatus | None:
        """Dead-letter depth, push backlog and stuck batches, each flagged where its declared
        cloud alert would fire (:mod:`scripts.local._monitoring`); None before an apply.
        An emulator that is down is named in ``errors``, never raised."""
        if self.topology is None:
            return None
        from shared.batch_model import utcnow

        def admin() -> PubSubAdmin:
            pubsub = _state.record(self.state, "emulators", "pubsub")
            if pubsub is None or not processes.alive(pubsub):
                raise NotRunning(f"not running ({self.state_dir}): run `platform local up`")
            return self.pubsub_admin()

        return monitoring_status(
            self.topology,
            admin=admin,
            firestore=self.running_firestore,
            service_env=self.state.get("service_env") or self.service_env,
            now=utcnow(),
        )

    # --- services (tests, benchmark, demo) ------------------------------------------------

    def service_url(self, name: str) -> str:
        try:
            return self.state["services"][name]["url"]
        except KeyError:
            raise NotRunning(f"service {name!r} is not running") from None

    def service_record(self, name: str) -> processes.ProcRecord:
        rec = _state.record(self.state, "services", name)
        if rec is None:
            raise NotRunning(f"service {name!r} is not running")
        return rec

    def kill_service(self, name: str) -> None:
        """SIGKILL a service's process group at once (a crash)."""
        processes.kill(self.service_record(name))

    def restart_service(self, name: str, *, extra_env: Mapping[str, str] | None = None) -> None:
        """Restart one service on its port, optionally with new local-only env."""
        if extra_env is not None:
            self.service_env[name] = dict(extra_env)
        prev = self.state["services"].get(name)
        if prev is not None:
            processes.stop(processes.ProcRecord.from_dict(prev["proc"]))
            prev["config_hash"] = "restart"
        self._save_state()
        self.apply()

    def peak_memory_mib(self) -> dict[str, float | None]:
        """Peak resident memory (VmHWM) of each running service, MiB."""
        return peak_memory_mib(self.state)

    # --- scheduler -----------------------------------------------------------------------

    def jobs(self) -> list[JobSpec]:
        return list(self.topology.jobs) if self.topology else []

    def run_job(self, name: str) -> JobRun:
        """Run a scheduler job now (physical or logical name), as the scheduler would."""
        runs = self.state_dir / _state.SCHEDULER_RUNS_FILE
        return LocalScheduler(self.jobs(), runs_file=runs).run_now(name)

    # --- batches -------------------------------------------------------------------------

    def coordinator(self) -> ServiceSpec:
        """The service that takes ``/start``: the one reading the API-key secret."""
        return _batches.coordinator(self.topology)

    def api_key(self) -> tuple[str, str]:
        """(header, value) for ``/start``: the coordinator's secret from ``secrets.yaml``."""
        return _batches.api_key(self.coordinator(), self.secrets_file)

    def batch_client(self, *, with_key: bool = True) -> _batches.BatchClient:
        """The coordinator's HTTP API (with the API key for ``/start``); NotRunning when it
        is not up."""
        url = self.service_url(self.coordinator().name)
        return _batches.BatchClient(url, self.api_key() if with_key else None)

    def start_batch(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        batch_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self.batch_client().start(items, batch_id=batch_id, metadata=metadata)

    def batch_status(self, batch_id: str) -> dict[str, Any]:
        return self.batch_client(with_key=False).status(batch_id)

    def wait_batch(
        self,
        batch_id: str,
        *,
        timeout: float,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Poll ``/status`` until the batch finishes (or ``until(status)``); the last status."""
        return self.batch_client(with_key=False).wait(
            batch_id, timeout=timeout, on_progress=on_progress, until=until
        )

    def dead_letters(self, *, batch_id: str | None = None) -> dict[str, list[Any]]:
        """Messages each dead-letter subscription holds (left in place), optionally of a batch."""
        if self.topology is None:
            return {}
        return _batches.dead_letters(self.pubsub_admin(), self.topology, batch_id=batch_id)

    def count_dead_letters(self, batch_id: str) -> int:
        """How many of a batch's messages the dead-letter subscriptions hold."""
        return sum(len(v) for v in self.dead_letters(batch_id=batch_id).values())

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
        nothing dead-lettered. Never raises for a batch that fails or cannot start.
        """
        return _batches.run_synthetic_batch(
            self.batch_client,
            self.count_dead_letters,
            items=items,
            timeout=timeout,
            say=lambda text: self._say(text, on_output),
            on_progress=on_progress,
        )


def running_firestore(database: str | None = None, *, state_dir: Path | None = None) -> Any:
    """A Firestore client on the running local platform (the one `platform local up` or
    `deploy --stack local` left in ``state_dir``), with its project; never starts anything.

    What `deploy-lock --stack local` and `deploy history --stack local` use, so every tool
    sees the same lock and records as `deploy --stack local`. Raises :class:`NotRunning`.
    """
    return LocalPlatform.attach(state_dir).running_firestore(database)
