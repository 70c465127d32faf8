"""Resource options and helpers shared by the components (and the bootstrap program)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

__all__ = ["child_options", "enable_apis"]


def child_options(
    parent: pulumi.Resource,
    opts: pulumi.ResourceOptions | None,
    depends_on: Sequence[pulumi.Resource] = (),
) -> pulumi.ResourceOptions:
    """``parent=`` plus the component's own ``depends_on`` (the required APIs).

    A component's ``depends_on`` does not reach its children: without this, a fresh project's
    first `pulumi up` would create a topic before the Pub/Sub API is enabled.
    """
    inherited = list((opts.depends_on if opts else None) or [])
    if not isinstance(inherited, list):
        inherited = [inherited]
    return pulumi.ResourceOptions(parent=parent, depends_on=[*inherited, *depends_on] or None)


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
