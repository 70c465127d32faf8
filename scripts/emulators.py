"""Start, wipe and stop Google's own Firestore and Pub/Sub emulators.

Used by the test suite, the benchmarks and the local platform. The emulators ship with the
Google Cloud CLI (Debian packages ``google-cloud-cli-firestore-emulator`` and
``google-cloud-cli-pubsub-emulator``) and need Java; when either is missing the start functions
raise :class:`EmulatorUnavailable` saying which one, so callers can skip with that reason.

Each emulator runs on a free port in its own session (:mod:`scripts.processes`), so
:meth:`stop` ends the JVM and any children it forked. Its output goes to a temporary log file,
quoted in the error when the emulator does not become ready in time. Emulators still running
when the interpreter exits are stopped by an ``atexit`` hook, and the kernel stops them if
this process is killed (unless started ``detached``).

Typical use::

    with start_firestore("demo-project") as fs:
        db = firestore_client(fs, "demo-project")
        db.collection("c").document("d").create({"x": 1})
        fs.wipe()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar

from scripts import processes

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud import firestore

__all__ = [
    "EmulatorUnavailable",
    "EmulatorStartError",
    "FirestoreEmulator",
    "PubSubEmulator",
    "start_firestore",
    "start_pubsub",
    "firestore_client",
    "FIRESTORE_JAR",
    "PUBSUB_LAUNCHER",
]

_SDK_PLATFORM = Path("/usr/lib/google-cloud-sdk/platform")
# Two optional path overrides, read once with os.environ: a pydantic-settings model would
# double the import time of every tool that loads this module, and there is nothing to parse.
#: The Firestore emulator jar; override with the ``FIRESTORE_EMULATOR_JAR`` environment variable.
FIRESTORE_JAR = Path(
    os.environ.get(
        "FIRESTORE_EMULATOR_JAR",
        _SDK_PLATFORM / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar",
    )
)
_FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
#: The Pub/Sub emulator launcher; override with ``PUBSUB_EMULATOR_LAUNCHER``.
PUBSUB_LAUNCHER = Path(
    os.environ.get(
        "PUBSUB_EMULATOR_LAUNCHER",
        _SDK_PLATFORM / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator",
    )
)
_HOST = "127.0.0.1"
#: Grace period between SIGTERM and SIGKILL when stopping an emulator.
_STOP_GRACE_S = 5.0
#: Per-call timeout and total retry deadline for clients made by :func:`firestore_client`:
#: a local emulator answers in milliseconds, and a dead one should fail in seconds, not after
#: the client's default 60 s of retries.
CLIENT_RPC_TIMEOUT_S = 5.0
CLIENT_RETRY_DEADLINE_S = 10.0


class EmulatorUnavailable(RuntimeError):
    """The emulator cannot run on this machine (its jar/launcher or Java is missing)."""


class EmulatorStartError(RuntimeError):
    """The emulator was launched but did not become ready; the message quotes its log."""


#: The emulators this process started and stops at exit (detached ones are not here).
_running: set[_Emulator] = set()
_running_lock = threading.Lock()
#: Characters of an emulator's log quoted when it does not start.
_LOG_TAIL = 4000
#: How often a starting emulator is asked whether it is ready.
_POLL_S = 0.1


class _Emulator:
    """A running emulator process: address, environment for clients, stop."""

    _env_var = ""
    _name = ""
    _kind = ""
    #: What runs it, for the message when it is missing: (what, Debian package, the
    #: environment variable that overrides its path).
    _install = ("", "", "")

    def __init__(
        self,
        proc: subprocess.Popen,
        port: int,
        project: str,
        log_path: Path,
        record: processes.ProcRecord,
    ) -> None:
        self.proc = proc
        self.port = port
        self.project = project
        self.log_path = log_path
        #: The process as :mod:`scripts.processes` knows it (named ``<kind>-emulator``).
        self.record = record

    @property
    def host(self) -> str:
        """``"127.0.0.1:PORT"``, the value clients expect in the ``*_EMULATOR_HOST`` variable."""
        return f"{_HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def env(self) -> dict[str, str]:
        """Environment variables that point the official client (or a subprocess) here."""
        return {self._env_var: self.host}

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop the emulator with its process tree and group. Idempotent."""
        with _running_lock:
            _running.discard(self)
        processes.stop(self.record, grace=_STOP_GRACE_S)
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(host={self.host!r}, project={self.project!r})"


class FirestoreEmulator(_Emulator):
    """Google's Firestore emulator (native mode), started by :func:`start_firestore`."""

    _env_var = "FIRESTORE_EMULATOR_HOST"
    _name = "Firestore emulator"
    _kind = "firestore"
    _install = (
        "Firestore emulator jar",
        "google-cloud-cli-firestore-emulator",
        "FIRESTORE_EMULATOR_JAR",
    )

    def wipe(self, *databases: str, timeout: float = 30) -> None:
        """Delete every document in these databases (default: ``(default)`` and the deploy
        lock's, the two the project uses) of this emulator's project."""
        from scripts.deploylock import DEFAULT_DATABASE

        for database in databases or ("(default)", DEFAULT_DATABASE):
            url = f"{self.url}/emulator/v1/projects/{self.project}/databases/{database}/documents"
            req = urllib.request.Request(url, method="DELETE")
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()


class PubSubEmulator(_Emulator):
    """Google's Pub/Sub emulator, started by :func:`start_pubsub`."""

    _env_var = "PUBSUB_EMULATOR_HOST"
    _name = "Pub/Sub emulator"
    _kind = "pubsub"
    _install = (
        "Pub/Sub emulator launcher",
        "google-cloud-cli-pubsub-emulator",
        "PUBSUB_EMULATOR_LAUNCHER",
    )


def _need_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise EmulatorUnavailable(
            "java is not on PATH; the emulators need Java 11+ (Debian: openjdk-17-jre-headless)"
        )
    return java


def _need_file(path: Path, what: str, package: str, variable: str) -> None:
    if not path.is_file():
        raise EmulatorUnavailable(
            f"{what} not found at {path} (install the Debian package {package} or set {variable})"
        )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200 and resp.read().strip() == b"Ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False


E = TypeVar("E", bound=_Emulator)


def _launch(
    cls: type[E],
    program: Path,
    command: Callable[[str, int], list[str]],
    *,
    port: int | None,
    project: str,
    timeout: float,
    detached: bool,
) -> E:
    """Check that ``program`` (the jar or launcher) and Java are installed, start
    ``command(java, port)`` (a free port by default) and wait until it answers 'Ok'."""
    _need_file(program, *cls._install)
    java = _need_java()
    port = port or processes.free_port()
    cmd = command(java, port)
    fd, log_name = tempfile.mkstemp(prefix=f"{cls.__name__.lower()}-{port}-", suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    proc = processes.launch(cmd, log_path=log_path, die_with_parent=not detached)
    # Not owned by scripts.processes: _stop_all stops these (and removes their logs); a
    # detached one belongs to whoever adopts it (processes.own, the local platform).
    record = processes.track(f"{cls._kind}-emulator", proc, log=log_path, port=port, owned=False)
    emu = cls(proc, port, project, log_path, record)
    if not detached:
        with _running_lock:
            _running.add(emu)

    def ready() -> bool:
        if _http_ok(emu.url + "/"):
            return True
        if proc.poll() is not None:
            log_text = processes.tail(log_path, _LOG_TAIL)
            emu.stop()
            raise EmulatorStartError(
                f"{cls._name} exited with code {proc.returncode} before becoming ready "
                f"(command: {' '.join(cmd)}). Log {log_path}:\n{log_text}"
            )
        return False

    if processes.poll(ready, done=bool, timeout=timeout, interval=_POLL_S):
        return emu
    log_text = processes.tail(log_path, _LOG_TAIL)
    emu.stop()
    raise EmulatorStartError(
        f"{cls._name} did not answer 'Ok' on {emu.url}/ within {timeout:g} s "
        f"(command: {' '.join(cmd)}). Log {log_path}:\n{log_text}"
    )


def start_firestore(
    project: str, *, port: int | None = None, timeout: float = 30, detached: bool = False
) -> FirestoreEmulator:
    """Start Google's Firestore emulator on ``127.0.0.1`` and wait until it answers.

    :param project: the project id clients will use (it also scopes
        :meth:`~FirestoreEmulator.wipe`).
    :param port: a fixed port; a free one by default.
    :param timeout: seconds to wait for readiness (the emulator takes about 2 s here).
    :param detached: outlive this process (the local platform, stopped by ``platform local
        down``); by default it is stopped at exit, and killed with its parent even on SIGKILL.
    :raises EmulatorUnavailable: the jar or Java is missing.
    :raises EmulatorStartError: it exited or did not become ready in time (log quoted).
    """
    return _launch(
        FirestoreEmulator,
        FIRESTORE_JAR,
        lambda java, port: [
            java,
            "-Duser.language=en",
            "-cp",
            str(FIRESTORE_JAR),
            _FIRESTORE_MAIN,
            "--host",
            _HOST,
            "--port",
            str(port),
        ],
        port=port,
        project=project,
        timeout=timeout,
        detached=detached,
    )


def start_pubsub(
    project: str, *, port: int | None = None, timeout: float = 60, detached: bool = False
) -> PubSubEmulator:
    """Start Google's Pub/Sub emulator on ``127.0.0.1`` and wait until it answers
    (``detached`` as for :func:`start_firestore`).

    :raises EmulatorUnavailable: the launcher or Java is missing.
    :raises EmulatorStartError: it exited or did not become ready in time (log quoted).
    """
    return _launch(
        PubSubEmulator,
        PUBSUB_LAUNCHER,
        lambda _java, port: [str(PUBSUB_LAUNCHER), f"--host={_HOST}", f"--port={port}"],
        port=port,
        project=project,
        timeout=timeout,
        detached=detached,
    )


def firestore_client(
    emulator_or_host: FirestoreEmulator | str,
    project: str,
    *,
    database: str | None = None,
    rpc_timeout: float = CLIENT_RPC_TIMEOUT_S,
    retry_deadline: float = CLIENT_RETRY_DEADLINE_S,
) -> firestore.Client:
    """An official ``google.cloud.firestore.Client`` talking to an emulator.

    Uses anonymous credentials (no credential lookup, no metadata-server probe) and does not
    read or change ``FIRESTORE_EMULATOR_HOST``, so clients for several emulators can coexist
    in one process. Every RPC defaults to ``rpc_timeout`` seconds per attempt and gives up
    retrying after ``retry_deadline`` seconds (the library defaults are 60 s each, which made a
    client pointed at a dead emulator hang for ~49 s). Explicit per-call ``timeout=``/``retry=``
    still win.
    """
    from google.api_core import exceptions as core_exceptions
    from google.api_core import gapic_v1
    from google.api_core import retry as retries
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    host = emulator_or_host.host if isinstance(emulator_or_host, _Emulator) else emulator_or_host
    client = firestore.Client(
        project=project, credentials=AnonymousCredentials(), database=database
    )
    # The client reads FIRESTORE_EMULATOR_HOST once, in __init__, and uses it lazily when the
    # first RPC builds the channel. Setting it here instead of in os.environ keeps this
    # thread-safe and scoped to this client.
    client._emulator_host = host
    api = client._firestore_api  # builds the channel and the transport's wrapped methods
    wrapped = getattr(api._transport, "_wrapped_methods", None)
    if isinstance(wrapped, dict):
        for stub in list(wrapped):
            wrapped[stub] = gapic_v1.method.wrap_method(
                stub,
                default_retry=retries.Retry(
                    initial=0.05,
                    maximum=1.0,
                    multiplier=2.0,
                    # Transient errors only, as the library default, but with a short deadline.
                    predicate=retries.if_exception_type(
                        core_exceptions.ServiceUnavailable, core_exceptions.DeadlineExceeded
                    ),
                    timeout=retry_deadline,
                ),
                default_timeout=rpc_timeout,
                client_info=gapic_v1.client_info.DEFAULT_CLIENT_INFO,
            )
    return client


@atexit.register
def _stop_all() -> None:
    with _running_lock:
        emus = list(_running)
    for emu in emus:
        with contextlib.suppress(Exception):
            emu.stop()
