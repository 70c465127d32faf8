"""The stack root: ``PlatformConfig`` (the ``platform`` key) with its two small blocks
(Firestore, secrets), and ``StackConfig``, everything the program reads from a stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from infra import limits
from infra.config._deploy import DeployConfig
from infra.config._frozen import Frozen, FrozenMap
from infra.config._monitoring import MonitoringConfig
from infra.config._schedules import ScheduleConfig
from infra.config._services import ServiceConfig
from infra.config._topics import TopicConfig
from infra.naming import Kind, physical_name

__all__ = [
    "DEFAULT_REPOSITORY",
    "PLATFORM_KEY",
    "FirestoreConfig",
    "PlatformConfig",
    "SecretConfig",
    "StackConfig",
]

PLATFORM_KEY = "platform"  # the project-namespace config key holding the topology
DEFAULT_REPOSITORY = "platform-images"


class SecretConfig(Frozen):
    # The Pulumi config key holding the value (`pulumi config set --secret KEY ...`);
    # defaults to the secret's own key.
    config_key: str | None = None


class FirestoreConfig(Frozen):
    database: str = limits.FIRESTORE_DEFAULT_DATABASE
    location: str | None = None  # defaults to gcp:region
    deletion_protection: bool = True


class PlatformConfig(Frozen):
    artifact_repository: str = DEFAULT_REPOSITORY
    firestore: FirestoreConfig = Field(default_factory=FirestoreConfig)
    deploy: DeployConfig  # required: who deploys the stack is never implicit
    services: FrozenMap[str, ServiceConfig] = Field(min_length=1)
    topics: FrozenMap[str, TopicConfig] = Field(default_factory=dict)
    secrets: FrozenMap[str, SecretConfig] = Field(default_factory=dict)
    schedules: FrozenMap[str, ScheduleConfig] = Field(default_factory=dict)
    # None: nothing watches the stack (preflight rule PF13 reports every uncovered resource).
    monitoring: MonitoringConfig | None = None


@dataclass(frozen=True)
class StackConfig:
    """Everything the program reads from a stack's config, validated."""

    stack: str
    project: str
    region: str
    platform: PlatformConfig

    def name(self, kind: Kind, logical: str) -> str:
        return physical_name(kind, logical, self.stack)

    @property
    def firestore_location(self) -> str:
        return self.platform.firestore.location or self.region

    def secret_config_key(self, secret: str) -> str:
        return self.platform.secrets[secret].config_key or secret
