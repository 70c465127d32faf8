"""The one-time bootstrap program (``infra/bootstrap/``) evaluated offline under the same mock
runtime as the platform stack: ``platform bootstrap-plan [--stack prod]`` prints its inventory.
"""

from __future__ import annotations

import json
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.bootstrap.config import NAMESPACE, parse_bootstrap_config
from infra.paths import BOOTSTRAP_DIR
from policy.graph import Resource

from ._mocks import EVALUATION_LOCK, PlanMocks, run_program

__all__ = ["BootstrapPlan", "bootstrap_stack_config", "evaluate_bootstrap"]


@dataclass(frozen=True)
class BootstrapPlan:
    stack: str
    resources: list[Resource]
    outputs: dict[str, Any]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            if r.custom:
                counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))


def bootstrap_stack_config(stack: str, root: Path = BOOTSTRAP_DIR) -> dict[str, Any]:
    """The ``config:`` mapping of ``infra/bootstrap/Pulumi.<stack>.yaml``.

    Raises FileNotFoundError naming the file when the stack has none.
    """
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no bootstrap stack file {path}")
    return (yaml.safe_load(path.read_text()) or {}).get("config") or {}


def evaluate_bootstrap(stack: str = "prod", *, config: dict | None = None) -> BootstrapPlan:
    """Run ``infra/bootstrap/__main__.py`` under the mocks with ``Pulumi.<stack>.yaml``.

    Raises :class:`~infra.bootstrap.config.BootstrapConfigError` with every problem for a bad
    config (validated before the program runs: never a traceback from the program).
    """
    raw = config if config is not None else bootstrap_stack_config(stack)
    cfg = parse_bootstrap_config(
        raw.get("gcp:project"), raw.get("gcp:region"), raw.get(f"{NAMESPACE}:bootstrap")
    )
    values = {
        k if ":" in k else f"{NAMESPACE}:{k}": json.dumps(v)
        if isinstance(v, dict | list)
        else str(v)
        for k, v in raw.items()
    }
    with EVALUATION_LOCK:
        resources, outputs = run_program(
            lambda: runpy.run_path(str(BOOTSTRAP_DIR / "__main__.py"), run_name="__main__"),
            project=NAMESPACE,
            stack=stack,
            mocks=PlanMocks(cfg.project, cfg.region),
            engine_config=values,
        )
    return BootstrapPlan(stack, resources, outputs)
