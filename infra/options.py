"""Resource options and helpers shared by the components (and the bootstrap program)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

__all__ = ["child_options", "after", "enable_apis", "moved_from", "FORMER_PLATFORM"]

#: The root-level component that declared the APIs, the repository and the database before
#: issue 15 split it (type, name): their children alias it (``child_options(formerly_under=)``).
FORMER_PLATFORM = ("platform:index:Platform", "platform")


def child_options(
    parent: pulumi.Resource,
    opts: pulumi.ResourceOptions | None,
    depends_on: Sequence[pulumi.Resource] = (),
    *,
    formerly_under: tuple[str, str] | None = None,
) -> pulumi.ResourceOptions:
    """``parent=`` plus the component's own ``depends_on`` (the required APIs) and ``depends_on``.

    A component's ``depends_on`` does not reach its children: without this, a fresh project's
    first `pulumi up` would create a topic before the Pub/Sub API is enabled. The component's
    ``depends_on`` may be one resource, a list, or an Output of either (as Pulumi allows):
    ``ResourceOptions.merge`` normalises them, so nothing here unpacks it by hand.

    ``formerly_under``: the (type, name) of the root-level component the children were declared
    under before they moved into ``parent``; aliased, so existing stacks keep them.
    """
    inherited = pulumi.ResourceOptions(depends_on=opts.depends_on if opts else None)
    own = pulumi.ResourceOptions(
        parent=parent,
        depends_on=list(depends_on) or None,
        aliases=moved_from(*formerly_under) if formerly_under else None,
    )
    return pulumi.ResourceOptions.merge(inherited, own)


def after(value: pulumi.Input[str], *resources: pulumi.Resource) -> pulumi.Output[str]:
    """``value``, resolving only once ``resources`` exist: an output others consume waits for
    the IAM that makes it usable (a topic name for its publishers' grants, a repository URL
    for the deployer's write grant)."""
    return pulumi.Output.all(value, *(r.urn for r in resources)).apply(lambda v: v[0])


def moved_from(parent_type: str, parent_name: str) -> list[pulumi.Alias]:
    """Aliases for a resource that moved into a new component from ``parent_type``/``name``
    (a root-level component), so existing stacks keep it instead of replacing it."""
    return [
        pulumi.Alias(
            parent=pulumi.create_urn(parent_name, parent_type, parent=pulumi.ROOT_STACK_RESOURCE)
        )
    ]


def enable_apis(
    project: str, apis: Sequence[str], opts: pulumi.ResourceOptions
) -> list[gcp.projects.Service]:
    """One ``projects.Service`` per API (named ``api-<first label>``), enabled so a fresh
    project deploys in one `pulumi up`; never disabled on destroy, since other workloads in
    the project may use them."""
    return [
        gcp.projects.Service(
            f"api-{api.split('.')[0]}",
            project=project,
            service=api,
            disable_on_destroy=False,
            opts=opts,
        )
        for api in apis
    ]
