"""What makes a function a rule, and running them.

A rule is a plain function over the graph, registered by :func:`rule` with its stable id: its
policy name is the function's name in kebab-case, its title (the README's rule table, the
policy pack's description) is its docstring's first paragraph. :data:`RULES` stays in id
order whichever theme module registers first.
"""

from __future__ import annotations

import bisect
import inspect
from collections.abc import Callable, Iterable

from policy.findings import Facts, Finding, Rule, RuleResult, Severity
from policy.graph import Graph, Resource

__all__ = ["RULES", "rule", "run_rules", "rule_results", "has_errors"]

RULES: list[Rule] = []


def rule(
    id: str,  # noqa: A002 - the rule's id
    severity: Severity = Severity.ERROR,
    *,
    facts: bool = False,
) -> Callable[[Callable[..., Iterable[Finding]]], Callable]:
    """Register the decorated check as rule ``id`` (``facts=True``: it reads :class:`Facts`
    too). ValueError if the id is taken or the check has no docstring (its title)."""

    def register(fn: Callable[..., Iterable[Finding]]) -> Callable:
        doc = inspect.getdoc(fn)
        if not doc:
            raise ValueError(f"rule {id} ({fn.__name__}) has no docstring: its title")
        if any(r.id == id for r in RULES):
            raise ValueError(f"rule id {id} registered twice ({fn.__name__})")
        title = " ".join(doc.split("\n\n", 1)[0].split())
        name = fn.__name__.replace("_", "-")
        new = Rule(id, name, severity, title, fn, uses_facts=facts)
        bisect.insort(RULES, new, key=lambda r: r.id)
        return fn

    return register


def _graph(resources: Iterable[Resource]) -> Graph:
    return resources if isinstance(resources, Graph) else Graph(resources)


def run_rules(
    resources: Iterable[Resource],
    rules: Iterable[Rule] | None = None,
    *,
    facts: Facts | None = None,
) -> list[Finding]:
    """Every finding of ``rules`` (all by default) over the resources.

    ``facts``: what the operator layer found out beyond the graph (the image check's results);
    without them, the checks that need them are reported unverifiable, never passed.
    """
    graph = _graph(resources)
    return [f for r in (RULES if rules is None else rules) for f in r.run(graph, facts)]


def rule_results(
    resources: Iterable[Resource],
    rules: Iterable[Rule] | None = None,
    *,
    facts: Facts | None = None,
) -> list[RuleResult]:
    """One :class:`RuleResult` per rule, in rule order (see :func:`run_rules`)."""
    graph = _graph(resources)
    return [RuleResult(r, tuple(r.run(graph, facts))) for r in (RULES if rules is None else rules)]


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.blocks for f in findings)
