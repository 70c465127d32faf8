"""What adopt decides per resource, and Pulumi's bulk import file from it.

:func:`plan_adoption` walks every custom resource of the offline plan, asks the lookup for
its type whether it exists (by its physical name), and sorts it into one of three lists:
import (exists: ``pulumi import`` takes it over), create (absent, or nothing to adopt) and
unchecked (the reason: no credentials, API disabled, permission denied, type not supported).
:func:`import_file` writes the JSON ``pulumi import --file`` reads
(https://www.pulumi.com/docs/iac/cli/commands/pulumi_import/): ``nameTable`` maps a name to a
parent's URN, each resource names its ``type``, the program's logical ``name``, the import
``id`` and its ``parent`` (a nameTable key) when the program gives it a component parent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from policy.graph import Resource

from ._ids import IMPORT_IDS, UNSUPPORTED, import_id

__all__ = [
    "AdoptionReport",
    "Check",
    "Decision",
    "Lookup",
    "NOT_IMPORTABLE",
    "Status",
    "absent",
    "existing_among",
    "exists",
    "import_file",
    "plan_adoption",
    "unchecked",
]


class Status(StrEnum):
    IMPORT = "import"
    CREATE = "create"
    UNCHECKED = "unchecked"


@dataclass(frozen=True)
class Check:
    """One lookup's answer: ``found`` True/False, or None with ``reason`` (could not check)."""

    found: bool | None
    reason: str = ""


def exists(detail: str = "") -> Check:
    return Check(True, detail)


def absent(detail: str = "") -> Check:
    return Check(False, detail)


def unchecked(reason: str) -> Check:
    return Check(None, reason)


#: A lookup: the plan's record and its import id -> whether it exists.
Lookup = Callable[[Resource, str], Check]

#: Types that are declared but never imported, with the reason (listed as "create").
NOT_IMPORTABLE: Mapping[str, str] = {
    "docker-build:index:Image": "built and pushed by every deploy (not a cloud resource)",
    # Enabling an API that is already enabled succeeds: `up` adopts it without a conflict.
    "gcp:projects/service:Service": "enabling an enabled API is a no-op (no conflict)",
}


@dataclass(frozen=True)
class Decision:
    status: Status
    resource: Resource
    import_id: str | None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "type": self.resource.type,
            "name": self.resource.name,
            "urn": self.resource.urn,
            "parent": self.resource.parent,
            "id": self.import_id,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AdoptionReport:
    stack: str
    decisions: list[Decision] = field(default_factory=list)
    #: URN -> (type, name) of every component (non-custom) resource: the possible parents.
    components: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def of(self, status: Status) -> list[Decision]:
        return [d for d in self.decisions if d.status is status]

    @property
    def to_import(self) -> list[Decision]:
        return self.of(Status.IMPORT)

    @property
    def to_create(self) -> list[Decision]:
        return self.of(Status.CREATE)

    @property
    def unchecked(self) -> list[Decision]:
        return self.of(Status.UNCHECKED)

    def counts(self) -> dict[str, int]:
        return {s.value: len(self.of(s)) for s in Status}

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "counts": self.counts(),
            "resources": [d.as_dict() for d in self.decisions],
        }


def _decide(r: Resource, lookups: Mapping[str, Lookup]) -> Decision:
    if r.type in NOT_IMPORTABLE:
        return Decision(Status.CREATE, r, None, NOT_IMPORTABLE[r.type])
    if r.type in UNSUPPORTED:
        return Decision(Status.UNCHECKED, r, None, f"type not supported: {UNSUPPORTED[r.type]}")
    if r.type not in IMPORT_IDS:
        return Decision(Status.UNCHECKED, r, None, "type not supported: no import id format")
    try:
        rid = import_id(r)
    except KeyError as exc:
        return Decision(Status.UNCHECKED, r, None, str(exc.args[0]))
    lookup = lookups.get(r.type)
    if lookup is None:
        return Decision(
            Status.UNCHECKED,
            r,
            rid,
            "type not supported: no lookup for it (no official client here)",
        )
    try:
        check = lookup(r, rid)
    except Exception as exc:  # noqa: BLE001 - one lookup's bug never hides the others
        check = unchecked(f"lookup failed: {type(exc).__name__}: {exc}")
    if check.found is True:
        return Decision(Status.IMPORT, r, rid, check.reason)
    if check.found is False:
        return Decision(Status.CREATE, r, rid, check.reason or "not found")
    return Decision(Status.UNCHECKED, r, rid, check.reason)


def plan_adoption(
    resources: Iterable[Resource], lookups: Mapping[str, Lookup], *, stack: str = ""
) -> AdoptionReport:
    """Decide import / create / unchecked for every custom resource in ``resources`` (a
    :class:`scripts.plan.Plan`'s), with ``lookups`` (type token -> :data:`Lookup`); a type
    without a lookup is "unchecked". Never raises for one resource's failure."""
    resources = list(resources)
    components = {
        r.urn: (r.type, r.name)
        for r in resources
        if not r.custom and r.type != "pulumi:pulumi:Stack"
    }
    decisions = [_decide(r, lookups) for r in resources if r.custom]
    return AdoptionReport(stack=stack, decisions=decisions, components=components)


def _parent_key(urn: str, components: Mapping[str, tuple[str, str]]) -> str:
    type_, name = components[urn]
    return f"{type_.rsplit(':', 1)[-1]}:{name}"  # "Service:prediction-worker" (names repeat)


def import_file(report: AdoptionReport) -> dict[str, Any]:
    """The bulk import file for the resources to import, sorted by type and name.

    Sorted, not in the plan's order: the mock monitor receives registrations from several
    threads, so that order can differ between two builds of the same plan, and the file must
    be the same on every run (an operator diffs it and reviews it before ``pulumi import``).

    A parent that is a component of the program goes in ``nameTable`` (key: component type
    and name, since an image and a service component share a name) with its URN; a resource
    whose parent is the stack itself has no ``parent``. The components must exist in the
    stack before ``pulumi import`` runs (docs/runbooks.md, "Adopting the hand-deployed
    production")."""
    name_table: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    for d in sorted(report.to_import, key=lambda d: (d.resource.type, d.resource.name)):
        entry: dict[str, Any] = {"type": d.resource.type, "name": d.resource.name}
        entry["id"] = d.import_id
        parent = d.resource.parent
        if parent and parent in report.components:
            key = _parent_key(parent, report.components)
            name_table[key] = parent
            entry["parent"] = key
        entries.append(entry)
    return {"nameTable": dict(sorted(name_table.items())), "resources": entries}


def existing_among(
    changes: Iterable[Any], resources: Iterable[Resource], lookups: Mapping[str, Lookup]
) -> list[Decision]:
    """The preview's creates (``changes``: objects with ``urn`` and ``op``, as the deploy
    pipeline's ``ResourceChange``) that exist already: each a create that would fail with
    "already exists". Only the plan's resources at those URNs are looked up."""
    by_urn = {r.urn: r for r in resources if r.custom}
    creates = [by_urn[c.urn] for c in changes if c.op == "create" and c.urn in by_urn]
    return [d for d in (_decide(r, lookups) for r in creates) if d.status is Status.IMPORT]
