"""The bootstrap program evaluated offline under Pulumi's mocks (as ``make plan`` does for the
platform stack): ``python -m infra.bootstrap.plan [--stack prod]`` prints its inventory.

:func:`evaluate_bootstrap` is the function to call; it raises
:class:`~infra.bootstrap.config.BootstrapConfigError` with every problem for a bad config.
"""

from __future__ import annotations

import argparse
import contextlib
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import NAMESPACE, parse_bootstrap_config

__all__ = ["BOOTSTRAP_DIR", "BootstrapPlan", "evaluate_bootstrap", "main"]

BOOTSTRAP_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BootstrapPlan:
    stack: str
    resources: list[Any]  # policy.graph.Resource records
    outputs: dict[str, Any]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            if r.custom:
                counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))


def _stack_config(stack: str) -> dict[str, Any]:
    path = BOOTSTRAP_DIR / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no bootstrap stack file {path}")
    return (yaml.safe_load(path.read_text()) or {}).get("config") or {}


def evaluate_bootstrap(stack: str = "prod", *, config: dict | None = None) -> BootstrapPlan:
    """Run ``infra/bootstrap/__main__.py`` under the mocks with ``Pulumi.<stack>.yaml``."""
    import json

    from scripts import offline_plan

    raw = config if config is not None else _stack_config(stack)
    # Validate before running: every problem at once, never a traceback from the program.
    cfg = parse_bootstrap_config(
        raw.get("gcp:project"), raw.get("gcp:region"), raw.get(f"{NAMESPACE}:bootstrap")
    )
    values = {
        k if ":" in k else f"{NAMESPACE}:{k}": json.dumps(v)
        if isinstance(v, dict | list)
        else str(v)
        for k, v in raw.items()
    }
    lock = getattr(offline_plan, "_LOCK", None) or contextlib.nullcontext()
    with lock:
        resources, outputs = offline_plan.run_program(
            lambda: runpy.run_path(str(BOOTSTRAP_DIR / "__main__.py"), run_name="__main__"),
            project=NAMESPACE,
            stack=stack,
            mocks=offline_plan.PlanMocks(cfg.project, cfg.region),
            engine_config=values,
        )
    return BootstrapPlan(stack, resources, outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.bootstrap.plan", description=__doc__)
    parser.add_argument("--stack", default="prod")
    args = parser.parse_args(argv)
    from .config import BootstrapConfigError

    try:
        plan = evaluate_bootstrap(args.stack)
    except (BootstrapConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"bootstrap stack '{args.stack}': one-time resources (infra/bootstrap)")
    for r in plan.resources:
        if r.custom:
            print(f"  {r.type:<55} {r.name}")
    total = sum(plan.counts().values())
    print(f"  {total} resources; outputs: {', '.join(sorted(plan.outputs))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
