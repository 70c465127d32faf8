"""Preflight rules: every past production incident, as a check over the resource graph.

Written once, as plain functions over :class:`policy.graph.Resource` records, and run by
``platform plan`` (the offline plan's graph), by the deploy pipeline before it takes the lock,
and by the policy pack in a real ``pulumi preview --policy-pack policy`` (``policy/__main__``).

How the rules join resources (:mod:`policy.joins`): by value when values are known, else by
URN through dependencies. In a real preview, emails and URLs of new resources are unknown; a
check neither way can decide is reported **unverifiable**, never as passed.

What the graph cannot show comes in as :class:`policy.findings.Facts`, found out by the
operator layer: the offline image check's result per image (``scripts.plan.preflight`` runs
it on :func:`policy.images.image_builds` and passes it in). The rules never run it: without
those facts (the policy pack), PF10 reports the image check as unverifiable.

Each finding names the resource and the fix. Rule ids are stable (``PF01``...``PF15``) and
documented in the README's rule table. The rules, by theme:

- :mod:`~policy.rules.pubsub`: topics, subscriptions, dead letters (PF01-PF04);
- :mod:`~policy.rules.secrets`: secret versions and literal credentials (PF05, PF06);
- :mod:`~policy.rules.services`: env contract, scheduled calls and background work,
  deletion protection (PF07, PF11, PF12);
- :mod:`~policy.rules.security`: least privilege, failing closed (PF08, PF09, PF13, PF14);
- :mod:`~policy.rules.images`: images by digest from the repo root (PF10);
- :mod:`~policy.rules.monitoring`: alert coverage (PF15);
- ``_registry`` (what makes a function a rule, running them) and ``_invoker`` (an OIDC
  caller's run.invoker, for PF01 and PF11).
"""

from __future__ import annotations

from policy.findings import Facts, Finding, Rule, RuleResult, Severity

from . import images, monitoring, pubsub, secrets, security, services
from ._registry import RULES, has_errors, rule, rule_results, run_rules
from .services import PRODUCTION_STACKS

__all__ = [
    "Facts",
    "Finding",
    "Rule",
    "RuleResult",
    "Severity",
    "RULES",
    "rule",
    "PRODUCTION_STACKS",
    "run_rules",
    "rule_results",
    "has_errors",
    "images",
    "monitoring",
    "pubsub",
    "secrets",
    "security",
    "services",
]
