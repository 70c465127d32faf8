"""The offline plan: the real Pulumi programs evaluated under Pulumi's mock runtime, and the
preflight over what they register.

No Pulumi CLI, no cloud. :func:`evaluate_stack` validates ``Pulumi.<stack>.yaml`` (every
error at once, :class:`infra.config.ConfigError`) and runs ``infra/`` unchanged; the result is
a :class:`Plan` of :class:`policy.graph.Resource` records, the same records the policy pack
builds from a real preview. :func:`preflight` runs the policy rules over them with the image
check's results handed in; :func:`inventory` groups them for a reader;
:func:`evaluate_bootstrap` does the same for the one-time bootstrap program.

Used by ``platform plan``, the local platform and the deploy pipeline::

    plan = evaluate_stack("prod")
    plan.resources, plan.outputs, plan.config
    failed = [f for f in preflight_findings(plan.resources) if f.blocks]

Modules: ``_mocks`` (the recording mock runtime, any program), ``_stack`` (the platform stack:
config, environment, evaluation), ``_bootstrap``, ``_inventory``, ``_preflight``.
"""

from ._bootstrap import BootstrapPlan, bootstrap_stack_config, evaluate_bootstrap
from ._inventory import InventoryGroup, InventoryRow, inventory
from ._mocks import EVALUATION_LOCK, PlanMocks, RecordingMonitor, run_program
from ._preflight import plan_facts, preflight, preflight_findings
from ._stack import (
    Plan,
    PlanError,
    evaluate_stack,
    load_stack_file,
    parse_config,
    project_name,
)

__all__ = [
    "BootstrapPlan",
    "EVALUATION_LOCK",
    "InventoryGroup",
    "InventoryRow",
    "Plan",
    "PlanError",
    "PlanMocks",
    "RecordingMonitor",
    "bootstrap_stack_config",
    "evaluate_bootstrap",
    "evaluate_stack",
    "inventory",
    "load_stack_file",
    "parse_config",
    "plan_facts",
    "preflight",
    "preflight_findings",
    "project_name",
    "run_program",
]
