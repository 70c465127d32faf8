"""A Secret Manager secret whose value is a Pulumi config secret."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig
from infra.naming import Kind
from infra.options import child_options

__all__ = ["Secret", "SecretArgs"]


@dataclass(frozen=True)
class SecretArgs:
    key: str  # the config key (logical name)
    stack: StackConfig
    # From `pulumi config set --secret KEY VALUE`; stays encrypted in state and in diffs.
    value: pulumi.Input[str]


class Secret(pulumi.ComponentResource):
    """Secret (automatic replication) and the version this program pins services to.

    Readers get ``secretAccessor`` in their own Service component, only where their config
    references this secret.
    """

    secret_id: pulumi.Output[str]
    version: pulumi.Output[str]

    def __init__(self, name: str, args: SecretArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:index:Secret", name, None, opts)
        cfg = args.stack
        child = child_options(self, opts)
        secret = gcp.secretmanager.Secret(
            name,
            project=cfg.project,
            secret_id=cfg.name(Kind.SECRET, args.key),
            replication=gcp.secretmanager.SecretReplicationArgs(
                auto=gcp.secretmanager.SecretReplicationAutoArgs()
            ),
            opts=child,
        )
        version = gcp.secretmanager.SecretVersion(
            f"{name}-version",
            secret=secret.id,
            secret_data=pulumi.Output.secret(args.value),
            opts=child,
        )
        self.secret_id = secret.secret_id
        # The version number: services reference it (never "latest") and so depend on it.
        self.version = version.version
        self.register_outputs({"secret_id": self.secret_id, "version": self.version})
