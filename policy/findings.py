"""What a preflight rule is and what it reports: rules, findings, results, and the facts
the operator layer hands in.

The rules themselves are in :mod:`policy.rules`; this module holds only their shapes, so the
policy pack, ``platform plan`` and the deploy pipeline read one definition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from policy.graph import Graph, Resource

__all__ = ["Facts", "Finding", "Rule", "RuleResult", "Severity"]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Facts:
    """What the operator layer found out that the resource graph cannot show.

    ``image_checks``: the offline image check's errors per Image resource URN (``()`` when
    the image passed), as ``scripts.imagecheck.check_builds`` returns them for
    :func:`policy.images.image_builds`. ``None``: the check did not run (the policy pack in a
    real preview), and rule PF10 says so as unverifiable instead of passing it.
    """

    image_checks: Mapping[str, Sequence[str]] | None = None


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    urn: str
    resource: str  # "Subscription 'prediction-request-worker'"
    message: str  # what is wrong and the fix
    unverifiable: bool = False

    def __str__(self) -> str:
        tag = "unverifiable" if self.unverifiable else self.severity.value
        return f"{self.rule} [{tag}] {self.resource}: {self.message}"

    @property
    def blocks(self) -> bool:
        """Error-level and decided: this finding fails the plan."""
        return self.severity is Severity.ERROR and not self.unverifiable


#: A rule's check: the graph and the rule (to make findings), plus the facts when it reads
#: them (``Rule.uses_facts``).
Check = Callable[..., Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    name: str  # kebab-case, the policy pack's policy name is "<id>-<name>"
    severity: Severity
    title: str  # one line, the README's rule table
    check: Check
    uses_facts: bool = False  # check(graph, rule, facts) instead of check(graph, rule)

    @property
    def policy_name(self) -> str:
        return f"{self.id}-{self.name}"

    def run(self, graph: Graph, facts: Facts | None = None) -> list[Finding]:
        """This rule's findings over ``graph``."""
        if self.uses_facts:
            return list(self.check(graph, self, facts or Facts()))
        return list(self.check(graph, self))

    def finding(self, r: Resource, message: str, *, unverifiable: bool = False) -> Finding:
        return Finding(self.id, self.severity, r.urn, r.describe(), message, unverifiable)

    def unknown(self, r: Resource, message: str) -> Finding:
        return self.finding(r, message, unverifiable=True)


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    findings: tuple[Finding, ...]

    @property
    def status(self) -> str:
        if any(f.blocks for f in self.findings):
            return "fail"
        if any(f.severity is Severity.WARNING and not f.unverifiable for f in self.findings):
            return "warn"
        if any(f.unverifiable for f in self.findings):
            return "unverifiable"
        return "pass"
