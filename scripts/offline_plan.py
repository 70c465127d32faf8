"""Evaluate the real Pulumi program in ``infra/`` offline, under Pulumi's mock runtime.

No Pulumi CLI, no cloud: the stack's config is read from ``Pulumi.<stack>.yaml``, validated
(every error at once, :class:`infra.config.ConfigError`), handed to the mock runtime, and the
unchanged program runs with ``preview=False`` so every ``apply`` runs. A monitor subclass
records each registration with its parent and dependencies (the mocks alone never see
``depends_on``), and the result is a :class:`Plan` of :class:`policy.graph.Resource` records,
the same records the policy pack builds from a real preview.

Config secrets cannot be decrypted here: each secret the program reads gets the placeholder
``[secret]``, and secret values are never printed.

Used by ``platform plan``, the preflight rules, the local platform and the deploy pipeline::

    plan = evaluate_stack("prod")
    plan.resources, plan.outputs, plan.config
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import runpy
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi.runtime.mocks import MockMonitor

from infra.config import ConfigError, StackConfig, StackFile, parse_config
from infra.config import load_stack_file as _load_stack_file
from infra.deploy_env import ENV_REPO_ROOT, DeployEnv
from policy.graph import SECRET, Graph, Resource, T, normalise

__all__ = [
    "Plan",
    "PlanError",
    "evaluate_stack",
    "load_stack_file",
    "parse_config",
    "PlanMocks",
    "RecordingMonitor",
    "run_program",
    "REPO_ROOT",
    "PROGRAM",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = REPO_ROOT / "infra" / "__main__.py"
DEFAULT_PROJECT_NAME = "prediction-platform"
SECRET_PLACEHOLDER = SECRET
# The mock runtime is process-global state: one evaluation at a time.
_LOCK = threading.Lock()
_DEPLOY_ENV_VARS = (
    "PLATFORM_GIT_COMMIT",
    "PLATFORM_LOCK_TOKEN",
    "PLATFORM_IMAGE_OVERRIDES",
    ENV_REPO_ROOT,
)


class PlanError(RuntimeError):
    """The program failed under the mocks for a reason other than its config."""


@dataclass(frozen=True)
class Plan:
    stack: str
    config: StackConfig
    resources: list[Resource]
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def graph(self) -> Graph:
        return Graph(self.resources)

    def custom(self) -> list[Resource]:
        return [r for r in self.resources if r.custom]

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.custom():
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))


# --- Mocks --------------------------------------------------------------------------------


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
            email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
            rid = f"projects/{project}/serviceAccounts/{email}"
            out.update(email=email, name=rid, member=f"serviceAccount:{email}")
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


# --- Config ---------------------------------------------------------------------------------


def load_stack_file(stack: str, root: Path | None = None) -> StackFile:
    """The ``config:`` mapping of ``Pulumi.<stack>.yaml``, read as strictly as Pulumi reads it
    (:func:`infra.config.load_stack_file`; ConfigError naming the line if not)."""
    return _load_stack_file(stack, root or REPO_ROOT)


def project_name(root: Path | None = None) -> str:
    path = (root or REPO_ROOT) / "Pulumi.yaml"
    if path.exists():
        doc = yaml.safe_load(path.read_text()) or {}
        return str(doc.get("name") or DEFAULT_PROJECT_NAME)
    return DEFAULT_PROJECT_NAME


def _qualify(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def _engine_config(
    config: Mapping[str, Any], parsed: StackConfig, project: str
) -> tuple[dict[str, str], list[str]]:
    """``namespace:key -> str`` as the engine hands config to a program, plus secret keys."""
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in config.items():
        key = _qualify(key, project)
        if _is_secure(value):
            values[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        elif isinstance(value, dict | list):
            # Keys the program does not validate may hold anything YAML reads (a date): the
            # engine would hand those over as their text too.
            values[key] = json.dumps(value, default=str)
        elif isinstance(value, bool):
            values[key] = str(value).lower()
        else:
            values[key] = str(value)
    # The offline plan cannot hold encrypted values: every secret the program reads gets the
    # placeholder (a real preview fails on a missing one, naming `pulumi config set --secret`).
    for secret in parsed.platform.secrets:
        key = f"{project}:{parsed.secret_config_key(secret)}"
        values[key] = SECRET_PLACEHOLDER
        if key not in secret_keys:
            secret_keys.append(key)
    return values, secret_keys


@contextlib.contextmanager
def _deploy_environ(env: Mapping[str, str] | None, root: Path) -> Iterator[None]:
    """The program reads the deploy variables from os.environ: set exactly ``env``'s."""
    saved = {k: os.environ.get(k) for k in _DEPLOY_ENV_VARS}
    try:
        if env is not None:
            for k in _DEPLOY_ENV_VARS:
                os.environ.pop(k, None)
            for k, v in env.items():
                os.environ[k] = v
        os.environ[ENV_REPO_ROOT] = str(root)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- Evaluation -----------------------------------------------------------------------------


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
        outputs = _plain(normalise(resolved or {}))
    return monitor.records, outputs


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def evaluate_stack(
    stack: str,
    *,
    root: Path | None = None,
    config: dict | None = None,
    env: dict | None = None,
) -> Plan:
    """Evaluate ``infra/`` for ``stack`` under the mock runtime.

    ``root``: where ``Pulumi.<stack>.yaml`` and the build context live (default: this repo).
    ``config``: the ``config:`` mapping to use instead of reading the stack file.
    ``env``: the deploy variables (``PLATFORM_GIT_COMMIT``, ``PLATFORM_LOCK_TOKEN``,
    ``PLATFORM_IMAGE_OVERRIDES``) to evaluate with; default: the process environment.

    Raises :class:`ConfigError` (every problem, with key paths) for invalid config or deploy
    variables, :class:`PlanError` when the program itself fails.
    """
    root = (root or REPO_ROOT).resolve()
    project = project_name(root)
    raw = config if config is not None else load_stack_file(stack, root)
    parsed = parse_config(stack, raw, project)
    DeployEnv.from_environ(parsed.platform.services, env if env is not None else os.environ)
    values, secret_keys = _engine_config(raw, parsed, project)

    def program() -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")

    with _LOCK, _deploy_environ(env, root):
        try:
            resources, outputs = run_program(
                program,
                project=project,
                stack=stack,
                mocks=PlanMocks(parsed.project, parsed.region),
                engine_config=values,
                secret_keys=secret_keys,
            )
        except ConfigError:
            raise
        except Exception as exc:
            import pulumi

            if isinstance(exc, pulumi.RunError):
                raise PlanError(str(exc)) from None
            raise PlanError(f"the program failed under the mocks: {exc!r}") from exc
    return Plan(stack=stack, config=parsed, resources=resources, outputs=outputs)


# --- Inventory ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryGroup:
    component: str  # "Service prediction-worker", or "stack" for top-level resources
    rows: list[tuple[str, str, str]]  # (type, name, key settings)


def _member_name(member: Any) -> str:
    text = str(member)
    return text.removeprefix("serviceAccount:").split("@")[0] if "@" in text else text


def _short_type(typ: str) -> str:
    module, _, cls = typ.rpartition(":")
    pkg = module.split(":")[-1].split("/")[0]
    return f"{pkg}.{cls}"


def _settings(r: Resource, graph: Graph) -> str:
    g = r.get
    if r.type == T.CLOUD_RUN:
        container = g("template.containers[0]") or {}
        limits = get_path(container, "resources.limits") or {}
        invokers = [
            _member_name(m.get("member"))
            for m in graph.of_type(T.RUN_INVOKER_MEMBER)
            if r.urn in m.dependencies and m.get("role") == "roles/run.invoker"
        ]
        return (
            f"image={get_path(container, 'image')} "
            f"sa={_member_name(g('template.serviceAccount'))} "
            f"cpu={limits.get('cpu')} mem={limits.get('memory')} "
            f"timeout={g('template.timeout')} cpu_idle={get_path(container, 'resources.cpuIdle')} "
            f"ingress={g('ingress')} invokers=[{', '.join(invokers)}] "
            f"deletion_protection={g('deletionProtection')}"
        )
    if r.type == T.SUBSCRIPTION:
        push = g("pushConfig")
        dl = g("deadLetterPolicy")
        parts = [f"ack={g('ackDeadlineSeconds')}s"] if g("ackDeadlineSeconds") else []
        if push:
            parts.insert(
                0,
                f"push={get_path(push, 'pushEndpoint')} "
                f"as={_member_name(get_path(push, 'oidcToken.serviceAccountEmail'))}",
            )
        else:
            parts.insert(0, "pull")
        if g("retryPolicy"):
            parts.append(
                f"retry={g('retryPolicy.minimumBackoff')}..{g('retryPolicy.maximumBackoff')}"
            )
        if dl:
            topic = str(get_path(dl, "deadLetterTopic")).rsplit("/", 1)[-1]
            parts.append(f"dead_letter={topic} after {get_path(dl, 'maxDeliveryAttempts')}")
        ttl = g("expirationPolicy.ttl")
        parts.append("expires=never" if ttl == "" else f"expires={ttl}")
        return " ".join(parts)
    if r.type == T.SCHEDULER_JOB:
        return (
            f"schedule='{g('schedule')}' tz={g('timeZone')} "
            f"target={g('httpTarget.uri')} "
            f"as={_member_name(g('httpTarget.oidcToken.serviceAccountEmail'))} "
            f"retries={g('retryConfig.retryCount')} deadline={g('attemptDeadline')}"
        )
    if r.type == T.IMAGE:
        return (
            f"tag={(g('tags') or ['?'])[0]} context={g('context.location')} "
            f"dockerfile={g('dockerfile.location')} build_on_preview={g('buildOnPreview')}"
        )
    if r.type == T.SERVICE_ACCOUNT:
        return f"email={r.out('email')}"
    if r.type in (
        T.RUN_INVOKER_MEMBER,
        T.TOPIC_IAM_MEMBER,
        T.SUBSCRIPTION_IAM_MEMBER,
        T.SECRET_IAM_MEMBER,
        T.PROJECT_IAM_MEMBER,
        T.SERVICE_ACCOUNT_IAM_MEMBER,
        T.REPOSITORY_IAM_MEMBER,
    ):
        on = (
            g("name")
            or g("topic")
            or g("subscription")
            or g("secretId")
            or g("serviceAccountId")
            or g("repository")
            or g("project")
        )
        return f"{g('role')} -> {_member_name(g('member'))} on {str(on).rsplit('/', 1)[-1]}"
    if r.type == T.TOPIC:
        return f"name={g('name')}"
    if r.type == T.SECRET_VERSION:
        return f"data={g('secretData')} version={r.out('version')}"
    if r.type == T.SECRET:
        return f"secret_id={g('secretId')} replication=auto"
    if r.type == T.FIRESTORE_DATABASE:
        return f"name={g('name')} location={g('locationId')} {g('deleteProtectionState')}"
    if r.type == T.FIRESTORE_INDEX:
        fields = ", ".join(f"{f.get('fieldPath')} {f.get('order')}" for f in g("fields") or ())
        return f"{g('collection')}: {fields}"
    if r.type == T.REPOSITORY:
        return f"{g('location')}/{g('repositoryId')} format={g('format')}"
    if r.type == T.PROJECT_SERVICE:
        return str(g("service"))
    return ""


def get_path(obj: Any, path: str) -> Any:
    from policy.graph import get

    return get(obj, path)


def inventory(plan: Plan) -> list[InventoryGroup]:
    """The plan's custom resources grouped by the component that declared them."""
    graph = plan.graph
    groups: dict[str, list[tuple[str, str, str]]] = {}
    order: list[str] = []
    for r in plan.resources:
        if not r.custom:
            key = f"{r.type.rsplit(':', 1)[-1]} {r.name}"
            if key not in groups:
                groups[key] = []
                order.append(key)
    for r in plan.custom():
        component = graph.component_of(r)
        key = f"{component.type.rsplit(':', 1)[-1]} {component.name}" if component else "stack"
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((_short_type(r.type), r.name, _settings(r, graph)))
    return [InventoryGroup(k, groups[k]) for k in order if groups[k]]
