"""Whether a stack may run locally: its offline plan, refused before anything is applied.

A stack is refused (:class:`~scripts.local._errors.RefusedStack`, every problem listed) when
its config is invalid, a topic has no subscription (its messages would be lost), or a
preflight rule (``policy/rules/``) blocks it: the same gate as a cloud deploy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from scripts.local._errors import PlatformError, RefusedStack
from scripts.local._monitoring import watches
from scripts.local._topology import Topology, dangling_topics, topology_from_resources

__all__ = [
    "evaluate",
    "planned_topology",
    "read_config_file",
    "stack_project",
    "FALLBACK_PROJECT",
]

#: The emulators' project when the stack names none (any id works on an emulator).
FALLBACK_PROJECT = "local-project"


def read_config_file(path: Path, stack: str) -> Any:
    """The ``config:`` of a ``Pulumi.<stack>.yaml`` to run instead of the stack's own file.

    Read as strictly as the stack's own file (duplicate keys, YAML 1.1 scalars, with their
    lines): ``infra.config.ConfigError`` when it is invalid, PlatformError when it cannot be
    read."""
    from infra.config import load_stack_text

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PlatformError(f"cannot read {path}: {exc}") from None
    return load_stack_text(text, path.name, stack)


def evaluate(
    stack: str, *, root: Path, config: Mapping[str, Any] | None, env: Mapping[str, str]
) -> Any:
    """The stack's offline plan (``config``: a ``config:`` mapping instead of the stack file;
    ``env``: the deploy variables). Raises RefusedStack with every problem found."""
    from infra.config import ConfigError
    from scripts.plan import PlanError, evaluate_stack

    try:
        plan = evaluate_stack(stack, root=root, config=config, env=dict(env))
    except ConfigError as exc:
        raise RefusedStack(stack, [str(i) for i in exc.issues]) from None
    except PlanError as exc:
        raise RefusedStack(stack, [str(exc)]) from None
    topo = topology_from_resources(plan.resources, project=plan.config.project, root=root)
    problems = [
        f"topic {t!r} has no subscription: its messages would be lost"
        for t in dangling_topics(topo)
    ]
    problems += _preflight(plan)
    if problems:
        raise RefusedStack(stack, problems)
    return plan


def planned_topology(plan: Any, *, root: Path) -> Topology:
    """What an evaluated ``plan`` runs locally (services' code from ``root``), with the
    declared alerts that have a local equivalent; its URLs still the cloud's."""
    topo = topology_from_resources(plan.resources, project=plan.config.project, root=root)
    return replace(topo, alerts=watches(plan.config))


def _preflight(plan: Any) -> list[str]:
    """Error-level findings of the preflight rules (``policy/rules/``), the image check
    included (``scripts.plan.preflight_findings``)."""
    from scripts.plan import preflight_findings

    return [str(f) for f in preflight_findings(plan.resources) if f.blocks]


def stack_project(stack: str, *, root: Path, config: Mapping[str, Any] | None) -> str:
    """The stack's ``gcp:project`` from ``config`` or its stack file, without evaluating it;
    :data:`FALLBACK_PROJECT` when it names none or cannot be read."""
    raw = config
    if raw is None:
        from infra.config import ConfigError
        from scripts.plan import load_stack_file

        try:
            raw = load_stack_file(stack, root=root)
        except ConfigError:
            raw = {}
    return str(raw.get("gcp:project") or FALLBACK_PROJECT)
