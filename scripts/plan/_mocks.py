"""Pulumi's mock runtime, recording: run a Pulumi program offline and keep what it registers.

Any program (the platform's ``infra/__main__.py``, the bootstrap's) runs here with
``preview=False``, so every ``apply`` runs. A monitor subclass records each registration with
its parent and dependencies (the mocks alone never see ``depends_on``) as the same
:class:`policy.graph.Resource` records the policy pack builds from a real preview.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from pulumi.runtime.mocks import MockMonitor

from infra.naming import service_account_email, service_account_member
from policy.graph import Resource, T, normalise, thaw

__all__ = ["EVALUATION_LOCK", "PlanMocks", "RecordingMonitor", "run_program"]

#: The mock runtime is process-global state: one evaluation at a time, whichever program.
EVALUATION_LOCK = threading.Lock()


def _fake_hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


class PlanMocks:
    """Plausible provider outputs for what the program reads back (URLs, emails, digests).

    Inputs arrive camelCase; values are deterministic, so two plans of one config are equal.
    """

    def __init__(self, project: str, region: str):
        self.project = project
        self.region = region

    def project_number(self) -> str:
        return str(int(_fake_hex(self.project, 10), 16) % 10**12).zfill(12)

    def call(self, args: Any) -> tuple[dict, list]:
        if args.token == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId") or self.project
            return {"projectId": project, "number": self.project_number(), "name": project}, []
        if args.token == "gcp:organizations/getClientConfig:getClientConfig":
            # The provider's credentials: a placeholder token (the plan marks it secret).
            token = "mock-access-token"
            return {"accessToken": token, "project": self.project, "region": self.region}, []
        return {}, []

    def new_resource(self, args: Any) -> tuple[str, dict]:
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        project = inputs.get("project") or self.project
        out = dict(inputs)
        rid = f"{name}-id"
        if typ == T.SERVICE_ACCOUNT:
            email = service_account_email(inputs["accountId"], project)
            rid = f"projects/{project}/serviceAccounts/{email}"
            out.update(email=email, name=rid, member=service_account_member(email))
        elif typ == T.CLOUD_RUN:
            svc = inputs.get("name", name)
            out["uri"] = f"https://{svc}-{_fake_hex(project, 10)}.a.run.app"
            rid = f"projects/{project}/locations/{inputs.get('location')}/services/{svc}"
        elif typ == T.IMAGE:
            tags = inputs.get("tags") or [name]
            digest = "sha256:" + _fake_hex(json.dumps(tags), 64)
            out.update(ref=f"{tags[0]}@{digest}", digest=digest)
            rid = digest
        elif typ == T.TOPIC:
            rid = f"projects/{project}/topics/{inputs.get('name', name)}"
        elif typ == T.SUBSCRIPTION:
            rid = f"projects/{project}/subscriptions/{inputs.get('name', name)}"
        elif typ == T.SECRET:
            rid = f"projects/{project}/secrets/{inputs.get('secretId', name)}"
            out["name"] = rid
        elif typ == T.SECRET_VERSION:
            out.update(version="1", name=f"{inputs.get('secret')}/versions/1")
            rid = out["name"]
        elif typ == T.REPOSITORY:
            repo = inputs.get("repositoryId", name)
            rid = f"projects/{project}/locations/{inputs.get('location')}/repositories/{repo}"
            out["name"] = repo
        elif typ == T.FIRESTORE_DATABASE:
            rid = f"projects/{project}/databases/{inputs.get('name', name)}"
        elif typ in (T.NOTIFICATION_CHANNEL, T.ALERT_POLICY):
            # Both are named by the API: projects/<p>/<collection>/<generated id>.
            collection = (
                "notificationChannels" if typ == T.NOTIFICATION_CHANNEL else "alertPolicies"
            )
            rid = f"projects/{project}/{collection}/{int(_fake_hex(name, 12), 16)}"
            out["name"] = rid
        elif typ == T.DASHBOARD:
            rid = f"projects/{project}/dashboards/{_fake_hex(name, 12)}"
        elif typ == T.SCHEDULER_JOB:
            rid = f"projects/{project}/locations/{inputs.get('region')}/jobs/{inputs.get('name')}"
        return rid, out


class _CaptureInputs:
    """Hands each resource's decoded inputs to the monitor (so they are decoded once)."""

    def __init__(self, mocks: Any, monitor: RecordingMonitor):
        self._mocks = mocks
        self._monitor = monitor

    def call(self, args: Any) -> Any:
        return self._mocks.call(args)

    def new_resource(self, args: Any) -> Any:
        # Registrations run concurrently on the SDK's worker threads, each one start to end
        # on one thread: a thread-local pairs these inputs with the right request.
        self._monitor._local.inputs = args.inputs
        return self._mocks.new_resource(args)

    def register_transform(self, transform: Any) -> None:
        pass

    def register_invoke_transform(self, transform: Any) -> None:
        pass


class RecordingMonitor(MockMonitor):
    """A mock monitor that records every registration as a :class:`Resource`.

    ``request.parent`` and ``request.dependencies`` (explicit ``depends_on`` plus the
    resources whose outputs the inputs use) never reach ``Mocks.new_resource``: they are read
    here, from the registration request itself.
    """

    def __init__(self, mocks: Any):
        super().__init__(_CaptureInputs(mocks, self))
        self.records: list[Resource] = []
        self._local = threading.local()
        self._thread_loops: set[asyncio.AbstractEventLoop] = set()
        self._loops_lock = threading.Lock()

    def _note_thread_loop(self) -> None:
        # Pulumi's MockMonitor calls _ensure_event_loop() in the executor thread that serves
        # each RPC, and so leaves one event loop per thread for the interpreter to close at
        # exit (where it printed "Exception ignored in: BaseEventLoop.__del__"). Note them so
        # close_thread_loops() can close them when the run ends.
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            return
        with self._loops_lock:
            self._thread_loops.add(loop)

    def close_thread_loops(self) -> None:
        with self._loops_lock:
            loops, self._thread_loops = self._thread_loops, set()
        for loop in loops:
            if not loop.is_closed() and not loop.is_running():
                loop.close()

    def Invoke(self, request: Any) -> Any:  # noqa: N802 - the gRPC method's name
        try:
            return super().Invoke(request)
        finally:
            self._note_thread_loop()

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method's name
        try:
            return super().ReadResource(request)
        finally:
            self._note_thread_loop()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method's name
        self._local.inputs = {}
        try:
            response = super().RegisterResource(request)
        finally:
            self._note_thread_loop()
        if request.type == "pulumi:pulumi:Stack":
            return response
        registered = self.resources.get(response.urn)
        self.records.append(
            Resource.make(
                type=request.type,
                name=request.name,
                urn=response.urn,
                inputs=self._local.inputs,
                outputs=registered.state if registered else {},
                parent=request.parent or None,
                dependencies=list(request.dependencies),
                custom=bool(request.custom),
                ignore_changes=list(request.ignoreChanges),
            )
        )
        return response


def run_program(
    program: Any,
    *,
    project: str,
    stack: str,
    mocks: Any,
    engine_config: Mapping[str, str] | None = None,
    secret_keys: list[str] | None = None,
) -> tuple[list[Resource], dict[str, Any]]:
    """Run ``program`` (a callable) under the mocks; return the records and stack outputs."""

    # One event loop per run, closed before returning: Pulumi's _sync_await otherwise creates
    # one that lives until interpreter exit, and its __del__ then printed "Exception ignored
    # in: BaseEventLoop.__del__ ... Invalid file descriptor: -1" about one run in three.
    monitor = RecordingMonitor(mocks)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return _run_program_in_loop(
            program,
            monitor,
            project=project,
            stack=stack,
            mocks=mocks,
            engine_config=engine_config,
            secret_keys=secret_keys,
        )
    finally:
        _close_loop(loop)
        monitor.close_thread_loops()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    asyncio.set_event_loop(None)
    loop.close()


def _run_program_in_loop(
    program: Any,
    monitor: RecordingMonitor,
    *,
    project: str,
    stack: str,
    mocks: Any,
    engine_config: Mapping[str, str] | None,
    secret_keys: list[str] | None,
) -> tuple[list[Resource], dict[str, Any]]:
    import pulumi
    from pulumi.runtime import settings as pulumi_settings
    from pulumi.runtime.config import set_all_config
    from pulumi.runtime.mocks import set_mocks
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    # A fresh root stack per run: set_mocks keeps an existing one, so a second program in the
    # same process (the bootstrap after the platform stack) would report both programs' exports.
    pulumi_settings.reset_options(project=project, stack=stack, preview=False)
    set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    set_all_config(dict(engine_config or {}), list(secret_keys or []))
    _sync_await(run_pulumi_func(program))
    root = pulumi_settings.get_root_resource()
    outputs: dict[str, Any] = {}
    if root is not None and getattr(root, "outputs", None):
        resolved = _sync_await(pulumi.Output.from_input(dict(root.outputs)).future())
        outputs = thaw(normalise(resolved or {}))
    return monitor.records, outputs
