"""Resource options shared by the components."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

__all__ = ["child_options"]


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
