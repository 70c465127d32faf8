"""Fixtures for the program's tests: stack configs and plans evaluated under Pulumi's mocks.

Plans are evaluated once per session (each evaluation resets the mock runtime itself, so no
test leaks state into another); tests needing a variant copy the raw config and evaluate it.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts.offline_plan import REPO_ROOT, Plan, evaluate_stack, load_stack_file

PLATFORM = "prediction-platform:platform"


@pytest.fixture(scope="session")
def prod_plan() -> Plan:
    return evaluate_stack("prod", env={})


@pytest.fixture(scope="session")
def dev_plan() -> Plan:
    return evaluate_stack("dev", env={})


@pytest.fixture
def prod_config() -> dict[str, Any]:
    """A fresh, mutable copy of Pulumi.prod.yaml's config mapping."""
    return copy.deepcopy(load_stack_file("prod"))


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
