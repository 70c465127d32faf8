"""Step 1 of the pipeline: the same checks ``make plan`` runs, before any lock is taken.

* config validation and the program under Pulumi's mocks (``scripts.plan.evaluate_stack``);
* the policy rules over the registered resources, with the offline image check of each image
  the plan builds handed in (``scripts.plan.preflight``; images given by digest, as in a
  rollback, are not built and so not checked).

It returns the plan's :class:`StackInfo` (services, images) for the later steps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.config import ConfigError
from infra.naming import Kind
from scripts.plan import Plan, PlanError, evaluate_stack, preflight_findings
from shared.contract import START_PATH

from ._errors import DeployError
from ._pipeline import PreflightResult
from ._pulumi import ENV_IMAGE_OVERRIDES
from ._stackinfo import stack_info

__all__ = ["PlanPreflight", "evaluate_plan", "plan_stack_info"]


def evaluate_plan(stack: str, root: Path, env: Mapping[str, str] | None = None) -> Plan:
    """The offline plan of ``stack`` (raises ConfigError/PlanError from ``scripts.plan``)."""
    return evaluate_stack(stack, root=root, env=dict(env or {}))


def plan_stack_info(plan: Any):
    """The :class:`StackInfo` of an offline plan: its services, images, project and region, the
    coordinator service and its API key's secret."""
    cfg = plan.config
    platform = getattr(cfg, "platform", None)
    coordinator = api_key_secret = None
    for name, svc in (getattr(platform, "services", None) or {}).items():
        if START_PATH in svc.paths:
            coordinator = cfg.name(Kind.SERVICE, name)
            key = next(iter(svc.secret_env.values()), None)
            api_key_secret = cfg.name(Kind.SECRET, key) if key else None
            break
    return stack_info(
        plan.stack,
        plan.resources,
        {"gcp:project": getattr(cfg, "project", None), "gcp:region": getattr(cfg, "region", None)},
        deploy=getattr(platform, "deploy", None),
        coordinator=coordinator,
        api_key_secret=api_key_secret,
    )


def _rule_findings(plan: Plan) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the policy rules, the image check included."""
    errors, warnings = [], []
    for f in preflight_findings(plan.resources):
        # ``blocks``: error-level and decided; unverifiable findings and warnings do not stop.
        (errors if f.blocks else warnings).append(str(f))
    return errors, warnings


class PlanPreflight:
    """The real preflight: offline plan, policy rules, image checks."""

    def __init__(self, root: Path, *, overrides: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.overrides = dict(overrides or {})

    def __call__(self, stack: str) -> PreflightResult:
        env = {}
        if self.overrides:
            env[ENV_IMAGE_OVERRIDES] = json.dumps(self.overrides, sort_keys=True)
        try:
            plan = evaluate_plan(stack, self.root, env)
        except ConfigError as exc:
            return PreflightResult(errors=[str(i) for i in exc.issues] or [str(exc)])
        except (PlanError, FileNotFoundError) as exc:
            return PreflightResult(errors=[f"offline plan of '{stack}': {exc}"])
        try:
            info = plan_stack_info(plan)
        except DeployError as exc:
            return PreflightResult(errors=[str(exc)], plan=plan)
        errors, warnings = _rule_findings(plan)
        return PreflightResult(errors=errors, info=info, warnings=warnings, plan=plan)
