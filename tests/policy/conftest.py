"""Plans for the rule tests: the real prod/dev stacks, evaluated once per session."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from scripts.offline_plan import Plan, evaluate_stack, load_stack_file


@pytest.fixture(scope="session")
def prod_plan() -> Plan:
    return evaluate_stack("prod", env={})


@pytest.fixture(scope="session")
def dev_plan() -> Plan:
    return evaluate_stack("dev", env={})


@pytest.fixture
def prod_config() -> dict[str, Any]:
    return copy.deepcopy(load_stack_file("prod"))
