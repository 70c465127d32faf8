"""The resource graph the rules read: one record shape for both adapters.

The offline plan (mock engine, ``scripts/plan/``) and the policy pack (a real
``pulumi preview --policy-pack policy``, ``policy/__main__.py``) both turn what they see into
:class:`Resource` records, and the rules in :mod:`policy.rules` only ever read these.

Normalisation, the same in both adapters:

* ``inputs`` / ``outputs`` keep the provider schema's **camelCase** property names
  (``ackDeadlineSeconds``, ``pushConfig.oidcToken.serviceAccountEmail``): that is how the
  engine hands them to mocks and to analyzers alike, so neither adapter renames anything.
* integral floats become ints (the wire format has only doubles);
* secret values become the string :data:`SECRET`; values the engine does not know yet
  (new or changed resources in a real preview) become :data:`UNKNOWN`.
* ``dependencies`` are URNs (explicit ``depends_on`` plus the resources whose outputs the
  inputs use); ``parent`` is a URN or ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "Resource",
    "Graph",
    "UNKNOWN",
    "SECRET",
    "normalise",
    "thaw",
    "get",
    "is_unknown",
    "T",
]

SECRET = "[secret]"


class _Unknown:
    """A value the engine does not know yet (a real preview of a new or changed resource)."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"

    def __str__(self) -> str:
        return "<unknown>"

    def __bool__(self) -> bool:
        return False


UNKNOWN: Any = _Unknown()

# Pulumi's wire markers: the secret signature, and the unknown value of each type.
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_SIG_KEY = "4dabf18193072939515e22adb298388d"
UNKNOWN_MARKERS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # bool
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
        "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
        "e48ece36-62e2-4504-bad9-02848725956a",  # archive
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
    }
)


class T:
    """Type tokens the rules read."""

    CLOUD_RUN = "gcp:cloudrunv2/service:Service"
    RUN_INVOKER_MEMBER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
    RUN_IAM_BINDING = "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding"
    RUN_IAM_POLICY = "gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy"
    TOPIC = "gcp:pubsub/topic:Topic"
    SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
    TOPIC_IAM_MEMBER = "gcp:pubsub/topicIAMMember:TopicIAMMember"
    SUBSCRIPTION_IAM_MEMBER = "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember"
    SERVICE_ACCOUNT = "gcp:serviceaccount/account:Account"
    SERVICE_ACCOUNT_IAM_MEMBER = "gcp:serviceaccount/iAMMember:IAMMember"
    SECRET = "gcp:secretmanager/secret:Secret"
    SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
    SECRET_IAM_MEMBER = "gcp:secretmanager/secretIamMember:SecretIamMember"
    SCHEDULER_JOB = "gcp:cloudscheduler/job:Job"
    PROJECT_IAM_MEMBER = "gcp:projects/iAMMember:IAMMember"
    PROJECT_IAM_BINDING = "gcp:projects/iAMBinding:IAMBinding"
    PROJECT_SERVICE = "gcp:projects/service:Service"
    FIRESTORE_DATABASE = "gcp:firestore/database:Database"
    FIRESTORE_INDEX = "gcp:firestore/index:Index"
    REPOSITORY = "gcp:artifactregistry/repository:Repository"
    REPOSITORY_IAM_MEMBER = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
    IMAGE = "docker-build:index:Image"
    ALERT_POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
    NOTIFICATION_CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
    LOG_METRIC = "gcp:logging/metric:Metric"
    DASHBOARD = "gcp:monitoring/dashboard:Dashboard"


def normalise(value: Any) -> Any:
    """A property value in the records' normal form (see the module docstring)."""
    if isinstance(value, Mapping):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return SECRET
        return MappingProxyType({str(k): normalise(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(normalise(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is UNKNOWN or (isinstance(value, str) and value in UNKNOWN_MARKERS):
        return UNKNOWN
    if type(value).__name__ == "Unknown":  # pulumi.output.Unknown / pulumi_policy unknowns
        return UNKNOWN
    return value


def thaw(value: Any) -> Any:
    """A value in normal form back as plain dicts and lists (to edit a copy, or for JSON)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def get(obj: Any, path: str, default: Any = None) -> Any:
    """``get(inputs, "pushConfig.oidcToken.serviceAccountEmail")``; ``containers[0].image``.

    Returns :data:`UNKNOWN` if an unknown value is met on the way, ``default`` if a key is
    missing.
    """
    current = obj
    for part in path.replace("]", "").replace("[", ".").split("."):
        if current is UNKNOWN:
            return UNKNOWN
        if isinstance(current, Mapping):
            if part not in current:
                return default
            current = current[part]
        elif isinstance(current, tuple | list) and part.isdigit():
            index = int(part)
            if index >= len(current):
                return default
            current = current[index]
        else:
            return default
    return current


@dataclass(frozen=True)
class Resource:
    """One registered resource, as the engine saw it."""

    type: str
    name: str
    urn: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    parent: str | None = None
    dependencies: tuple[str, ...] = ()
    custom: bool = True
    ignore_changes: tuple[str, ...] = ()  # the resource option, as registered

    def get(self, path: str, default: Any = None) -> Any:
        """An input by path; falls back to the output of that name when no input was set."""
        value = get(self.inputs, path, None)
        if value is None:
            value = get(self.outputs, path, default)
        return value

    def out(self, path: str, default: Any = None) -> Any:
        """An output by path (provider-computed, e.g. ``uri``, ``email``); UNKNOWN if unknown."""
        value = get(self.outputs, path, None)
        if value is None:
            value = get(self.inputs, path, default)
        return value

    def describe(self) -> str:
        return f"{self.type.rsplit(':', 1)[-1]} '{self.name}'"

    @classmethod
    def make(
        cls,
        type: str,  # noqa: A002 - the engine's word
        name: str,
        urn: str,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        parent: str | None = None,
        dependencies: Iterable[str] = (),
        custom: bool = True,
        ignore_changes: Iterable[str] = (),
    ) -> Resource:
        """A record with values normalised (what both adapters call)."""
        return cls(
            type=type,
            name=name,
            urn=urn,
            inputs=normalise(dict(inputs or {})),
            outputs=normalise(dict(outputs or {})),
            parent=parent or None,
            dependencies=tuple(dict.fromkeys(d for d in dependencies if d)),
            custom=custom,
            ignore_changes=tuple(ignore_changes),
        )


class Graph:
    """Lookups over a list of resources: by URN, by type, by dependency, by parent."""

    def __init__(self, resources: Iterable[Resource]):
        self.resources = list(resources)
        self.by_urn = {r.urn: r for r in self.resources}
        self._by_type: dict[str, list[Resource]] = {}
        for r in self.resources:
            self._by_type.setdefault(r.type, []).append(r)

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources)

    def of_type(self, *types: str) -> list[Resource]:
        return [r for t in types for r in self._by_type.get(t, [])]

    def deps(self, resource: Resource, *types: str) -> list[Resource]:
        """The resources ``resource`` depends on (directly), optionally only of ``types``."""
        found = [self.by_urn[u] for u in resource.dependencies if u in self.by_urn]
        return [r for r in found if not types or r.type in types]

    def dependents(self, resource: Resource, *types: str) -> list[Resource]:
        """The resources that depend on ``resource`` (directly), optionally of ``types``."""
        pool = self.of_type(*types) if types else self.resources
        return [r for r in pool if resource.urn in r.dependencies]

    def children(self, resource: Resource) -> list[Resource]:
        return [r for r in self.resources if r.parent == resource.urn]

    def component_of(self, resource: Resource) -> Resource | None:
        """The nearest non-custom ancestor (the component a resource belongs to)."""
        parent = self.by_urn.get(resource.parent or "")
        while parent is not None and parent.custom:
            parent = self.by_urn.get(parent.parent or "")
        return parent
