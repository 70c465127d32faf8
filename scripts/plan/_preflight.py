"""The preflight of a plan: the policy rules, with the facts only the operator layer can find
out (the offline image check of every image the plan builds) handed in.

``platform plan``, the local platform and the deploy pipeline all run this; the policy pack
runs the same rules without the facts (see :mod:`policy.rules`).
"""

from __future__ import annotations

from collections.abc import Iterable

from policy.findings import Facts, Finding, Rule, RuleResult
from policy.graph import Graph, Resource
from policy.images import image_builds
from policy.rules import rule_results
from scripts.imagecheck import check_builds

__all__ = ["plan_facts", "preflight", "preflight_findings"]


def plan_facts(resources: Iterable[Resource]) -> Facts:
    """The image check of each image the resources build (cached by the image's tag)."""
    return Facts(image_checks=check_builds(image_builds(resources)))


def preflight(
    resources: Iterable[Resource], rules: Iterable[Rule] | None = None
) -> list[RuleResult]:
    """Every rule's result over the resources, the image check included."""
    graph = resources if isinstance(resources, Graph) else Graph(resources)
    return rule_results(graph, rules, facts=plan_facts(graph))


def preflight_findings(
    resources: Iterable[Resource], rules: Iterable[Rule] | None = None
) -> list[Finding]:
    """The findings of :func:`preflight`, flat (``f.blocks``: the ones that fail a plan)."""
    return [f for result in preflight(resources, rules) for f in result.findings]
