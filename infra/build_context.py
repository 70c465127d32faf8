"""What a Dockerfile's build sees, and the content hash the program tags images with.

Images are built with the repo root as context and ``-f images/<service>.Dockerfile``
(``gcloud run deploy --source`` once built from the service folder and shipped an image
without ``shared/``). This module answers two questions from the files alone, with no
Docker daemon:

* which files the build context holds (``.dockerignore`` semantics, by the docker SDK's
  own ``exclude_paths``, the function its context tar uses), and
* which of them land in the image, where, and with what mode (COPY/ADD of the final stage).

``image_tag`` hashes exactly that: the Dockerfile bytes plus, per file landing in the image,
its path in the image, its mode and the sha256 of its content. Same files, same tag,
whatever the mtimes, owners or walk order; a file the image does not copy does not count.
(The docker SDK's context tar is no good as a hash: it records mtimes and gzip times.)
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shlex
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser

from infra.naming import short_service
from infra.paths import REPO_ROOT

IMAGES_DIR = "images"
TAG_LENGTH = 16  # hex digits of sha256 kept in the tag: 64 bits, ample for one repo's builds


class BuildContextError(ValueError):
    """The Dockerfile cannot be built from this context (e.g. a COPY source is missing)."""


def dockerfile_for(service: str) -> str:
    """The repo-relative Dockerfile of a service: ``images/<short name>.Dockerfile``.

    ``prediction-worker`` and ``worker`` both map to ``images/worker.Dockerfile``.
    """
    return f"{IMAGES_DIR}/{short_service(service)}.Dockerfile"


@dataclass(frozen=True)
class Copy:
    """One COPY/ADD of the final stage: context sources to an image destination."""

    sources: tuple[str, ...]
    dest: str  # absolute path in the image (WORKDIR applied)
    line: int  # 1-based line in the Dockerfile
    chmod: int | None = None  # COPY --chmod=MODE: the mode every copied file gets


@dataclass(frozen=True)
class ImageFile:
    """A file as it lands in the image."""

    image_path: str  # absolute POSIX path in the image
    context_path: str  # path relative to the build context
    mode: int  # permission bits as built (the executable bit matters to the image)
    sha256: str
    # 1-based Dockerfile line of the COPY that put it there (not part of the content hash).
    line: int = field(default=0, compare=False)


def _context_key(path: str) -> str:
    return path.replace(os.sep, "/")


@dataclass(frozen=True, eq=False)
class ContextSnapshot:
    """One read of a build context, shared by every image built from it.

    The context is walked once and each file stat'ed and hashed once, however many services
    are built from it (a stack of 200 services otherwise walked and hashed the repo 200
    times). Scope it to one evaluation: it does not notice files changed after it read them.
    """

    root: Path

    @cached_property
    def dockerignore_patterns(self) -> tuple[str, ...]:
        ignore = self.root / ".dockerignore"
        if not ignore.exists():
            return ()
        lines = (ln.strip() for ln in ignore.read_text().splitlines())
        return tuple(ln for ln in lines if ln and not ln.startswith("#"))

    @cached_property
    def files(self) -> frozenset[str]:
        """Every regular file the context holds, relative to ``root`` (POSIX), before the
        one exception Docker makes: the Dockerfile itself is sent even if ignored."""
        # exclude_paths appends "!<dockerfile>" to the list it is given: pass a copy.
        included = exclude_paths(str(self.root), list(self.dockerignore_patterns), "")
        return frozenset(_context_key(p) for p in included if (self.root / p).is_file())

    @cached_property
    def _digests(self) -> dict[str, tuple[int, str]]:
        return {}

    def digest(self, rel: str) -> tuple[int, str]:
        """(permission bits, sha256 of the content) of a context file, computed once."""
        found = self._digests.get(rel)
        if found is None:
            path = self.root / rel
            found = (
                stat.S_IMODE(path.stat().st_mode),
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
            self._digests[rel] = found
        return found


@dataclass(frozen=True)
class BuildContext:
    """The build of one Dockerfile with ``root`` as its context."""

    root: Path
    dockerfile: Path  # absolute
    # Shared by the images of one evaluation; a fresh one (one walk) when not given.
    snapshot: ContextSnapshot | None = field(default=None, compare=False)

    @classmethod
    def for_service(
        cls, service: str, root: Path | None = None, *, snapshot: ContextSnapshot | None = None
    ) -> BuildContext:
        root = (snapshot.root if snapshot else (root or REPO_ROOT)).resolve()
        return cls(root=root, dockerfile=root / dockerfile_for(service), snapshot=snapshot)

    @cached_property
    def _snapshot(self) -> ContextSnapshot:
        return self.snapshot if self.snapshot is not None else ContextSnapshot(self.root)

    @cached_property
    def dockerfile_bytes(self) -> bytes:
        return self.dockerfile.read_bytes()

    @cached_property
    def parser(self) -> DockerfileParser:
        # fileobj keeps dockerfile-parse from writing anything next to the Dockerfile.
        import io

        return DockerfileParser(fileobj=io.BytesIO(self.dockerfile_bytes))

    @property
    def dockerignore_patterns(self) -> list[str]:
        return list(self._snapshot.dockerignore_patterns)

    @cached_property
    def context_files(self) -> frozenset[str]:
        """Every regular file the build context holds, relative to ``root`` (POSIX)."""
        rel_dockerfile = _context_key(os.path.relpath(self.dockerfile, self.root))
        files = self._snapshot.files
        if rel_dockerfile not in files and self.dockerfile.is_file():
            files = files | {rel_dockerfile}  # Docker sends the Dockerfile even if ignored
        return files

    def final_stage(self) -> list[dict]:
        """Instructions of the last stage (multi-stage COPY --from is not from the context)."""
        structure = self.parser.structure
        start = 0
        for i, ins in enumerate(structure):
            if ins["instruction"] == "FROM":
                start = i
        return structure[start:]

    def copies(self) -> list[Copy]:
        """COPY/ADD instructions of the final stage that read from the build context."""
        workdir = "/"
        result: list[Copy] = []
        for ins in self.final_stage():
            kind = ins["instruction"]
            if kind == "WORKDIR":
                workdir = posixpath.normpath(posixpath.join(workdir, ins["value"].strip()))
            elif kind in ("COPY", "ADD"):
                words = _copy_words(ins["value"])
                if any(w.startswith("--from") for w in words):
                    continue
                args = [w for w in words if not w.startswith("--")]
                if len(args) < 2:
                    raise BuildContextError(
                        f"{self.dockerfile.name}:{ins['startline'] + 1}: {kind} needs a source "
                        "and a destination"
                    )
                *sources, dest = args
                if not dest.startswith("/"):
                    dest = posixpath.join(workdir, dest) + ("/" if dest.endswith("/") else "")
                chmod = next(
                    (int(w.split("=", 1)[1], 8) for w in words if w.startswith("--chmod=")), None
                )
                result.append(Copy(tuple(sources), dest, ins["startline"] + 1, chmod))
        return result

    def _matches(self, source: str) -> tuple[list[str], bool]:
        """Context files a COPY source selects, and whether the source is a directory."""
        src = _normalise(source)
        if src == ".":
            return sorted(self.context_files), True
        if any(ch in src for ch in "*?["):
            hits = sorted(f for f in self.context_files if fnmatch.fnmatchcase(f, src))
            dir_hits = sorted(
                f
                for f in self.context_files
                if any(fnmatch.fnmatchcase(prefix, src) for prefix in _parents(f))
            )
            return sorted(set(hits) | set(dir_hits)), bool(dir_hits)
        if src in self.context_files:
            return [src], False
        prefix = src.rstrip("/") + "/"
        under = sorted(f for f in self.context_files if f.startswith(prefix))
        return under, bool(under)

    def image_files(self) -> list[ImageFile]:
        """Every context file the final image receives, sorted by image path.

        Raises ``BuildContextError`` naming the Dockerfile line when a COPY source matches
        nothing in the context (missing, or dropped by ``.dockerignore``): the build would fail.
        """
        landed: dict[str, ImageFile] = {}
        for copy in self.copies():
            for source in copy.sources:
                files, is_dir = self._matches(source)
                if not files:
                    raise BuildContextError(
                        f"{_rel(self.dockerfile, self.root)}:{copy.line}: COPY source "
                        f"'{source}' is not in the build context {self.root} "
                        "(missing, or excluded by .dockerignore)"
                    )
                multi = len(copy.sources) > 1 or is_dir or copy.dest.endswith("/")
                for rel in files:
                    if is_dir:
                        base = _dir_base(source, rel)
                        # "COPY . /app/" copies the context's contents: the base is the root.
                        inner = rel[len(base) :].lstrip("/") if base not in ("", ".") else rel
                        target = posixpath.join(copy.dest, inner)
                    elif multi:
                        target = posixpath.join(copy.dest, posixpath.basename(rel))
                    else:
                        target = copy.dest
                    mode, sha256 = self._snapshot.digest(rel)
                    image_path = posixpath.normpath(target)
                    landed[image_path] = ImageFile(
                        image_path=image_path,
                        context_path=rel,
                        mode=copy.chmod if copy.chmod is not None else mode,
                        sha256=sha256,
                        line=copy.line,
                    )
        return sorted(landed.values(), key=lambda f: f.image_path)

    def content_hash(self) -> str:
        """sha256 over the Dockerfile bytes and (image path, mode, content hash) per file."""
        digest = hashlib.sha256()
        digest.update(b"dockerfile\0")
        digest.update(self.dockerfile_bytes)
        for f in self.image_files():
            digest.update(f"\0{f.image_path}\0{f.mode:o}\0{f.sha256}".encode())
        return digest.hexdigest()


def _copy_words(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        import json

        return list(json.loads(value))
    return shlex.split(value)


def _normalise(source: str) -> str:
    """A COPY source as a context-relative POSIX path ("./shared/" -> "shared", "." stays)."""
    return posixpath.normpath(source.lstrip("/"))


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _dir_base(source: str, rel: str) -> str:
    """The directory prefix of ``rel`` that the (possibly globbed) source named."""
    src = _normalise(source)
    if not any(ch in src for ch in "*?["):
        return src
    for prefix in _parents(rel):
        if fnmatch.fnmatchcase(prefix, src):
            return prefix
    return ""


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def image_tag(
    service: str, root: Path | None = None, *, snapshot: ContextSnapshot | None = None
) -> str:
    """The tag the program gives a service's image: a content hash of the image's inputs.

    Pass one ``snapshot`` to tag many images of one context with one walk of it.
    """
    return BuildContext.for_service(service, root, snapshot=snapshot).content_hash()[:TAG_LENGTH]
