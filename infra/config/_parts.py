"""What the stack checks read and share: the stack's parts, each typed on its own; the
"known: ..." list their messages give; the registry of physical names that must be unique in
the project; and the check that a push or a scheduled call targets a declared service path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from infra.config._deploy import DeployConfig
from infra.config._issues import ConfigIssue
from infra.config._monitoring import MonitoringConfig
from infra.config._schedules import ScheduleConfig
from infra.config._services import ServiceConfig
from infra.config._stack import FirestoreConfig, SecretConfig
from infra.config._topics import SubscriptionConfig

__all__ = ["Names", "Parts", "known", "target_issues"]


@dataclass(frozen=True)
class Parts:
    """The stack's parts, each typed on its own (``None``: invalid, already reported)."""

    stack: str
    project: str | None
    region: str | None
    services: Mapping[str, ServiceConfig | None] = field(default_factory=dict)
    # topic key -> its subscriptions (None: the topic's subscriptions are not a list)
    topics: Mapping[str, list[SubscriptionConfig | None] | None] = field(default_factory=dict)
    secrets: Mapping[str, SecretConfig | None] = field(default_factory=dict)
    schedules: Mapping[str, ScheduleConfig | None] = field(default_factory=dict)
    firestore: FirestoreConfig | None = None
    deploy: DeployConfig | None = None
    repository: str | None = None
    monitoring: MonitoringConfig | None = None


def known(names: object) -> str:
    return ", ".join(sorted(map(str, names))) or "none declared"  # type: ignore[call-overload]


class Names:
    """Physical names per GCP namespace: the first owner of each, and a clash for the next."""

    def __init__(self) -> None:
        self.owners: dict[tuple[str, str], str] = {}

    def claim(self, namespace: str, name: str, owner: str, what: str) -> ConfigIssue | None:
        first = self.owners.setdefault((namespace, name), owner)
        if first == owner:
            return None
        return ConfigIssue(
            owner,
            f"{what} '{name}' is also the {namespace} of {first}: names must be unique in the "
            "project; rename one",
        )


def target_issues(parts: Parts, path: str, service: str, target: str) -> Iterator[ConfigIssue]:
    if service not in parts.services:
        yield ConfigIssue(
            f"{path}.service", f"unknown service '{service}' (known: {known(parts.services)})"
        )
        return
    svc = parts.services[service]
    if svc is not None and target not in svc.paths:
        yield ConfigIssue(
            f"{path}.path",
            f"'{target}' is not a path of service '{service}' "
            f"(its paths: {', '.join(svc.paths)}; add it to "
            f"platform.services.{service}.paths if the service serves it)",
        )
