"""Run a service the way its image does: the Dockerfile's CMD, on a free local port.

The CMD is parsed (by the image check's parser), never copied: for
``CMD ["sh", "-c", "exec uvicorn services.worker.main:app --host 0.0.0.0 --port ${PORT:-8080}"]``
the service runs as ``python -m uvicorn services.worker.main:app --host 127.0.0.1 --port N``
with this checkout as the working directory (the image's WORKDIR holds the same ``shared/``
and ``services/`` tree). Its environment is exactly:

* the Dockerfile's ``ENV`` (``PORT`` set to the chosen port, as Cloud Run does);
* the env vars the program sets on the Cloud Run service (from the resource's inputs);
* its secret env vars, from ``.local/secrets.yaml`` (generated there when absent);
* the emulators' ``FIRESTORE_EMULATOR_HOST`` / ``PUBSUB_EMULATOR_HOST`` and ``NO_GCE_CHECK``;
* ``PATH``, ``HOME``, ``PYTHONPATH`` (the checkout) so the interpreter runs;
* local-only overrides the caller passes (tests shorten the stall window or inject faults).
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from scripts import processes
from scripts.imagecheck import dockerfile_entry
from scripts.local._secrets import load_secrets
from scripts.local._topology import ServiceSpec

__all__ = [
    "EntryPoint",
    "ServiceStartError",
    "entry_point",
    "service_env",
    "load_secrets",
    "start_service",
    "wait_healthy",
    "HEALTH_TIMEOUT_S",
]

#: Seconds a service may take to answer its first request (the Google clients load at start).
HEALTH_TIMEOUT_S = 60.0
#: The path probed for readiness; any HTTP answer counts (uvicorn binds after start-up).
HEALTH_PATH = "/healthz"
HEALTH_POLL_S = 0.1
_SERVERS = {"uvicorn"}


class ServiceStartError(RuntimeError):
    """A service could not be started or did not become healthy (its log is quoted)."""


@dataclass(frozen=True)
class EntryPoint:
    """What a Dockerfile's CMD runs: the server, the app it names, the other arguments."""

    server: str  # "uvicorn"
    app: str  # "services.worker.main:app"
    args: tuple[str, ...]  # server options other than host and port
    image_env: Mapping[str, str]  # the Dockerfile's ENV
    dockerfile: Path

    def argv(self, port: int, *, python: str = sys.executable) -> list[str]:
        return [
            python,
            "-m",
            self.server,
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *self.args,
        ]


def entry_point(dockerfile: Path) -> EntryPoint:
    """What ``dockerfile``'s image runs (:func:`scripts.imagecheck.dockerfile_entry`: ENTRYPOINT
    + CMD, exec or shell form, optionally through ``sh -c "exec ..."``) and its ENV; host and
    port are left out (the local platform binds 127.0.0.1 and a free port)."""
    try:
        entry, image_env = dockerfile_entry(dockerfile)
    except ValueError as exc:
        raise ServiceStartError(
            f"{dockerfile}: {exc}; the local platform cannot start it"
        ) from None
    if entry.server not in _SERVERS:
        raise ServiceStartError(
            f"{dockerfile}: CMD runs {entry.server}, not a known server "
            f"({', '.join(sorted(_SERVERS))}); the local platform cannot start it"
        )
    rest: list[str] = []
    it = iter(entry.options)
    for arg in it:
        if arg in ("--host", "--port"):
            next(it, None)  # replaced: 127.0.0.1 and a free port
        elif not arg.startswith(("--host=", "--port=")):
            rest.append(arg)
    return EntryPoint(
        entry.server, f"{entry.module}:{entry.attr}", tuple(rest), image_env, dockerfile
    )


def service_env(
    spec: ServiceSpec,
    entry: EntryPoint,
    *,
    port: int,
    secret_values: Mapping[str, str],
    emulator_env: Mapping[str, str],
    root: Path,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The exact environment a service runs with (see the module docstring)."""
    env: dict[str, str] = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(root),
        "NO_GCE_CHECK": "true",
    }
    env.update(entry.image_env)
    env["PORT"] = str(port)
    env.update(spec.env)
    for var, secret in spec.secret_env.items():
        env[var] = secret_values[secret]
    env.update(emulator_env)
    env.update(extra or {})
    return env


def wait_healthy(
    record: processes.ProcRecord, port: int, *, timeout: float = HEALTH_TIMEOUT_S
) -> float:
    """Wait until the service answers HTTP on ``port``; returns the seconds it took."""
    start = time.monotonic()
    url = f"http://127.0.0.1:{port}{HEALTH_PATH}"

    def answered() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                resp.read()
            return True
        except urllib.error.HTTPError:
            return True  # it answered: the app is up
        except (urllib.error.URLError, OSError):
            pass
        if not processes.alive(record):
            raise ServiceStartError(
                f"{record.name} exited during start-up. "
                f"Log {record.log}:\n{processes.tail(record.log)}"
            )
        return False

    if processes.poll(answered, done=bool, timeout=timeout, interval=HEALTH_POLL_S):
        return time.monotonic() - start
    processes.stop(record, grace=3)
    raise ServiceStartError(
        f"{record.name} did not answer on {url} within {timeout:g} s. "
        f"Log {record.log}:\n{processes.tail(record.log)}"
    )


def start_service(
    spec: ServiceSpec,
    *,
    root: Path,
    log_dir: Path,
    port: int,
    secret_values: Mapping[str, str],
    emulator_env: Mapping[str, str],
    extra_env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> processes.ProcRecord:
    """Start ``spec`` from its Dockerfile's CMD on ``port``; wait until it answers."""
    if spec.dockerfile is None or not spec.dockerfile.exists():
        raise ServiceStartError(
            f"{spec.name}: no Dockerfile found for its image ({spec.dockerfile}); "
            "the program's docker-build Image names it"
        )
    entry = entry_point(spec.dockerfile)
    env = service_env(
        spec,
        entry,
        port=port,
        secret_values=secret_values,
        emulator_env=emulator_env,
        root=root,
        extra=extra_env,
    )
    record = processes.spawn(
        spec.name,
        entry.argv(port),
        env=env,
        cwd=root,
        log_path=log_dir / f"{spec.name}.log",
        port=port,
    )
    if wait:
        wait_healthy(record, port)
    return record
