"""Who holds the lock (``HolderInfo``: CI identity or user, host, pid, commit) and the holder
secret that proves it (only its digest is stored)."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import secrets
import socket
import subprocess
from dataclasses import dataclass, fields
from typing import Any

#: Bytes of randomness in a holder secret (``secrets.token_urlsafe``).
_SECRET_BYTES = 32
#: Recorded as the holder's command, reason, ... at most this long (Firestore fields are cheap
#: but status output is not).
_MAX_TEXT = 500


def new_holder_secret() -> str:
    """A fresh random holder secret: proof of holding a lease, known only to its acquirer."""
    return secrets.token_urlsafe(_SECRET_BYTES)


def holder_digest(secret: str) -> str:
    """What Firestore stores of a holder secret: its SHA-256, hex.

    The secret has 256 random bits, so a plain hash cannot be brute-forced (no salt or slow
    hash needed, unlike passwords). Storing only the hash means that reading the lock (every
    ``status`` user, a log of the document) never yields what ``release`` requires.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def digest_matches(secret: str | None, digest: str | None) -> bool:
    """Constant-time comparison of ``secret``'s digest with a stored one."""
    if not secret or not digest:
        return False
    return hmac.compare_digest(holder_digest(secret), digest)


def _clip(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _git_commit() -> str | None:
    for var in ("GITHUB_SHA", "CI_COMMIT_SHA", "COMMIT_SHA", "GIT_COMMIT"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _ci_identity() -> tuple[str | None, str | None]:
    """(who, run URL) when running in a known CI, else (None, None)."""
    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true":
        url = None
        if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
            server = env.get("GITHUB_SERVER_URL", "https://github.com")
            url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        return f"github-actions:{env.get('GITHUB_ACTOR', '?')}", url
    if env.get("GITLAB_CI") == "true":
        return f"gitlab-ci:{env.get('GITLAB_USER_LOGIN', '?')}", env.get("CI_JOB_URL")
    if env.get("BUILD_ID") and env.get("PROJECT_ID"):  # Cloud Build
        return f"cloud-build:{env['BUILD_ID']}", None
    if env.get("CI"):
        return f"ci:{env.get('USER', '?')}", env.get("CI_RUN_URL") or env.get("BUILD_URL")
    return None, None


@dataclass(frozen=True, kw_only=True)
class HolderInfo:
    """Who holds (or wants) the lock; stored with the lease and shown to everyone waiting."""

    who: str
    host: str
    pid: int
    git_commit: str | None = None
    ci_run_url: str | None = None
    reason: str | None = None
    command: str | None = None

    @classmethod
    def detect(
        cls, *, reason: str | None = None, command: str | None = None, who: str | None = None
    ) -> HolderInfo:
        """This process's identity: the CI identity (GitHub Actions, GitLab CI, Cloud Build)
        or the OS user, host name, pid and git commit (``git rev-parse HEAD``, or the CI's
        commit variable). ``DEPLOY_LOCK_WHO`` overrides the detected name."""
        ci_who, ci_url = _ci_identity()
        if who is None:
            who = os.environ.get("DEPLOY_LOCK_WHO") or ci_who
        if who is None:
            try:
                who = getpass.getuser()
            except (KeyError, OSError):  # no passwd entry (containers)
                who = f"uid-{os.getuid()}"
        return cls(
            who=_clip(who) or "?",
            host=socket.gethostname(),
            pid=os.getpid(),
            git_commit=_git_commit(),
            ci_run_url=ci_url,
            reason=_clip(reason),
            command=_clip(command),
        )

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies, and this runs on every lock write.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> HolderInfo:
        data = data or {}
        return cls(
            who=str(data.get("who") or "?"),
            host=str(data.get("host") or "?"),
            pid=int(data.get("pid") or 0),
            git_commit=data.get("git_commit"),
            ci_run_url=data.get("ci_run_url"),
            reason=data.get("reason"),
            command=data.get("command"),
        )

    def describe(self) -> str:
        """One line for humans: ``alice on host-1 (pid 42, commit 1a2b3c4)``."""
        extras = [f"pid {self.pid}"]
        if self.git_commit:
            extras.append(f"commit {self.git_commit[:12]}")
        text = f"{self.who} on {self.host} ({', '.join(extras)})"
        if self.command:
            text += f", running {self.command!r}"
        if self.reason:
            text += f", reason: {self.reason}"
        if self.ci_run_url:
            text += f", CI run {self.ci_run_url}"
        return text
