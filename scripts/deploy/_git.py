"""The few git questions the pipeline and drift ask, through the ``git`` command."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ._errors import DeployError

__all__ = ["Commit", "GitRepo"]

_FIELD = "\x1f"


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    date: str  # ISO 8601, committer date

    @property
    def short(self) -> str:
        return self.sha[:8]


class GitRepo:
    """A git work tree at ``root``; every failure is a :class:`DeployError` naming the command."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _git(self, *args: str) -> str:
        try:
            out = subprocess.run(
                ["git", "-C", str(self.root), *args],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except FileNotFoundError:
            raise DeployError("git is not on PATH (install git)") from None
        except subprocess.CalledProcessError as exc:
            raise DeployError(
                f"`git {' '.join(args)}` failed in {self.root}: {exc.stderr.strip()}"
            ) from None
        return out.stdout

    def head(self) -> str:
        return self._git("rev-parse", "HEAD").strip()

    def resolve(self, ref: str) -> str:
        """The full sha of ``ref`` (a branch, tag, or a possibly abbreviated sha)."""
        return self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()

    def has_commit(self, sha: str) -> bool:
        try:
            self.resolve(sha)
        except DeployError:
            return False
        return True

    def dirty_paths(self) -> list[str]:
        """Tracked paths with uncommitted changes (modified, staged, deleted, renamed).

        Untracked files are not changes to the commit: see :meth:`untracked_paths`."""
        out = self._git("status", "--porcelain", "--untracked-files=no")
        return [line[3:] for line in out.splitlines() if line.strip()]

    def untracked_paths(self) -> list[str]:
        """Untracked files git does not ignore, relative to the root (POSIX)."""
        out = self._git("ls-files", "--others", "--exclude-standard", "--full-name")
        return sorted(line for line in out.splitlines() if line.strip())

    def tracked_files(self) -> list[str]:
        """Every file of the index (what a fresh clone of HEAD plus staged changes holds)."""
        out = self._git("ls-files", "--cached", "--full-name")
        return sorted(line for line in out.splitlines() if line.strip())

    def commits_between(self, base: str, head: str, paths: Iterable[str] = ()) -> list[Commit]:
        """Commits in ``head`` not in ``base`` (``base..head``), newest first, optionally only
        those touching ``paths``."""
        args = ["log", f"--format=%H{_FIELD}%s{_FIELD}%an{_FIELD}%cI", f"{base}..{head}"]
        path_list = list(paths)
        if path_list:
            args += ["--", *path_list]
        out = self._git(*args)
        commits = []
        for line in out.splitlines():
            if not line.strip():
                continue
            sha, subject, author, date = line.split(_FIELD, 3)
            commits.append(Commit(sha, subject, author, date))
        return commits

    def count_between(self, base: str, head: str) -> int:
        return int(self._git("rev-list", "--count", f"{base}..{head}").strip())

    def user(self) -> str | None:
        try:
            email = self._git("config", "user.email").strip()
        except DeployError:
            return None
        return email or None
