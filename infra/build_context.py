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

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = "images"
TAG_LENGTH = 16  # hex digits of sha256 kept in the tag: 64 bits, ample for one repo's builds


class BuildContextError(ValueError):
    """The Dockerfile cannot be built from this context (e.g. a COPY source is missing)."""


def dockerfile_for(service: str) -> str:
    """The repo-relative Dockerfile of a service: ``images/<short name>.Dockerfile``.

    ``prediction-worker`` and ``worker`` both map to ``images/worker.Dockerfile``.
    """
    short = service.removeprefix("prediction-")
    return f"{IMAGES_DIR}/{short}.Dockerfile"


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


@dataclass(frozen=True)
class BuildContext:
    """The build of one Dockerfile with ``root`` as its context."""

    root: Path
    dockerfile: Path  # absolute

    @classmethod
    def for_service(cls, service: str, root: Path | None = None) -> BuildContext:
        root = (root or REPO_ROOT).resolve()
        return cls(root=root, dockerfile=root / dockerfile_for(service))

    @cached_property
    def dockerfile_bytes(self) -> bytes:
        return self.dockerfile.read_bytes()

    @cached_property
    def parser(self) -> DockerfileParser:
        # fileobj keeps dockerfile-parse from writing anything next to the Dockerfile.
        import io

        return DockerfileParser(fileobj=io.BytesIO(self.dockerfile_bytes))

    @cached_property
    def dockerignore_patterns(self) -> list[str]:
        ignore = self.root / ".dockerignore"
        if not ignore.exists():
            return []
        lines = ignore.read_text().splitlines()
        return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]

    @cached_property
    def context_files(self) -> frozenset[str]:
        """Every regular file the build context holds, relative to ``root`` (POSIX)."""
        rel_dockerfile = os.path.relpath(self.dockerfile, self.root)
        included = exclude_paths(str(self.root), self.dockerignore_patterns, rel_dockerfile)
        return frozenset(
            _context_key(p) for p in included if (self.root / p).is_file()
        )

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
                f for f in self.context_files
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
                    path = self.root / rel
                    st = path.stat()
                    image_path = posixpath.normpath(target)
                    landed[image_path] = ImageFile(
                        image_path=image_path,
                        context_path=rel,
                        mode=copy.chmod if copy.chmod is not None else stat.S_IMODE(st.st_mode),
                        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
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


def image_tag(service: str, root: Path | None = None) -> str:
    """The tag the program gives a service's image: a content hash of the image's inputs."""
    return BuildContext.for_service(service, root).content_hash()[:TAG_LENGTH]
