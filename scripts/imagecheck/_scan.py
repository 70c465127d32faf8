"""The static import scan: every third-party module the code reachable from the entry module
imports, lazy imports inside functions included, must come from a declared distribution.

By AST, over the files as laid out in the image root (:class:`ImageModules` resolves modules
there, not in the checkout); optional imports (``if TYPE_CHECKING:``, ``try`` handling
``ImportError``) are skipped.
"""

from __future__ import annotations

import ast
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._venv import Venv

__all__ = ["ImageModules", "scan_imports"]


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


class ImageModules:
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


def scan_imports(
    modules: ImageModules,
    entry: str,
    venv: Venv,
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
