"""What each image of a plan builds, with the paths resolved as the Pulumi CLI resolves them.

The program gives an Image's build context and Dockerfile relative to ``infra/``, where the
Pulumi CLI runs it (``main: infra/``). :func:`image_builds` turns them into absolute paths, so
that the operator layer can run the offline image check on exactly what the program builds
and hand the result back to rule PF10 as :class:`policy.findings.Facts`: the rules never run
the check themselves.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from infra.paths import PROGRAM_DIR
from policy.graph import Graph, Resource, T
from policy.joins import known

__all__ = ["ImageBuild", "image_builds", "image_build"]


@dataclass(frozen=True)
class ImageBuild:
    """One Image resource's build: what the image check needs, and its cache key."""

    urn: str
    resource: str  # "Image 'prediction-worker-image'"
    service: str  # the Dockerfile's stem: "worker" for images/worker.Dockerfile
    context: str  # absolute build context
    dockerfile: str  # absolute Dockerfile
    tag: str  # the first tag: the content hash of everything the check reads ("" if none)


def image_build(image: Resource) -> ImageBuild | None:
    """The build of one Image resource; ``None`` when its context or Dockerfile is unknown."""
    context = image.get("context.location")
    dockerfile = image.get("dockerfile.location")
    if not (known(context) and known(dockerfile)):
        return None
    # os.path.join keeps an absolute path as it is (PLATFORM_REPO_ROOT elsewhere).
    root = os.path.normpath(os.path.join(PROGRAM_DIR, str(context)))
    df = os.path.normpath(os.path.join(PROGRAM_DIR, str(dockerfile)))
    tags = image.get("tags") or ()
    return ImageBuild(
        urn=image.urn,
        resource=image.describe(),
        service=posixpath.basename(str(dockerfile)).removesuffix(".Dockerfile"),
        context=root,
        dockerfile=df,
        tag=str(tags[0]) if tags and known(tags[0]) else "",
    )


def image_builds(resources: Iterable[Resource]) -> list[ImageBuild]:
    """The builds of every Image resource whose paths are known, in plan order."""
    graph = resources if isinstance(resources, Graph) else Graph(resources)
    return [b for b in map(image_build, graph.of_type(T.IMAGE)) if b is not None]
