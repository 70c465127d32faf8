"""Fixtures for the program's tests (the prod/dev plans and configs are in tests/conftest.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.paths import REPO_ROOT

PLATFORM = "prediction-platform:platform"


@pytest.fixture
def platform_of() -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda config: config[PLATFORM]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the files the offline plan reads: stack files, shared/, images, ignore file."""
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.dev.yaml", ".dockerignore"):
        if (REPO_ROOT / name).exists():
            shutil.copy(REPO_ROOT / name, tmp_path / name)
    for folder in ("shared", "images", "services"):
        shutil.copytree(
            REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path
