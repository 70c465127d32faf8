"""The layers hold without back doors that ``lint-imports`` cannot see.

import-linter reads ``import`` statements (also inside functions). A module loaded by name
(``importlib.import_module``, ``__import__``) or run by path or ``-m`` escapes it, so the
code has none: this test fails on any new one, naming the file and line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from infra.paths import REPO_ROOT

PACKAGES = ("shared", "services", "infra", "policy", "scripts")
BELOW_SCRIPTS = ("shared", "services", "infra", "policy")
#: (file, what): the uses there are, each with why it is not an import back door.
ALLOWED = {
    # The image check's probe runs in the image layout's own interpreter, not in this process.
    ("scripts/imagecheck/_isolated.py", "importlib.import_module"),
}
_SCRIPTS_NAME = re.compile(r"\bscripts(\.\w+)+|\bscripts/\w+")


def _modules(packages: tuple[str, ...]) -> Iterator[Path]:
    for package in packages:
        yield from sorted((REPO_ROOT / package).rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _dynamic_imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("__import__", "importlib.import_module", "import_module"):
                yield node.lineno, name
            if name.endswith(("spec_from_file_location", "run_module")):
                yield node.lineno, name
        # The probe's source is a string: look inside string constants too.
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for found in ("importlib.import_module", "__import__("):
                if found in node.value:
                    yield node.lineno, found.rstrip("(")


def test_no_module_is_imported_by_name() -> None:
    problems = []
    for path in _modules(PACKAGES):
        rel = str(path.relative_to(REPO_ROOT))
        for line, what in _dynamic_imports(path):
            if (rel, what) not in ALLOWED:
                problems.append(
                    f"{rel}:{line}: {what} (use a plain import: lint-imports checks those)"
                )
    assert not problems, "\n".join(problems)


def test_nothing_below_the_operator_layer_names_a_scripts_module_in_code() -> None:
    """Not even as a string (``python -m scripts...``, a path to run): docstrings may say where
    a caller lives, code may not reach it."""
    problems = []
    for path in _modules(BELOW_SCRIPTS):
        tree = ast.parse(path.read_text(), filename=str(path))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) not in docs and _SCRIPTS_NAME.search(node.value):
                    rel = path.relative_to(REPO_ROOT)
                    problems.append(f"{rel}:{node.lineno}: {node.value[:80]!r}")
    assert not problems, "\n".join(problems)


def test_the_allowed_uses_are_still_there() -> None:
    """An allowance for something that is gone is removed, not kept."""
    for rel, what in ALLOWED:
        assert what in (REPO_ROOT / rel).read_text(), (rel, what)


def test_every_operator_package_and_cli_is_in_the_layers_contract() -> None:
    """A new package under scripts/ (or a new CLI module) outside the contract would escape it:
    each is named in its layer of pyproject's layers contract."""
    import tomllib

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    named = [{m.strip() for m in re.split(r"[:|]", layer)} for layer in layers]
    scripts = REPO_ROOT / "scripts"
    clis = {f"scripts.{p.stem}" for p in scripts.glob("*_cli.py")} - {"scripts.platform_cli"}
    libraries = {f"scripts.{p.parent.name}" for p in scripts.glob("*/__init__.py")}
    libraries |= {f"scripts.{p.stem}" for p in scripts.glob("*.py")} - clis
    libraries -= {"scripts.__init__", "scripts.platform_cli"}
    assert named[0] == {"scripts.platform_cli"}
    assert clis == named[1], clis ^ named[1]
    assert libraries == named[2], libraries ^ named[2]
    (clis_contract,) = [c for c in config["contracts"] if c["type"] == "independence"]
    assert set(clis_contract["modules"]) == clis


def test_the_clis_import_only_public_names() -> None:
    """A CLI imports a library's API from its ``__init__`` (``from scripts.deploy import
    ...``), never a private module (``scripts.deploy._clients``) or a private name."""
    problems = []
    for path in sorted((REPO_ROOT / "scripts").glob("*_cli.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                modules, names = [a.name for a in node.names], []
            else:
                continue
            ours = [m for m in modules if m.split(".")[0] in PACKAGES]
            private = [m for m in ours if any(p.startswith("_") for p in m.split("."))]
            private += [n for n in names if ours and n.startswith("_")]
            if private:
                rel = path.relative_to(REPO_ROOT)
                problems.append(f"{rel}:{node.lineno}: imports {', '.join(private)}")
    assert not problems, "\n".join(problems)
