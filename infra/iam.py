"""Grants on one resource: the one way the components and the bootstrap grant IAM roles.

IAM is additive here: each grant is its own member resource (``gcp.<product>.<X>IamMember``)
on exactly the resource it concerns, never a whole policy replaced and never project-wide
unless the role only exists there. https://cloud.google.com/iam/docs/granting-changing-revoking-access
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig

__all__ = ["Grants", "on_account"]

M = TypeVar("M", bound=pulumi.CustomResource)


class Grants(Generic[M]):
    """Grants on the one resource ``resource`` names (the keys ``member_type`` takes: project,
    location, ``topic=``, ``secret_id=``...), each created with ``opts``, the component's
    child options (``parent=`` and its ``depends_on``)."""

    def __init__(
        self, member_type: Callable[..., M], opts: pulumi.ResourceOptions, **resource: Any
    ) -> None:
        self._member_type = member_type
        self._opts = opts
        self._resource = resource

    @classmethod
    def in_region(
        cls,
        member_type: Callable[..., M],
        cfg: StackConfig,
        opts: pulumi.ResourceOptions,
        **resource: Any,
    ) -> Grants[M]:
        """Grants on a regional resource of the stack: in its project and region."""
        return cls(member_type, opts, project=cfg.project, location=cfg.region, **resource)

    def grant(self, resource_name: str, role: str, member: pulumi.Input[str], **extra: Any) -> M:
        """``role`` for ``member`` on the resource (``extra``: e.g. an IAM ``condition``)."""
        return self._member_type(
            resource_name, **self._resource, role=role, member=member, opts=self._opts, **extra
        )


def on_account(
    account: gcp.serviceaccount.Account, opts: pulumi.ResourceOptions
) -> Grants[gcp.serviceaccount.IAMMember]:
    """Grants on exactly one service account (actAs, token creation, federation)."""
    return Grants(gcp.serviceaccount.IAMMember, opts, service_account_id=account.name)
