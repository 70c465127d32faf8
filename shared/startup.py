"""Start-up checks the services share: the env contract, and a clean exit when it fails.

A service missing configuration must stop at start-up with ONE message naming everything
that is missing (a revision once shipped without ``GCP_PROJECT_ID`` and failed on its first
request instead). Under uvicorn an exception in the lifespan prints a traceback and uvicorn's
own notes; :func:`exit_with_config_error` logs a single structured line and exits with
``EX_CONFIG`` (78) instead, which Cloud Run reports as a failed start.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from shared.contract import MissingEnvironment, contract_for

__all__ = ["ConfigError", "EX_CONFIG", "exit_with_config_error", "require_env"]

EX_CONFIG = 78  # sysexits.h: configuration error


class ConfigError(RuntimeError):
    """Every configuration problem found at start-up, in one message."""

    def __init__(self, service: str, problems: list[str]):
        self.service = service
        self.problems = problems
        super().__init__(f"{service}: invalid configuration: " + "; ".join(problems))


def require_env(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The contract's variables, or MissingEnvironment listing all missing ones."""
    contract = contract_for(service)
    missing = contract.missing(environ)
    if missing:
        raise MissingEnvironment(service, missing)
    return {n: environ[n] for n in contract.all_required + contract.optional if n in environ}


def exit_with_config_error(exc: Exception) -> None:
    """Log ``exc`` as one JSON line on stderr and end the process with EX_CONFIG."""
    line = {"severity": "CRITICAL", "message": str(exc), "event": "startup_config_error"}
    missing = getattr(exc, "missing", None)
    if missing:
        line["missing"] = list(missing)
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()
    sys.stdout.flush()
    # os._exit: raising from an ASGI lifespan makes uvicorn print a traceback and notes.
    os._exit(EX_CONFIG)
