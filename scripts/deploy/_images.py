"""The images a deploy runs: built by Cloud Build (missing tags only), redeployed from a
recorded deployment's digests, or left to the Pulumi program's own build; then the digest each
service must serve after the apply, and the images the deployment records."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._cloudbuild import ensure_images
from ._errors import DeployError
from ._pulumi import EngineResult
from ._steps import DeployRequest

__all__ = [
    "build_images",
    "build_detail",
    "expected_digests",
    "served_images",
    "default_image_tags",
]


def build_images(request, info, builder, image_tags, reporter):
    if request.rollback_to is not None:
        return dict(request.rollback_to.images), dict(request.rollback_to.image_tags)
    tags = {name: image_tags(name) for name in info.services} if image_tags else {}
    if request.builder == "local":
        return {}, tags
    if builder is None:
        raise DeployError("--builder cloudbuild needs the Cloud Build adapter (none configured)")
    targets = info.image_targets()
    missing = sorted(set(info.services) - set(targets))
    if missing:
        raise DeployError(f"the plan builds no image for: {', '.join(missing)}")
    outcomes = ensure_images(builder, targets, on_output=reporter.output)
    tags = {name: t.tag for name, t in targets.items()}
    return {name: o.ref for name, o in outcomes.items()}, tags


def build_detail(request: DeployRequest, overrides: Mapping[str, str]) -> str:
    if request.rollback_to is not None:
        return f"redeploying the digests of {request.rollback_to.id}"
    if request.builder == "local":
        return "the program builds the images (pulumi-docker-build)"
    return f"{len(overrides)} image(s) by digest"


def expected_digests(
    overrides: Mapping[str, str], result: EngineResult, services: Mapping[str, Any]
) -> dict[str, str | None]:
    """service -> digest it must serve: the override's, else the program's output, else any."""
    from_outputs = result.outputs.get("image_refs") or result.outputs.get("images") or {}
    expected: dict[str, str | None] = {}
    for name in services:
        ref = overrides.get(name) or (
            from_outputs.get(name) if isinstance(from_outputs, dict) else None
        )
        expected[name] = ref.rpartition("@")[2] if isinstance(ref, str) and "@" in ref else None
    return expected


def served_images(overrides, checks, info) -> dict[str, str]:
    images = dict(overrides)
    for c in checks:
        svc = info.services.get(c.service)
        if c.service not in images and c.digest and svc is not None and svc.image is not None:
            images[c.service] = f"{svc.image.repository}@{c.digest}"
    return images


def default_image_tags(root: Path) -> Callable[[str], str]:
    """service -> its image tag from the build context's content hash (``infra.build_context``)."""
    from infra.build_context import image_tag

    return lambda service: image_tag(service, root)
