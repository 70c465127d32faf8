"""The offline image check: would this Dockerfile's image start? No Docker daemon, no network.

:func:`check_image` answers for one service in well under a second:

1. **Build context**: the exact file set the build sees (repo root, ``.dockerignore`` through
   the docker SDK's own ``exclude_paths``; :mod:`infra.build_context`). A COPY source missing
   from it fails the check naming the Dockerfile line, as the build would.
2. **Dockerfile rules**: the base image is pinned by digest (``ARG BASE_IMAGE=...@sha256:``),
   the image runs as a non-root ``USER``, every copied file is world-readable (that user must
   read it), the requirements file a ``RUN pip install -r`` installs was COPYed before that
   RUN, and CMD names a server and an ``module:attribute`` app.
3. **Declared dependencies**: the requirements pin what the project venv has installed (so the
   check below is faithful), pin each declared distribution's own dependencies (the closure),
   and declare the server in CMD and every third-party module that the code reachable from
   the entry module imports, lazy imports inside functions included (static, by AST).
4. **Import in isolation**: the files as COPY/WORKDIR/ENV lay them out are written to a temp
   image root; the requirement distributions' installed files (and nothing else) are linked
   into a temp site-packages from the venv; then ``python -S`` (no site, clean environment,
   cwd = WORKDIR, the image's PYTHONPATH) imports CMD's server and entry module and reads the
   app attribute. The checkout and the venv cannot hide a missing file or an undeclared
   dependency: the import fails with the ``ModuleNotFoundError`` the container would log.

The result carries the image's content hash (:func:`infra.build_context.image_tag` is its
prefix: the tag the Pulumi program gives the image)::

    from scripts.imagecheck import check_image
    result = check_image("prediction-worker")   # or "worker"
    if not result.ok:
        for error in result.errors: ...

The preflight (``scripts.plan.preflight``) runs :func:`check_builds` on the images a plan
builds and hands the errors to rule PF10. CLI: ``platform images check [SERVICE...]
[--json]`` (:mod:`scripts.images_cli`).

Modules, in the order of the steps: ``_dockerfile`` (stage facts, CMD, the Dockerfile rules),
``_requirements`` (what the requirements declare, the closure), ``_venv`` (installed
distributions, the linked site-packages), ``_scan`` (the AST import scan), ``_isolated`` (the
isolated import), ``_check`` (the check itself).
"""

from ._check import (
    IMPORT_TIMEOUT_S,
    SERVICES,
    ImageCheckResult,
    check_builds,
    check_image,
    check_images,
)
from ._dockerfile import AppEntry, dockerfile_entry, image_cmd, parse_entry

__all__ = [
    "AppEntry",
    "IMPORT_TIMEOUT_S",
    "ImageCheckResult",
    "SERVICES",
    "check_builds",
    "check_image",
    "check_images",
    "dockerfile_entry",
    "image_cmd",
    "parse_entry",
]
