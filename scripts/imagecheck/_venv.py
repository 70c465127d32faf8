"""The venv's installed distributions, and a site-packages holding exactly the declared ones.

The image check imports the entry module against the distributions the requirements declare
and nothing else: :func:`site_for` links their installed files (by each RECORD) from the
project venv into a private scratch directory, on tmpfs when there is one.
"""

from __future__ import annotations

import atexit
import importlib.metadata as md
import os
import posixpath
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from infra.paths import REPO_ROOT

__all__ = ["SCRATCH", "Venv", "default_site_packages", "norm", "site_for"]


def norm(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


class Venv:
    """Installed distributions of one site-packages directory (cached per path)."""

    _cache: dict[Path, Venv] = {}
    _lock = threading.Lock()

    def __init__(self, site: Path) -> None:
        self.site = site
        self.dists: dict[str, md.Distribution] = {}
        for dist in md.distributions(path=[str(site)]):
            name = dist.metadata["Name"]
            if name:
                self.dists.setdefault(norm(name), dist)
        self._files: dict[str, list[str]] = {}

    @classmethod
    def at(cls, site: Path) -> Venv:
        with cls._lock:
            if site not in cls._cache:
                cls._cache[site] = Venv(site)
            return cls._cache[site]

    def files(self, name: str) -> list[str]:
        if name not in self._files:
            self._files[name] = [str(f) for f in (self.dists[name].files or [])]
        return self._files[name]

    def _recorded(self) -> Iterator[tuple[str, str]]:
        """(distribution, file relative to site-packages) for every file inside it."""
        for name in self.dists:
            for f in self.files(name):
                if not f.startswith(".."):
                    yield name, f

    @cached_property
    def top_level(self) -> dict[str, set[str]]:
        """Top-level importable name -> distributions providing it (from RECORD)."""
        top: dict[str, set[str]] = {}
        for name, f in self._recorded():
            first = f.split("/", 1)[0]
            if first.endswith((".dist-info", ".data")) or first == "__pycache__":
                continue
            if first.endswith(".pth"):
                continue
            mod = first.split(".", 1)[0] if "/" not in f else first
            top.setdefault(mod, set()).add(name)
        return top

    @cached_property
    def dir_owners(self) -> dict[str, set[str]]:
        """Directory (relative to site-packages) -> distributions with files under it."""
        owners: dict[str, set[str]] = {}
        for name, f in self._recorded():
            parts = f.split("/")
            for i in range(1, len(parts)):
                owners.setdefault("/".join(parts[:i]), set()).add(name)
        return owners

    @cached_property
    def console_scripts(self) -> dict[str, str]:
        """Console script name -> the distribution that installs it."""
        scripts: dict[str, str] = {}
        for name, dist in self.dists.items():
            for ep in dist.entry_points:
                if ep.group == "console_scripts":
                    scripts.setdefault(ep.name, name)
        return scripts


def default_site_packages() -> Path:
    """The project venv's site-packages (where ``uv sync`` installed the requirements)."""
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


SCRATCH = _scratch_dir()
_SITE_CACHE: dict[tuple[Path, frozenset[str]], Path] = {}
_SITE_LOCK = threading.Lock()


def site_for(venv: Venv, names: frozenset[str]) -> Path:
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
        target = Path(tempfile.mkdtemp(prefix="site-", dir=SCRATCH))
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
