"""Offline image check: would this Dockerfile's image start? No Docker daemon, no network.

:func:`check_image` answers for one service in well under a second:

1. **Build context**: the exact file set the build sees (repo root, ``.dockerignore`` through
   the docker SDK's own ``exclude_paths``; :mod:`infra.build_context`). A COPY source missing
   from it fails the check naming the Dockerfile line, as the build would.
2. **Dockerfile rules**: the base image is pinned by digest (``ARG BASE_IMAGE=...@sha256:``),
   the image runs as a non-root ``USER``, every copied file is world-readable (that user must
   read it), the requirements file a ``RUN pip install -r`` installs was COPYed before that
   RUN, and CMD names a server and an ``module:attribute`` app.
3. **Declared dependencies**: the requirements pin what the project venv has installed (so the
   check below is faithful), pin each declared distribution's own dependencies (the closure),
   and declare the server in CMD and every third-party module that the code reachable from
   the entry module imports, lazy imports inside functions included (static, by AST).
4. **Import in isolation**: the files as COPY/WORKDIR/ENV lay them out are written to a temp
   image root; the requirement distributions' installed files (and nothing else) are linked
   into a temp site-packages from the venv; then ``python -S`` (no site, clean environment,
   cwd = WORKDIR, the image's PYTHONPATH) imports CMD's server and entry module and reads the
   app attribute. The checkout and the venv cannot hide a missing file or an undeclared
   dependency: the import fails with the ``ModuleNotFoundError`` the container would log.

The result carries the image's content hash (:func:`infra.build_context.image_tag` is its
prefix: the tag the Pulumi program gives the image). The preflight calls::

    from scripts.image_check import check_image
    result = check_image("prediction-worker")   # or "worker"
    if not result.ok:
        for error in result.errors: ...

CLI: ``platform images check [SERVICE...] [--json]`` (:mod:`scripts.images_cli`).
"""

from __future__ import annotations

import ast
import atexit
import importlib.metadata as md
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

from infra.build_context import (
    REPO_ROOT,
    TAG_LENGTH,
    BuildContext,
    BuildContextError,
    dockerfile_for,
)

__all__ = [
    "AppEntry",
    "ImageCheckResult",
    "SERVICES",
    "check_image",
    "check_images",
    "image_cmd",
    "parse_entry",
]

#: The services with an image (``images/<short name>.Dockerfile``).
SERVICES: tuple[str, ...] = ("prediction-coordinator", "prediction-worker")
#: Seconds the isolated import may take before the check gives up.
IMPORT_TIMEOUT_S = 60.0
#: Servers CMD may name, and the module ``python -m`` would run for each.
_SERVERS = {"uvicorn": "uvicorn", "gunicorn": "gunicorn", "hypercorn": "hypercorn"}
_APP_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_ROOT_USERS = {"", "root", "0", "root:root", "0:0", "root:0", "0:root"}


def _norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppEntry:
    """What CMD starts: the server, the ``module:attr`` app, and the app dir it imports from."""

    server: str  # "uvicorn"
    module: str  # "services.coordinator.main"
    attr: str  # "app"
    app_dir: str  # absolute image path put first on sys.path (uvicorn --app-dir, default cwd)
    argv: tuple[str, ...]  # CMD as exec'd (ENTRYPOINT + CMD)


@dataclass(frozen=True)
class ImageCheckResult:
    service: str
    dockerfile: str
    context: str
    ok: bool
    errors: tuple[str, ...]
    content_hash: str | None = None
    entry: AppEntry | None = None
    files: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The image tag the Pulumi program uses (:func:`infra.build_context.image_tag`)."""
        return self.content_hash[:TAG_LENGTH] if self.content_hash else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tag"] = self.tag
        data["errors"] = list(self.errors)
        return data


# -- Dockerfile facts --------------------------------------------------------------------------
@dataclass
class _Run:
    line: int
    command: str
    workdir: str


@dataclass
class _Stage:
    base: str = ""
    base_resolved: str = ""
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    runs: list[_Run] = field(default_factory=list)


_VAR = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


def _expand(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(3)
        default = m.group(2)
        got = env.get(name)
        return got if got else (default or "")

    return _VAR.sub(sub, value)


def _exec_form(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
            if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
                return parsed
        except json.JSONDecodeError:
            pass
    return ["/bin/sh", "-c", value]


def _stage_facts(bc: BuildContext) -> _Stage:
    stage = _Stage()
    structure = bc.parser.structure
    args: dict[str, str] = {}
    last_from = max(
        (i for i, ins in enumerate(structure) if ins["instruction"] == "FROM"), default=0
    )
    for ins in structure[:last_from]:
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            k, v = ins["value"].strip().split("=", 1)
            args[k.strip()] = v.strip().strip('"')
    for ins in structure[last_from:]:
        kind, value, line = ins["instruction"], ins["value"], ins["startline"] + 1
        if kind == "FROM":
            stage.base = value.split()[0] if value.split() else ""
            stage.base_resolved = _expand(stage.base, args)
        elif kind == "WORKDIR":
            stage.workdir = posixpath.normpath(
                posixpath.join(stage.workdir, _expand(value.strip(), stage.env))
            )
        elif kind == "ENV":
            words = shlex.split(value)
            if words and "=" not in words[0]:
                stage.env[words[0]] = _expand(" ".join(words[1:]), stage.env)
            else:
                for w in words:
                    k, _, v = w.partition("=")
                    stage.env[k] = _expand(v, stage.env)
        elif kind == "USER":
            stage.user = value.strip()
        elif kind == "CMD":
            stage.cmd = _exec_form(value)
        elif kind == "ENTRYPOINT":
            stage.entrypoint = _exec_form(value)
        elif kind == "RUN":
            stage.runs.append(_Run(line, value, stage.workdir))
    return stage


def parse_entry(argv: Sequence[str], workdir: str = "/") -> AppEntry:
    """The server and ``module:attr`` app a CMD starts; ValueError if it names none.

    Understands ``uvicorn MOD:APP ...``, ``python -m uvicorn MOD:APP``, gunicorn/hypercorn,
    and any of them inside ``sh -c "exec ..."``.
    """
    words = list(argv)
    if (
        len(words) >= 3
        and posixpath.basename(words[0]) in ("sh", "bash", "dash")
        and words[1] == "-c"
    ):
        words = shlex.split(words[2])
    while words and (words[0] == "exec" or re.match(r"^\w+=", words[0])):
        words = words[1:]
    if not words:
        raise ValueError("CMD is empty")
    exe = posixpath.basename(words[0])
    rest = words[1:]
    if re.match(r"^python(\d(\.\d+)?)?$", exe) and len(rest) >= 2 and rest[0] == "-m":
        exe, rest = rest[1], rest[2:]
    if exe not in _SERVERS:
        raise ValueError(
            f"CMD runs {exe!r}, not a known ASGI server ({', '.join(sorted(_SERVERS))})"
        )
    spec = next((w for w in rest if _APP_SPEC.match(w)), None)
    if spec is None:
        raise ValueError(f"CMD runs {exe} without a 'module:attribute' app")
    app_dir = workdir
    for i, w in enumerate(rest):
        if w == "--app-dir" and i + 1 < len(rest):
            app_dir = posixpath.normpath(posixpath.join(workdir, rest[i + 1]))
        elif w.startswith("--app-dir="):
            app_dir = posixpath.normpath(posixpath.join(workdir, w.split("=", 1)[1]))
    module, attr = spec.split(":", 1)
    return AppEntry(server=exe, module=module, attr=attr, app_dir=app_dir, argv=tuple(argv))


def image_cmd(service: str, root: Path | None = None) -> list[str]:
    """The argv the image starts (ENTRYPOINT + CMD), e.g. for running a service locally.

    Run it from the repo root (the image's WORKDIR ``/app`` holds the repo's ``shared/`` and
    ``services/``) with ``PORT`` in the environment: ``sh -c`` expands it.
    """
    stage = _stage_facts(BuildContext.for_service(service, root))
    return (stage.entrypoint or []) + (stage.cmd or [])


# -- requirements ------------------------------------------------------------------------------
_PIP_R = re.compile(r"(?:^|\s)(?:-r\s*|--requirement(?:\s+|=))(\S+)")


def _requirements_files(run: _Run) -> list[str]:
    """Image paths of the requirements files a ``RUN ... pip install -r X`` installs."""
    if "pip" not in run.command or "install" not in run.command:
        return []
    return [posixpath.normpath(posixpath.join(run.workdir, m)) for m in _PIP_R.findall(run.command)]


def _parse_requirements(text: str) -> tuple[dict[str, Requirement], list[str], set[str]]:
    """Requirements by normalised name (extras merged), problems (lines that are not
    ``name==version``), and the names pinned without extras on a line of their own."""
    reqs: dict[str, Requirement] = {}
    plain: set[str] = set()
    problems: list[str] = []
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"\s--hash[= ]\S+", "", " " + line).strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            problems.append(f"unparseable requirement {line!r}: {exc}")
            continue
        pins = [s for s in req.specifier if s.operator in ("==", "===")]
        if not pins:
            problems.append(f"{req.name} is not pinned (name==version)")
        name = _norm(req.name)
        if not req.extras:
            plain.add(name)
        if name in reqs and reqs[name].extras | req.extras != req.extras:
            # "X==v" and "X[extra]==v" on separate lines: one requirement with the extras.
            req = Requirement(
                f"{req.name}[{','.join(sorted(reqs[name].extras | req.extras))}]{req.specifier}"
            )
        reqs[name] = req
    return reqs, problems, plain


# -- the venv's distributions ------------------------------------------------------------------
class _Venv:
    """Installed distributions of one site-packages directory (cached per path)."""

    _cache: dict[Path, _Venv] = {}
    _lock = threading.Lock()

    def __init__(self, site: Path) -> None:
        self.site = site
        self.dists: dict[str, md.Distribution] = {}
        for dist in md.distributions(path=[str(site)]):
            name = dist.metadata["Name"]
            if name:
                self.dists.setdefault(_norm(name), dist)
        self._top: dict[str, set[str]] | None = None
        self._scripts: dict[str, str] | None = None
        self._owners: dict[str, set[str]] | None = None
        self._files: dict[str, list[str]] = {}

    @classmethod
    def at(cls, site: Path) -> _Venv:
        with cls._lock:
            if site not in cls._cache:
                cls._cache[site] = _Venv(site)
            return cls._cache[site]

    def files(self, name: str) -> list[str]:
        if name not in self._files:
            self._files[name] = [str(f) for f in (self.dists[name].files or [])]
        return self._files[name]

    @property
    def top_level(self) -> dict[str, set[str]]:
        """Top-level importable name -> distributions providing it (from RECORD)."""
        if self._top is None:
            top: dict[str, set[str]] = {}
            for name in self.dists:
                for f in self.files(name):
                    first = f.split("/", 1)[0]
                    if first.startswith("..") or first.endswith((".dist-info", ".data")):
                        continue
                    if first == "__pycache__" or first.endswith(".pth"):
                        continue
                    mod = first.split(".", 1)[0] if "/" not in f else first
                    top.setdefault(mod, set()).add(name)
            self._top = top
        return self._top

    @property
    def dir_owners(self) -> dict[str, set[str]]:
        """Directory (relative to site-packages) -> distributions with files under it."""
        if self._owners is None:
            owners: dict[str, set[str]] = {}
            for name in self.dists:
                for f in self.files(name):
                    if f.startswith(".."):
                        continue
                    parts = f.split("/")
                    for i in range(1, len(parts)):
                        owners.setdefault("/".join(parts[:i]), set()).add(name)
            self._owners = owners
        return self._owners

    @property
    def console_scripts(self) -> dict[str, str]:
        if self._scripts is None:
            scripts: dict[str, str] = {}
            for name, dist in self.dists.items():
                for ep in dist.entry_points:
                    if ep.group == "console_scripts":
                        scripts.setdefault(ep.name, name)
            self._scripts = scripts
        return self._scripts


def _default_site_packages() -> Path:
    venv = REPO_ROOT / ".venv"
    candidates = sorted(venv.glob("lib/python3*/site-packages"))
    if candidates:
        return candidates[0]
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"])


def _scratch_dir() -> Path:
    """A private temp dir, on tmpfs when there is one (thousands of links are cheap there)."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="image-check-", dir=base))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


_SCRATCH = _scratch_dir()
_SITE_CACHE: dict[tuple[Path, frozenset[str]], Path] = {}
_SITE_LOCK = threading.Lock()


def _site_for(venv: _Venv, names: frozenset[str]) -> Path:
    """A site-packages holding exactly ``names``' installed files, as links into the venv.

    A directory is linked whole when every distribution that installed files into it (by
    every RECORD in the venv) is one of ``names``; shared namespace directories (``google/``,
    ``google/cloud/``) are recreated and their declared parts linked. Each recreated
    directory's ``__pycache__`` links to the venv's, so bytecode is shared: a cached .pyc is
    only used for a source file that is present, so that exposes nothing else.
    """
    key = (venv.site, names)
    with _SITE_LOCK:
        if key in _SITE_CACHE:
            return _SITE_CACHE[key]
        owners = venv.dir_owners
        target = Path(tempfile.mkdtemp(prefix="site-", dir=_SCRATCH))
        linked: set[str] = set()
        made: set[str] = {""}

        def ensure_dir(rel_dir: str) -> None:
            if rel_dir in made:
                return
            ensure_dir(posixpath.dirname(rel_dir))
            (target / rel_dir).mkdir()
            made.add(rel_dir)
            cache = venv.site / rel_dir / "__pycache__"
            if cache.parent.is_dir() and not rel_dir.endswith(".dist-info"):
                cache.mkdir(exist_ok=True)
                (target / rel_dir / "__pycache__").symlink_to(cache)

        root_cache = venv.site / "__pycache__"
        root_cache.mkdir(exist_ok=True)
        (target / "__pycache__").symlink_to(root_cache)
        for name in sorted(names):
            for rel in venv.files(name):
                if rel.startswith("..") or "/__pycache__/" in f"/{rel}":
                    continue
                parts = rel.split("/")
                # The shallowest ancestor directory owned only by declared distributions.
                unit = rel
                for i in range(1, len(parts)):
                    d = "/".join(parts[:i])
                    if owners.get(d, set()) <= names:
                        unit = d
                        break
                if unit in linked or any(
                    unit.startswith(u + "/") for u in _ancestors(unit, linked)
                ):
                    continue
                src = venv.site / unit
                if not src.exists():
                    continue
                ensure_dir(posixpath.dirname(unit))
                (target / unit).symlink_to(src)
                linked.add(unit)
        _SITE_CACHE[key] = target
        return target


def _ancestors(path: str, linked: set[str]) -> list[str]:
    parts = path.split("/")
    return [a for a in ("/".join(parts[:i]) for i in range(1, len(parts))) if a in linked]


# -- static import scan ------------------------------------------------------------------------
def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``if TYPE_CHECKING:`` or a ``try`` that handles ImportError (optional import)."""
    child, cur = node, parents.get(node)
    while cur is not None:
        if isinstance(cur, ast.If) and child in cur.body:
            test = ast.unparse(cur.test)
            if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                return True
        if isinstance(cur, ast.Try) and child in cur.body:
            for h in cur.handlers:
                names = ast.unparse(h.type) if h.type is not None else ""
                if "ImportError" in names or "ModuleNotFoundError" in names:
                    return True
        child, cur = cur, parents.get(cur)
    return False


#: CPython 3.11's AST constructor is not thread-safe ("AST constructor recursion depth
#: mismatch", gh-106905): parses of this module never overlap if a caller uses threads (it
#: cannot protect against other code's parses; check_images itself uses none).
_AST_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Import:
    module: str  # absolute dotted name
    names: tuple[str, ...]  # for "from X import a, b"
    line: int


def _imports(path: Path, module: str, is_package: bool) -> list[_Import]:
    source = path.read_bytes()
    with _AST_LOCK:
        tree = ast.parse(source, filename=str(path))
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    found: list[_Import] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if _guarded(node, parents):
                continue
            found.extend(_Import(a.name, (), node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if _guarded(node, parents):
                continue
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append(_Import(name, tuple(a.name for a in node.names), node.lineno))
    return found


class _ImageModules:
    """Module resolution inside the laid-out image root."""

    def __init__(self, rootfs: Path, search: Sequence[str]) -> None:
        self.rootfs = rootfs
        self.search = [rootfs / p.lstrip("/") for p in search]

    def find(self, module: str) -> tuple[Path, bool] | None:
        """(file, is_package) for a module in the image, or (dir, True) for a namespace pkg."""
        parts = module.split(".")
        for base in self.search:
            d = base.joinpath(*parts)
            if (d / "__init__.py").is_file():
                return d / "__init__.py", True
            f = base.joinpath(*parts[:-1], parts[-1] + ".py")
            if f.is_file():
                return f, False
            if d.is_dir():
                return d, True
        return None

    def image_path(self, path: Path) -> str:
        return "/" + str(path.relative_to(self.rootfs))


def _scan(
    modules: _ImageModules,
    entry: str,
    venv: _Venv,
    declared: set[str],
    req_path: str,
) -> list[str]:
    """Errors for third-party imports (reachable from ``entry``) the requirements lack."""
    errors: list[str] = []
    seen: set[str] = set()
    queue = [entry]
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    while queue:
        mod = queue.pop()
        if mod in seen:
            continue
        seen.add(mod)
        # Importing a.b.c runs a/__init__ and a/b/__init__ too.
        for i in range(1, mod.count(".") + 1):
            parent = ".".join(mod.split(".")[:i])
            if parent not in seen:
                queue.append(parent)
        hit = modules.find(mod)
        if hit is None or hit[0].is_dir():
            continue
        path, is_pkg = hit
        for imp in _imports(path, mod, is_pkg):
            if not imp.module:
                continue
            top = imp.module.split(".")[0]
            if top in stdlib:
                continue
            if modules.find(top) is not None:
                queue.append(imp.module)
                for n in imp.names:  # "from pkg import submodule"
                    if n != "*" and modules.find(f"{imp.module}.{n}") is not None:
                        queue.append(f"{imp.module}.{n}")
                continue
            owners = venv.top_level.get(top, set())
            where = f"{modules.image_path(path)}:{imp.line}"
            if not owners:
                errors.append(
                    f"{where}: imports '{imp.module}', which is neither in the image nor "
                    "provided by any installed distribution"
                )
            elif not owners & declared:
                dists = ", ".join(sorted(venv.dists[o].metadata["Name"] for o in owners))
                errors.append(
                    f"{where}: imports '{imp.module}' (distribution {dists}), which "
                    f"{req_path} does not declare"
                )
    return errors


# -- the isolated import ---------------------------------------------------------------------
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


def _import_in_isolation(
    *,
    python: str,
    rootfs: Path,
    site: Path,
    stage: _Stage,
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


# -- the check ---------------------------------------------------------------------------------
def check_image(
    service: str,
    root: Path | str | None = None,
    *,
    dockerfile: Path | str | None = None,
    context: Path | str | None = None,
    site_packages: Path | str | None = None,
    python: str | None = None,
    timeout: float = IMPORT_TIMEOUT_S,
) -> ImageCheckResult:
    """Check one service's image offline; never raises for a broken image (see ``errors``).

    :param service: ``prediction-worker`` or its short name ``worker``.
    :param root: the repository (default: this checkout); the Dockerfile is
        ``<root>/images/<short name>.Dockerfile`` and the context is ``root``.
    :param dockerfile: another Dockerfile (absolute, or relative to ``root``).
    :param context: another build context (e.g. the service directory, to show that fails).
    :param site_packages: where the requirement distributions are installed (the project
        venv's site-packages by default).
    :param python: the interpreter for the isolated import (this one by default; a 3.11 like
        the image's base).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    root_p = Path(root or REPO_ROOT).resolve()
    ctx = Path(context).resolve() if context else root_p
    df = Path(dockerfile) if dockerfile else root_p / dockerfile_for(service)
    df = (df if df.is_absolute() else root_p / df).resolve()
    bc = BuildContext(root=ctx, dockerfile=df)
    errors: list[str] = []

    def done(**kw) -> ImageCheckResult:
        return ImageCheckResult(
            service=service,
            dockerfile=str(df),
            context=str(ctx),
            ok=not errors,
            errors=tuple(errors),
            seconds=round(time.perf_counter() - started, 4),
            timings=timings,
            **kw,
        )

    if not df.is_file():
        errors.append(f"no Dockerfile at {df}")
        return done()
    lap = time.perf_counter()
    try:
        files = bc.image_files()
        content_hash = bc.content_hash()
    except (BuildContextError, OSError) as exc:
        errors.append(str(exc))
        return done()
    timings["context"] = round(time.perf_counter() - lap, 4)
    stage = _stage_facts(bc)
    rel_df = _display(df, root_p)

    # Dockerfile rules.
    if "@sha256:" not in stage.base_resolved:
        errors.append(
            f"{rel_df}: base image {stage.base_resolved or stage.base!r} is not pinned by digest "
            "(ARG BASE_IMAGE=name@sha256:... then FROM ${BASE_IMAGE})"
        )
    if stage.user.strip() in _ROOT_USERS:
        errors.append(f"{rel_df}: runs as root: add a non-root USER (e.g. USER 10001:10001)")
    for f in files:
        if not f.mode & 0o004:
            errors.append(
                f"{rel_df}:{f.line}: {f.context_path} lands as {f.image_path} with mode "
                f"{f.mode:o}: USER {stage.user or 'root'} cannot read it"
            )
    try:
        entry = parse_entry((stage.entrypoint or []) + (stage.cmd or []), stage.workdir)
    except ValueError as exc:
        errors.append(f"{rel_df}: {exc}")
        return done(content_hash=content_hash, files=len(files))

    landed = {f.image_path: f for f in files}
    req_files: list[tuple[str, _Run]] = [
        (path, run) for run in stage.runs for path in _requirements_files(run)
    ]
    if not req_files:
        errors.append(f"{rel_df}: no 'RUN pip install -r <requirements>' installs the dependencies")
        return done(content_hash=content_hash, entry=entry, files=len(files))
    declared: dict[str, Requirement] = {}
    plain_pins: set[str] = set()
    hashed = False
    req_display = ", ".join(p for p, _ in req_files)
    for path, run in req_files:
        f = landed.get(path)
        if f is None or f.line > run.line:
            errors.append(
                f"{rel_df}:{run.line}: installs {path}, which no COPY before that line puts in "
                "the image"
            )
            continue
        text = (ctx / f.context_path).read_text()
        hashed = hashed or "--hash" in text or "--require-hashes" in run.command
        reqs, problems, plain = _parse_requirements(text)
        errors.extend(f"{f.context_path}: {p}" for p in problems)
        declared.update(reqs)
        plain_pins |= plain

    # Declared dependencies against the venv they will be imported from.
    lap = time.perf_counter()
    venv = _Venv.at(Path(site_packages).resolve() if site_packages else _default_site_packages())
    marker_env = default_environment()
    for name, req in sorted(declared.items()):
        dist = venv.dists.get(name)
        if dist is None:
            errors.append(
                f"{req_display}: {req.name} is not installed in {venv.site} (run `uv sync`)"
            )
            continue
        pinned = next((s.version for s in req.specifier if s.operator in ("==", "===")), None)
        if pinned and pinned != dist.version:
            errors.append(
                f"{req_display}: pins {req.name}=={pinned} but the venv has {dist.version}: "
                "regenerate the requirements from uv.lock (see requirements.in)"
            )
        for raw in dist.requires or []:
            dep = Requirement(raw)
            extras = req.extras or {""}
            if dep.marker and not any(
                dep.marker.evaluate({**marker_env, "extra": e}) for e in extras
            ):
                continue
            pinned_dep = declared.get(_norm(dep.name))
            if pinned_dep is None:
                errors.append(
                    f"{req_display}: {req.name} requires {dep.name}, which is not pinned there "
                    "(pin the whole closure)"
                )
            elif hashed and not set(dep.extras) <= set(pinned_dep.extras):
                # pip --require-hashes refuses "X[extra]" wanted by a dependency unless the
                # file pins it with that extra (found by the real build: google-api-core[grpc]).
                wanted = f"{dep.name}[{','.join(sorted(dep.extras))}]"
                errors.append(
                    f"{req_display}: {req.name} requires {wanted}; with hashes pip installs it "
                    f"only if pinned with its extras ({wanted}==...; uv pip compile "
                    "--no-strip-extras)"
                )
    if hashed:
        for name, req in sorted(declared.items()):
            if req.extras and name not in plain_pins:
                # pip --require-hashes also wants the plain "X==v" next to "X[extra]==v".
                errors.append(
                    f"{req_display}: {req.name}[{','.join(sorted(req.extras))}] is pinned but "
                    f"plain {req.name} is not; pip --require-hashes needs both "
                    "(images/pin_requirements.py writes both)"
                )
    server_dist = venv.console_scripts.get(entry.server)
    if server_dist is None or server_dist not in declared:
        errors.append(f"{rel_df}: CMD runs {entry.server}, which {req_display} does not declare")
    timings["requirements"] = round(time.perf_counter() - lap, 4)

    # Lay the image out and scan what the entry module reaches.
    lap = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="layout-", dir=_SCRATCH))
    try:
        rootfs = work / "root"
        for f in files:
            dst = rootfs / f.image_path.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ctx / f.context_path, dst)
            dst.chmod(f.mode)
        (rootfs / stage.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        search = [entry.app_dir] + [
            p for p in stage.env.get("PYTHONPATH", "").split(":") if p.startswith("/")
        ]
        modules = _ImageModules(rootfs, search)
        installed = frozenset(n for n in declared if n in venv.dists)
        site = _site_for(venv, installed)
        timings["layout"] = round(time.perf_counter() - lap, 4)

        def scan() -> None:
            if modules.find(entry.module) is None:
                errors.append(
                    f"{rel_df}: CMD's app module {entry.module} is not in the image "
                    f"(searched {', '.join(search)})"
                )
            else:
                errors.extend(_scan(modules, entry.module, venv, set(installed), req_display))

        lap = time.perf_counter()
        failure = _import_in_isolation(
            python=python or sys.executable,
            rootfs=rootfs,
            site=site,
            stage=stage,
            entry=entry,
            server_module=_SERVERS[entry.server],
            timeout=timeout,
            meanwhile=scan,
            cpu=timings,
        )
        timings["import"] = round(time.perf_counter() - lap, 4)
        if failure:
            errors.append(
                f"importing {entry.module}:{entry.attr} in the image layout failed: {failure}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return done(content_hash=content_hash, entry=entry, files=len(files))


def check_images(
    services: Iterable[str] = SERVICES, root: Path | str | None = None, **kwargs
) -> list[ImageCheckResult]:
    """:func:`check_image` for several services, one after the other.

    Not in threads: CPython 3.11's ``ast`` keeps interpreter-wide state (gh-106905), and a
    static scan in a worker thread failed at random with "AST constructor recursion depth
    mismatch" in CI although this module serialised its own parses. Each check still
    overlaps its static scan with its isolated import (a subprocess).
    """
    return [check_image(s, root, **kwargs) for s in services]


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
