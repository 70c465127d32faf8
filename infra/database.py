"""The Firestore database that holds batch state, with the composite indexes its queries need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig
from infra.options import FORMER_PLATFORM, child_options

__all__ = ["Database", "DatabaseArgs", "firestore_database", "firestore_index_specs"]


def firestore_database(
    resource_name: str,
    project: str,
    name: str,
    location: str,
    *,
    protected: bool,
    opts: pulumi.ResourceOptions,
) -> gcp.firestore.Database:
    """A native-mode Firestore database. ``protected``: the API refuses to delete it (not
    just Pulumi) and a `pulumi destroy` abandons it instead.
    https://cloud.google.com/firestore/docs/manage-databases#delete_protection
    """
    return gcp.firestore.Database(
        resource_name,
        project=project,
        name=name,
        location_id=location,
        type="FIRESTORE_NATIVE",
        delete_protection_state=(
            "DELETE_PROTECTION_ENABLED" if protected else "DELETE_PROTECTION_DISABLED"
        ),
        deletion_policy="ABANDON" if protected else "DELETE",
        opts=opts,
    )


@dataclass(frozen=True)
class DatabaseArgs:
    stack: StackConfig
    # Composite indexes the services' queries need (shared/indexes.py REQUIRED_INDEXES).
    indexes: Sequence[Any] = ()


def _get(spec: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(spec, dict) and name in spec:
            return spec[name]
        if hasattr(spec, name):
            return getattr(spec, name)
    return default


def firestore_index_specs(specs: Sequence[Any]) -> list[dict[str, Any]]:
    """Normalise index specs (objects or mappings) to collection + [(field, order)]."""
    out = []
    for spec in specs:
        fields = []
        for f in _get(spec, "fields", default=()) or ():
            if isinstance(f, tuple | list):
                path, order = f[0], f[1] if len(f) > 1 else "ASCENDING"
            else:
                path = _get(f, "field_path", "path", "name", "field")
                order = _get(f, "order", "direction", default="ASCENDING")
            order = str(getattr(order, "value", order)).upper()
            order = {"ASC": "ASCENDING", "DESC": "DESCENDING"}.get(order, order)
            fields.append((str(path), order))
        scope = str(_get(spec, "query_scope", default="COLLECTION")).upper()
        collection = str(_get(spec, "collection"))
        name = _get(spec, "name") or "-".join(
            [collection, *(f"{p}-{o[:3].lower()}" for p, o in fields)]
        )
        out.append({"name": str(name), "collection": collection, "fields": fields, "scope": scope})
    return out


class Database(pulumi.ComponentResource):
    """The batch-state database (protected from deletion in prod) and its composite indexes.

    The deploy lock is not here: it cannot live in the stack it protects (see infra/bootstrap).
    """

    database_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:index:Database", name, None, opts)
        cfg = args.stack
        # Declared under the former Platform component: kept, not re-created (a replaced
        # database would be an empty one).
        child = child_options(self, opts, formerly_under=FORMER_PLATFORM)
        fs = cfg.platform.firestore
        # Batch state lives here: a `pulumi destroy` or a rename must not drop it.
        database = firestore_database(
            "firestore",
            cfg.project,
            fs.database,
            cfg.firestore_location,
            protected=fs.deletion_protection,
            opts=child,
        )
        for spec in firestore_index_specs(args.indexes):
            gcp.firestore.Index(
                f"index-{spec['name']}",
                project=cfg.project,
                database=database.name,
                collection=spec["collection"],
                query_scope=spec["scope"],
                fields=[
                    gcp.firestore.IndexFieldArgs(field_path=p, order=o) for p, o in spec["fields"]
                ],
                opts=child,
            )
        self.database_name = database.name
        self.register_outputs({"database_name": self.database_name})
