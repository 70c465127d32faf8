"""The image tag: a content hash of the image's inputs, and nothing else."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra import build_context
from infra.build_context import BuildContext, ContextSnapshot, image_tag

DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim@sha256:0123456789abcdef
FROM ${BASE_IMAGE}
WORKDIR /app
COPY pkg/ /app/pkg/
COPY tool.sh /usr/local/bin/tool.sh
"""


def _repo(root: Path, files: dict[str, bytes], order: list[str] | None = None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images/svc.Dockerfile").write_text(DOCKERFILE)
    (root / ".dockerignore").write_text("**/__pycache__\npkg/ignored.txt\n")
    for rel in order or list(files):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel])
    return root


BASE_FILES = {
    "pkg/__init__.py": b"",
    "pkg/mod.py": b"print('hi')\n",
    "pkg/sub/data.json": b"{}",
    "pkg/ignored.txt": b"excluded by .dockerignore",
    "tool.sh": b"#!/bin/sh\necho tool\n",
    "README.md": b"not copied",
    "tests/test_x.py": b"not copied",
}


def test_image_files_land_where_copy_puts_them(tmp_path):
    bc = BuildContext.for_service("svc", _repo(tmp_path, BASE_FILES))
    assert [f.image_path for f in bc.image_files()] == [
        "/app/pkg/__init__.py",
        "/app/pkg/mod.py",
        "/app/pkg/sub/data.json",
        "/usr/local/bin/tool.sh",
    ]


def test_same_files_same_hash_whatever_mtimes_and_creation_order(tmp_path):
    a = _repo(tmp_path / "a", BASE_FILES)
    b = _repo(tmp_path / "b", BASE_FILES, order=sorted(BASE_FILES, reverse=True))
    for path in b.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    assert image_tag("svc", a) == image_tag("svc", b)


def test_files_the_image_does_not_copy_do_not_count(tmp_path):
    root = _repo(tmp_path, BASE_FILES)
    before = image_tag("svc", root)
    (root / "README.md").write_text("changed")
    (root / "tests/test_x.py").write_text("changed")
    (root / "pkg/ignored.txt").write_text("changed, but .dockerignored")
    (root / "pkg/__pycache__").mkdir()
    (root / "pkg/__pycache__/mod.cpython-311.pyc").write_bytes(b"\0")
    assert image_tag("svc", root) == before


def test_content_mode_path_and_dockerfile_changes_count(tmp_path):
    root = _repo(tmp_path, BASE_FILES)
    seen = {image_tag("svc", root)}
    (root / "pkg/mod.py").write_text("print('changed')\n")
    seen.add(image_tag("svc", root))
    (root / "tool.sh").chmod(0o755)
    seen.add(image_tag("svc", root))
    shutil.move(root / "pkg/sub/data.json", root / "pkg/sub/other.json")
    seen.add(image_tag("svc", root))
    df = root / "images/svc.Dockerfile"
    df.write_text(df.read_text() + "ENV X=1\n")
    seen.add(image_tag("svc", root))
    assert len(seen) == 5


def test_copy_dot_keeps_paths_whole(tmp_path):
    """Regression: ``COPY . /app/`` used to drop the first character of every path."""
    root = _repo(tmp_path, BASE_FILES)
    (root / "images/svc.Dockerfile").write_text("FROM x\nWORKDIR /app\nCOPY . .\n")
    paths = {f.image_path for f in BuildContext.for_service("svc", root).image_files()}
    assert "/app/pkg/mod.py" in paths and "/app/tool.sh" in paths
    assert not any(p.startswith("/app/kg") for p in paths)


def test_copy_chmod_sets_the_mode(tmp_path):
    root = _repo(tmp_path, BASE_FILES)
    (root / "images/svc.Dockerfile").write_text("FROM x\nCOPY --chmod=755 tool.sh /bin/tool\n")
    (f,) = BuildContext.for_service("svc", root).image_files()
    assert (f.image_path, f.mode) == ("/bin/tool", 0o755)


names = st.text(alphabet="abcdefgh", min_size=1, max_size=6)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    contents=st.dictionaries(names, st.binary(max_size=64), min_size=1, max_size=6),
    mtimes=st.lists(st.integers(min_value=0, max_value=2**31), min_size=6, max_size=6),
)
def test_hash_is_a_function_of_contents_only(tmp_path_factory, contents, mtimes):
    files = {f"pkg/{name}.py": data for name, data in contents.items()}
    a = _repo(tmp_path_factory.mktemp("a"), files)
    b = _repo(tmp_path_factory.mktemp("b"), files, order=sorted(files, reverse=True))
    (a / "images/svc.Dockerfile").write_text("FROM x\nCOPY pkg/ /app/pkg/\n")
    (b / "images/svc.Dockerfile").write_text("FROM x\nCOPY pkg/ /app/pkg/\n")
    for path, mtime in zip(sorted(b.rglob("*.py")), mtimes, strict=False):
        os.utime(path, (mtime, mtime))
    assert image_tag("svc", a) == image_tag("svc", b)


def test_a_shared_snapshot_tags_like_a_fresh_walk_and_reads_each_file_once(tmp_path, monkeypatch):
    """Many images of one context: one walk, each file hashed once, the same tags as alone."""
    root = _repo(tmp_path, BASE_FILES)
    for name in ("one", "two", "three"):
        (root / f"images/{name}.Dockerfile").write_text("FROM x\nCOPY pkg/ /app/pkg/\n")
    alone = {name: image_tag(name, root) for name in ("one", "two", "three")}

    walks, reads = [], []
    real_walk, real_read = build_context.exclude_paths, Path.read_bytes
    monkeypatch.setattr(
        build_context, "exclude_paths", lambda *a, **k: walks.append(a) or real_walk(*a, **k)
    )
    monkeypatch.setattr(Path, "read_bytes", lambda p: reads.append(p.name) or real_read(p))
    snapshot = ContextSnapshot(root)
    shared = {name: image_tag(name, snapshot=snapshot) for name in ("one", "two", "three")}

    assert shared == alone
    assert len(walks) == 1
    assert reads.count("mod.py") == 1, reads


def test_an_ignored_dockerfile_is_still_in_its_context(tmp_path):
    """Docker sends the Dockerfile named by -f even when .dockerignore excludes it."""
    root = _repo(tmp_path, BASE_FILES)
    (root / ".dockerignore").write_text("images\n")
    (root / "images/svc.Dockerfile").write_text("FROM x\nCOPY pkg/ /app/pkg/\n")
    assert "images/svc.Dockerfile" in BuildContext.for_service("svc", root).context_files
