"""The code of one commit, for the local platform to run: what "deployed commit X" means
locally. A rollback then really serves the previous release's code, not the work tree's.

``git archive`` of the paths the images are built from (the Dockerfiles, ``shared/``,
``services/``, ``.dockerignore``) is unpacked once per commit under ``.local/releases/<sha>/``
(git-ignored) and reused.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

from ._errors import DeployError

__all__ = ["RELEASE_PATHS", "release_tree"]

#: What the services' images hold (see images/*.Dockerfile); the rest of the repo is tooling.
RELEASE_PATHS = ("images", "shared", "services", ".dockerignore")


def release_tree(repo_root: Path, commit: str, releases_dir: Path) -> Path:
    """The unpacked tree of ``commit`` (full sha); made once, atomically."""
    target = releases_dir / commit
    if (target / ".complete").exists():
        return target
    try:
        archive = subprocess.run(
            ["git", "-C", str(repo_root), "archive", "--format=tar", commit, *RELEASE_PATHS],
            check=True,
            capture_output=True,
            timeout=120,
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise DeployError(
            f"cannot export commit {commit[:12]} for the local platform: "
            f"{exc.stderr.decode(errors='replace').strip()}"
        ) from None
    tmp = releases_dir / f".{commit}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
    (tmp / ".complete").write_text(commit + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target
