"""Official clients for the real runs: the Firestore database of the lock and the records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scripts.deploylock import DATABASE_ENV, DEFAULT_DATABASE
from scripts.local import LOCAL_STACK, LocalPlatform  # LOCAL_STACK: the local platform's name

from ._errors import DeployError
from ._tooling import probe_metadata_once

__all__ = [
    "DEFAULT_LOCK_DATABASE",
    "LOCK_DATABASE_ENV",
    "LOCAL_STACK",
    "LOCAL_TOPOLOGY_STACK",
    "firestore_for",
    "local_platform",
]

#: The deployment records live beside the deploy lock, in the lock library's one database.
LOCK_DATABASE_ENV = DATABASE_ENV
DEFAULT_LOCK_DATABASE = DEFAULT_DATABASE
#: The stack whose topology the local platform runs for ``deploy --stack local``.
LOCAL_TOPOLOGY_STACK = "prod"


def firestore_for(project: str | None, database: str) -> Any:
    """A Firestore client: the emulator when ``FIRESTORE_EMULATOR_HOST`` is set, else Google's
    with Application Default Credentials and short timeouts (as the lock's own)."""
    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if emulator:
        from scripts.emulators import firestore_client

        return firestore_client(emulator, project or "demo-local", database=database)
    probe_metadata_once()
    try:
        from google.cloud import firestore

        return firestore.Client(project=project, database=database)
    except Exception as exc:  # DefaultCredentialsError, no project
        raise DeployError(
            f"cannot open Firestore database '{database}' of project '{project}': {exc}; run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from None


def local_platform(root: Path) -> Any:
    """The local platform (``platform local``) for ``deploy --stack local``: the prod topology
    on the emulators; reuses a platform already up (its state in ``.local/``). Its class,
    ``scripts.local.LocalPlatform``, implements the ``LocalPlatform`` protocol of
    ``scripts.deploy._targets``."""
    platform = LocalPlatform(LOCAL_TOPOLOGY_STACK, root=root)
    platform.plan_stack = LOCAL_TOPOLOGY_STACK
    return platform
