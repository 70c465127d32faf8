"""The preflight rules as a Pulumi policy pack: ``pulumi preview --policy-pack policy``.

One ``StackValidationPolicy`` per rule of :mod:`policy.rules`, the same functions
``platform plan`` runs; :mod:`policy.adapter` turns the analyzer's resources into the same
records the offline plan builds. Error-level rules are mandatory, warnings advisory. A check a
rule cannot decide in a preview (values of new resources are unknown) is never passed
silently: the advisory policy ``preflight-unverifiable`` reports it, with the rule's id.
Advisory, because a correct program's first preview has such values (a scheduler job's URL
before its service exists) and must not be blocked; ``make plan`` and the deploy pipeline
decide every rule offline, where all values are known. The offline image check is not run in
the pack (it is operator tooling, ``scripts.imagecheck``, above the rules): PF10 reports it
unverifiable here; ``make plan`` and the deploy preflight run it and fail on its errors.

Constructing the ``PolicyPack`` starts the analyzer's gRPC server and prints its port on the
first line of stdout (how the Pulumi CLI, and ``tests/policy/test_pack.py``, talk to it).
"""

import sys
from pathlib import Path

# Run as `python policy/__main__.py` (by the CLI or a test): the rules import `policy.*`,
# `infra.*` facts and `shared.*` from the repository root, so it is computed here, before any
# of them can be imported (infra/paths.py is the root's home for everything else).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy.adapter import to_records  # noqa: E402
from policy.graph import Graph  # noqa: E402
from policy.rules import RULES, Rule, Severity  # noqa: E402

PACK_NAME = "prediction-platform-preflight"


UNVERIFIABLE_POLICY = "preflight-unverifiable"


def _validator(rule: Rule):
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        graph = Graph(to_records(args.resources))
        for finding in rule.run(graph):
            if not finding.unverifiable:
                report_violation(f"{finding.resource}: {finding.message}", finding.urn)

    return validate


def _unverifiable(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    graph = Graph(to_records(args.resources))
    for rule in RULES:
        for finding in rule.run(graph):
            if finding.unverifiable:
                report_violation(
                    f"{rule.id} unverifiable: {finding.resource}: {finding.message}", finding.urn
                )


def policies() -> list[StackValidationPolicy]:
    return [
        StackValidationPolicy(
            name=rule.policy_name,
            description=f"{rule.id}: {rule.title}",
            enforcement_level=(
                EnforcementLevel.MANDATORY
                if rule.severity is Severity.ERROR
                else EnforcementLevel.ADVISORY
            ),
            validate=_validator(rule),
        )
        for rule in RULES
    ] + [
        StackValidationPolicy(
            name=UNVERIFIABLE_POLICY,
            description="Checks a preflight rule cannot decide in this preview (values of new "
            "resources are unknown); `make plan` decides them offline",
            enforcement_level=EnforcementLevel.ADVISORY,
            validate=_unverifiable,
        )
    ]


if __name__ == "__main__":
    PolicyPack(name=PACK_NAME, policies=policies(), enforcement_level=EnforcementLevel.MANDATORY)
