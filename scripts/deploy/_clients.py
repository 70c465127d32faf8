"""Official clients for the real runs: the Firestore database of the lock and the records."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from scripts.deploylock import DATABASE_ENV, DEFAULT_DATABASE
from scripts.local import LOCAL_STACK  # the stack name of the local platform

from ._errors import DeployError

__all__ = [
    "DEFAULT_LOCK_DATABASE",
    "LOCK_DATABASE_ENV",
    "LOCAL_PLATFORM_FACTORY",
    "LOCAL_STACK",
    "LOCAL_TOPOLOGY_STACK",
    "firestore_for",
    "local_platform",
]

#: The deployment records live beside the deploy lock, in the lock library's one database.
LOCK_DATABASE_ENV = DATABASE_ENV
DEFAULT_LOCK_DATABASE = DEFAULT_DATABASE
#: The local platform's class (``scripts.local``), which implements the ``LocalPlatform``
#: protocol of ``scripts.deploy._targets``; its topology is this stack's.
LOCAL_PLATFORM_FACTORY = "scripts.local:LocalPlatform"
LOCAL_TOPOLOGY_STACK = "prod"


def firestore_for(project: str | None, database: str) -> Any:
    """A Firestore client: the emulator when ``FIRESTORE_EMULATOR_HOST`` is set, else Google's
    with Application Default Credentials and short timeouts (as the lock's own)."""
    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if emulator:
        from scripts.emulators import firestore_client

        return firestore_client(emulator, project or "demo-local", database=database)
    os.environ.setdefault("NO_GCE_CHECK", "true")
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
    on the emulators; reuses a platform already up (its state in ``.local/``)."""
    module_name, _, attr = LOCAL_PLATFORM_FACTORY.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except (ImportError, AttributeError):
        raise DeployError(
            f"the local platform is not available: `deploy --stack {LOCAL_STACK}` needs "
            f"{LOCAL_PLATFORM_FACTORY} (the LocalPlatform protocol of scripts/deploy/_targets.py)"
        ) from None
    platform = factory(LOCAL_TOPOLOGY_STACK, root=root)
    platform.plan_stack = LOCAL_TOPOLOGY_STACK
    return platform
