"""The isolated import: CMD's server and entry module imported as the container would.

The files as COPY/WORKDIR/ENV lay them out, the declared distributions' files and nothing
else, ``python -S`` (no site, clean environment, cwd = WORKDIR, the image's PYTHONPATH): the
checkout and the venv cannot hide a missing file or an undeclared dependency, and the import
fails with the ``ModuleNotFoundError`` the container would log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ._dockerfile import AppEntry, Stage

__all__ = ["import_in_isolation"]

_IMPORT_PROBE = r"""
import importlib, json, sys, traceback
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["app_dir"])
result = {"ok": True}
try:
    importlib.import_module(spec["server_module"])
    module = importlib.import_module(spec["module"])
    getattr(module, spec["attr"])
    roots = tuple(spec["allowed"])
    leaked = sorted(
        f for f in (getattr(m, "__file__", None) for m in list(sys.modules.values()))
        if f and not f.startswith(roots)
    )
    if leaked:
        result = {"ok": False, "error": "loaded from outside the image: " + ", ".join(leaked[:5])}
except BaseException as exc:
    tb = traceback.extract_tb(exc.__traceback__)
    frame = next((f for f in reversed(tb) if f.filename.startswith(spec["rootfs"])), None)
    where = f" ({frame.filename[len(spec['rootfs']):]}:{frame.lineno})" if frame else ""
    result = {"ok": False, "error": f"{type(exc).__name__}: {exc}{where}"}
import time
result["cpu_s"] = time.process_time()
print(json.dumps(result))
"""


def _stdlib_roots() -> list[str]:
    import sysconfig

    paths = sysconfig.get_paths()
    roots = {paths["stdlib"], paths["platstdlib"]}
    roots |= {p for p in sys.path if p.startswith(sys.base_prefix) and "site-packages" not in p}
    return sorted(roots)


def import_in_isolation(
    *,
    python: str,
    rootfs: Path,
    site: Path,
    stage: Stage,
    entry: AppEntry,
    server_module: str,
    timeout: float,
    meanwhile: Callable[[], None] | None = None,
    cpu: dict[str, float] | None = None,
) -> str | None:
    """Import the server and the entry module as the container would; the error or None."""
    image_pp = [p for p in stage.env.get("PYTHONPATH", "").split(":") if p]
    pythonpath = [str(rootfs / p.lstrip("/")) for p in image_pp] + [str(site)]
    env = {
        k: v
        for k, v in stage.env.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PATH")
    }
    env.update(
        PYTHONPATH=os.pathsep.join(pythonpath),
        PATH="/usr/bin:/bin",
        HOME=str(rootfs),
        LANG="C.UTF-8",
        NO_GCE_CHECK="true",
    )
    cwd = rootfs / stage.workdir.lstrip("/")
    cwd.mkdir(parents=True, exist_ok=True)
    spec = {
        "app_dir": str(rootfs / entry.app_dir.lstrip("/")),
        "server_module": server_module,
        "module": entry.module,
        "attr": entry.attr,
        "rootfs": str(rootfs),
        "allowed": [str(rootfs), str(site), *_stdlib_roots()],
    }
    proc = subprocess.Popen(
        [python, "-S", "-s", "-c", _IMPORT_PROBE, json.dumps(spec)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if meanwhile is not None:
            meanwhile()  # the static scan overlaps the interpreter's imports
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return f"importing {entry.module} took longer than {timeout:g} s"
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        tail = (stderr or stdout).strip()[-800:]
        return f"isolated import exited {proc.returncode}: {tail}"
    if cpu is not None and isinstance(result.get("cpu_s"), int | float):
        cpu["import_cpu"] = round(result["cpu_s"], 4)
    return None if result.get("ok") else str(result.get("error"))
