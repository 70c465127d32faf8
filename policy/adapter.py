"""The policy pack's adapter: pulumi-policy's ``PolicyResource`` -> :class:`policy.graph.Resource`.

The same records the offline plan builds from the mock engine (``scripts/plan/``):
camelCase properties as the engine sends them, unknowns as :data:`policy.graph.UNKNOWN`,
secrets as :data:`policy.graph.SECRET`, parent and dependencies as URNs. pulumi-policy wraps
properties in proxies that raise on unknown values (a rule reading one would be skipped, i.e.
counted as passed); they are unwrapped here so the rules see the unknowns and can say
"unverifiable".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policy.graph import SECRET, UNKNOWN, UNKNOWN_MARKERS, Resource

__all__ = ["to_record", "to_records", "unwrap", "UNKNOWN_MARKERS"]


def unwrap(value: Any) -> Any:
    """Plain Python values from pulumi-policy's (possibly proxied, secret-wrapped) values."""
    kind = type(value).__name__
    if kind in ("_DictSecretsProxy", "_ListSecretsProxy"):
        return SECRET
    if kind in ("_DictProxy", "_ListProxy"):
        return unwrap(value["__target"])
    if kind == "Secret" or (kind.endswith("Secret") and hasattr(value, "value")):
        return SECRET
    if isinstance(value, Mapping):
        return {str(k): unwrap(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap(v) for v in value]
    if isinstance(value, str) and value in UNKNOWN_MARKERS:
        return UNKNOWN
    return value


def to_record(resource: Any) -> Resource:
    """One ``pulumi_policy.PolicyResource`` (or anything shaped like it) as a record."""
    props = unwrap(resource.props)
    parent = getattr(resource, "parent", None)
    deps = [d.urn for d in getattr(resource, "dependencies", None) or ()]
    for prop_deps in (getattr(resource, "property_dependencies", None) or {}).values():
        deps.extend(d.urn for d in prop_deps)
    return Resource.make(
        type=resource.resource_type,
        name=resource.name,
        urn=resource.urn,
        # A preview's props are the resource's inputs merged with its known outputs: both.
        inputs=props,
        outputs=props,
        parent=parent.urn if parent is not None else None,
        dependencies=deps,
        # The analyzer only sees custom resources' state, plus components by type token.
        custom=not resource.resource_type.startswith(("platform:index:", "pulumi:pulumi:")),
    )


def to_records(resources: Iterable[Any]) -> list[Resource]:
    return [to_record(r) for r in resources]
