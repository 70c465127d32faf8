"""Step 1 of the pipeline: the same checks ``make plan`` runs, before any lock is taken.

* config validation and the program under Pulumi's mocks (``scripts.offline_plan``);
* the policy rules over the registered resources (``policy.rules``);
* the offline image check of each service (``scripts.image_check``).

It returns the plan's :class:`StackInfo` (services, images) for the later steps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.naming import Kind
from shared.contract import START_PATH

from ._errors import DeployError
from ._pipeline import PreflightResult
from ._pulumi import ENV_IMAGE_OVERRIDES
from ._stackinfo import stack_info

__all__ = ["PlanPreflight", "evaluate_plan"]

_NO_RULES = "policy rules (policy/rules.py) are not available: skipped"


def evaluate_plan(stack: str, root: Path, env: Mapping[str, str] | None = None) -> Any:
    """The offline plan of ``stack`` (raises ConfigError/PlanError from ``offline_plan``)."""
    from scripts.offline_plan import evaluate_stack

    return evaluate_stack(stack, root=root, env=dict(env or {}))


def _info(plan: Any):
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


def _rule_findings(plan: Any) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the policy rules; the rule module's own entry point."""
    try:
        from policy import rules
    except ImportError:
        return [], [_NO_RULES]
    run = getattr(rules, "run_rules", None) or getattr(rules, "check_resources", None)
    if run is None:
        return [], ["policy.rules has no run_rules(): skipped"]
    errors, warnings = [], []
    for f in run(plan.resources):
        # ``blocks``: error-level and decided; unverifiable findings and warnings do not stop.
        (errors if getattr(f, "blocks", True) else warnings).append(str(f))
    return errors, warnings


def _image_findings(services: list[str], root: Path) -> tuple[list[str], list[str]]:
    try:
        from scripts.image_check import check_image
    except ImportError:
        from infra.build_context import BuildContext, BuildContextError

        errors = []
        for service in services:
            try:
                BuildContext.for_service(service, root).image_files()
            except (BuildContextError, OSError) as exc:
                errors.append(f"image {service}: {exc}")
        return errors, ["scripts/image_check.py not available: checked the build context only"]
    errors = []
    for service in services:
        try:
            result = check_image(service, root=root)
        except Exception as exc:  # noqa: BLE001 - a check that cannot run is a failure
            errors.append(f"image {service}: {type(exc).__name__}: {exc}")
            continue
        ok = getattr(result, "ok", True)
        if not ok:
            problems = getattr(result, "problems", None) or getattr(result, "errors", None)
            errors.append(f"image {service}: {problems or result}")
    return errors, []


class PlanPreflight:
    """The real preflight: offline plan, policy rules, image checks."""

    def __init__(self, root: Path, *, overrides: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.overrides = dict(overrides or {})

    def __call__(self, stack: str) -> PreflightResult:
        from infra.config import ConfigError
        from scripts.offline_plan import PlanError

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
            info = _info(plan)
        except DeployError as exc:
            return PreflightResult(errors=[str(exc)], plan=plan)
        errors, warnings = _rule_findings(plan)
        img_errors: list[str] = []
        img_warnings: list[str] = []
        if _NO_RULES in warnings:
            # Rule PF10 runs the image check; without the rules, run it here. Images given
            # by digest (rollback) are not built: nothing to check for them.
            built = [s for s in info.services if s not in self.overrides]
            img_errors, img_warnings = _image_findings(built, self.root)
        return PreflightResult(
            errors=errors + img_errors, info=info, warnings=warnings + img_warnings, plan=plan
        )
