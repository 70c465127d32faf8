"""Step 1 of the pipeline: the same checks ``make plan`` runs, before any lock is taken.

* config validation and the program under Pulumi's mocks (``scripts.plan.evaluate_stack``);
* the policy rules over the registered resources, with the offline image check of each image
  the plan builds handed in (``scripts.plan.preflight``; images given by digest, as in a
  rollback, are not built and so not checked);
* what the commit label needs (:func:`commit_to_deploy`): a rollback's services still in the
  stack, and no uncommitted change that the image builds would send.

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

from ._errors import DeployError, DirtyTree, RollbackRefused
from ._git import GitRepo
from ._pulumi import ENV_IMAGE_OVERRIDES
from ._stackinfo import StackInfo, stack_info
from ._steps import DeployRequest, PreflightResult

__all__ = ["PlanPreflight", "evaluate_plan", "plan_stack_info", "commit_to_deploy"]


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


def commit_to_deploy(request: DeployRequest, info: StackInfo, repo: GitRepo) -> str:
    """The commit the request deploys (a rollback's recorded one, else HEAD), after refusing
    what would make its label wrong: a rollback to services the stack no longer has, and for a
    real deploy (unless ``allow_dirty``) uncommitted build inputs."""
    if request.rollback_to is not None:
        gone = sorted(set(request.rollback_to.images) - set(info.services))
        if gone:
            raise RollbackRefused(
                f"deployment {request.rollback_to.id} deployed service(s) that no longer "
                f"exist in stack '{request.stack}': {', '.join(gone)}; roll back to a later "
                "deployment, or restore them in the stack config first"
            )
    if not request.dry_run and not request.allow_dirty:
        dirty = _uncommitted_build_inputs(repo)
        if dirty:
            shown = ", ".join(dirty[:10]) + (" ..." if len(dirty) > 10 else "")
            raise DirtyTree(
                f"the work tree has uncommitted changes ({shown}): the commit label would "
                "not describe what is deployed; commit them, or pass --allow-dirty"
            )
    return request.rollback_to.commit if request.rollback_to else repo.head()


def _uncommitted_build_inputs(repo: GitRepo) -> list[str]:
    """What would make the commit label lie: tracked changes, and untracked files that the
    image builds would send (the repo-root context after ``.dockerignore``). Untracked files
    no image sees (``.tools/``, ``.local/``, an editor's scratch file) are not the deploy's
    business."""
    from infra.build_context import ContextSnapshot

    dirty = repo.dirty_paths()
    untracked = repo.untracked_paths()
    if untracked:
        in_context = ContextSnapshot(repo.root.resolve()).files
        dirty += [p for p in untracked if p in in_context]
    return dirty
