"""Fail fast, before the lock is taken, when the ``pulumi`` CLI or GCP credentials are missing.

The Automation API shells out to ``pulumi``; without it the first call raises a bare
``FileNotFoundError: 'pulumi'`` deep inside ``LocalWorkspace``. :func:`check_tooling` finds that
out first and says what to install; :func:`missing_pulumi` wraps the same condition when it
shows up later anyway (a CLI removed mid-run, a PATH that differs in a subprocess).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any, Protocol

from ._errors import MissingTool, ToolingMissing

__all__ = [
    "PULUMI_INSTALL_HINT",
    "CREDENTIALS_HINT",
    "ToolingCheck",
    "SystemTooling",
    "check_tooling",
    "missing_pulumi",
    "probe_metadata_once",
]

PULUMI_INSTALL_HINT = (
    "the Pulumi CLI is not on PATH; install it (https://www.pulumi.com/docs/install/: "
    "`curl -fsSL https://get.pulumi.com | sh`, then add ~/.pulumi/bin to PATH) or set "
    "PULUMI_HOME/PATH to an existing installation. It is not a Python package: "
    "`pip install pulumi` only installs the SDK"
)
CREDENTIALS_HINT = (
    "no Google Cloud credentials found; run `gcloud auth application-default login`, or set "
    "GOOGLE_APPLICATION_CREDENTIALS, or (in CI) use Workload Identity Federation "
    "(google-github-actions/auth); see README 'Bootstrap (one-time)'"
)


def probe_metadata_once() -> None:
    """Let ``google.auth.default`` probe the metadata server once (3 s), not three times.

    On Cloud Build, Cloud Run or GCE the metadata server *is* the credential source (a build
    step has no key file), so it must never be skipped with ``NO_GCE_CHECK`` (which is still
    honoured when the caller sets it); off GCP one short probe bounds the wait. Call before
    the first ``google.auth`` credential lookup: the library reads these at import.
    """
    os.environ.setdefault("GCE_METADATA_DETECT_RETRIES", "1")


class ToolingCheck(Protocol):
    """What the pipeline needs to know about this machine's tools (test doubles implement it)."""

    def missing(self) -> list[MissingTool]:
        """Every missing prerequisite, each with its fix; empty when all is there."""
        ...


class SystemTooling:
    """The real check: ``pulumi`` on PATH (or in ``$PULUMI_HOME/bin``), and credentials from
    ``google.auth.default``."""

    def __init__(
        self,
        *,
        which: Callable[[str], str | None] = shutil.which,
        auth_default: Callable[[], Any] | None = None,
        need_credentials: bool = True,
    ) -> None:
        self._which = which
        self._auth_default = auth_default
        self._need_credentials = need_credentials

    def pulumi_path(self) -> str | None:
        found = self._which("pulumi")
        if found:
            return found
        home = os.environ.get("PULUMI_HOME")
        if home and os.access(os.path.join(home, "bin", "pulumi"), os.X_OK):
            return os.path.join(home, "bin", "pulumi")
        return None

    def missing(self) -> list[MissingTool]:
        result: list[MissingTool] = []
        if self.pulumi_path() is None:
            result.append(MissingTool("pulumi CLI", PULUMI_INSTALL_HINT))
        if self._need_credentials:
            problem = self._credentials_problem()
            if problem:
                result.append(MissingTool("GCP credentials", problem))
        return result

    def _credentials_problem(self) -> str | None:
        probe_metadata_once()
        try:
            if self._auth_default is not None:
                self._auth_default()
            else:
                import google.auth

                google.auth.default()
        except Exception as exc:  # DefaultCredentialsError, or a malformed key file
            return f"{CREDENTIALS_HINT} ({type(exc).__name__}: {exc})"
        return None


def check_tooling(tooling: ToolingCheck | None = None) -> None:
    """Raise :class:`ToolingMissing` listing every missing prerequisite with its fix."""
    missing = (tooling or SystemTooling()).missing()
    if missing:
        raise ToolingMissing(missing)


def missing_pulumi(exc: FileNotFoundError) -> ToolingMissing:
    """The Automation API's bare ``FileNotFoundError: 'pulumi'``, as the clear error."""
    return ToolingMissing([MissingTool("pulumi CLI", f"{PULUMI_INSTALL_HINT} ({exc})")])
