"""Fixtures for the image tests: a throwaway copy of what the images are built from."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.build_context import REPO_ROOT

#: What a build of either image can see (everything else is .dockerignored anyway).
_IMAGE_INPUTS = ("shared", "services", "images", ".dockerignore")


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A copy of the image inputs of this checkout, to break in a test."""
    root = tmp_path / "repo"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in _IMAGE_INPUTS:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=ignore)
        else:
            shutil.copy2(src, root / name)
    return root


@pytest.fixture
def edit() -> Callable[[Path, str, str], None]:
    """Replace one exact snippet in a file, failing loudly if it is not there."""

    def _edit(path: Path, old: str, new: str) -> None:
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))

    return _edit
