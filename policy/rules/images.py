"""Images (PF10): deployed by digest, built from the repository root with
``images/<service>.Dockerfile``, and passing the offline image check.

The image check itself is operator tooling (``scripts.imagecheck``): its verdict per image
comes in as :class:`policy.findings.Facts`; without it, PF10 reports the check unverifiable."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from policy.findings import Facts, Finding, Rule
from policy.graph import Graph, Resource, T
from policy.images import image_build
from policy.joins import containers, known

from ._registry import rule


@rule("PF10", facts=True)
def image_by_digest_from_repo_root(graph: Graph, rule: Rule, facts: Facts) -> Iterator[Finding]:
    """A Cloud Run image by tag not digest, built with a context other than the repo root, or
    failing the image check"""
    images = graph.of_type(T.IMAGE)
    for svc in graph.of_type(T.CLOUD_RUN):
        for c in containers(svc):
            image = c.get("image")
            if known(image):
                if "@sha256:" not in str(image):
                    yield rule.finding(
                        svc,
                        f"image {image} is a tag: a tag can move under a running revision; "
                        "deploy by digest (the docker-build Image's ref, or an override "
                        "REGISTRY/PATH@sha256:...)",
                    )
            elif not graph.deps(svc, T.IMAGE):
                yield rule.unknown(svc, "image unknown and not from a docker-build Image")
    for image in images:
        build = image_build(image)
        if build is None:
            yield rule.unknown(image, "build context or Dockerfile location unknown")
            continue
        context, dockerfile = image.get("context.location"), image.get("dockerfile.location")
        expected = posixpath.normpath(posixpath.dirname(posixpath.dirname(str(dockerfile))))
        if (
            posixpath.normpath(str(context)) != expected
            or posixpath.basename(posixpath.dirname(str(dockerfile))) != "images"
        ):
            yield rule.finding(
                image,
                f"built with context {context} and Dockerfile {dockerfile}: build from the "
                "repo root with images/<service>.Dockerfile (the image needs shared/)",
            )
        yield from _image_check(image, rule, facts)


def _image_check(image: Resource, rule: Rule, facts: Facts) -> Iterator[Finding]:
    """The offline image check's verdict on this image, as the operator layer found it
    (``scripts.imagecheck.check_builds``): would the image start?"""
    errors = None if facts.image_checks is None else facts.image_checks.get(image.urn)
    if errors is None:
        yield rule.unknown(
            image,
            "the image check did not run here: whether the image holds shared/ and its entry "
            "module imports is verified by `platform plan`, `platform images check` and the "
            "deploy preflight",
        )
        return
    for error in errors:
        yield rule.finding(image, f"image check failed: {error}")
