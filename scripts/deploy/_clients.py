"""Official clients for the real runs: the Firestore database of the lock and the records, the
cloud's rollout adapters (Cloud Run traffic, Cloud Monitoring, Secret Manager, Artifact
Registry), and the local platform with its release trees."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.deploylock import DATABASE_ENV, DEFAULT_DATABASE
from scripts.local import LOCAL_STACK, LocalPlatform  # LOCAL_STACK: the local platform's name

from ._cloudcheck import CloudSyntheticCheck
from ._errors import DeployError
from ._lazyclient import LazyClient
from ._registry import ArtifactRegistryDigests
from ._releases import release_tree
from ._secrets import SecretManagerSecrets
from ._tooling import probe_metadata_once

__all__ = [
    "DEFAULT_LOCK_DATABASE",
    "LOCK_DATABASE_ENV",
    "LOCAL_STACK",
    "LOCAL_TOPOLOGY_STACK",
    "LazyClient",
    "cloud_rollout_adapters",
    "firestore_for",
    "local_platform",
    "local_releases",
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


def local_releases(root: Path, platform: Any) -> Callable[[str], Path]:
    """commit -> its release tree under the local platform's state directory (``releases/``),
    for ``LocalTarget(releases=...)``: the services run the deployed commit's code."""
    releases_dir = Path(platform.state_dir) / "releases"
    return lambda commit: release_tree(Path(root), commit, releases_dir)


def cloud_rollout_adapters(project: str | None) -> tuple[dict[str, Any], SecretManagerSecrets]:
    """``CloudTarget``'s ``traffic``, ``metrics``, ``synthetic`` and ``registry`` on Google's
    clients (made on first use, Application Default Credentials), and the Secret Manager
    reader they share with the notifications (the webhook secret)."""
    from scripts.rollout import CloudRunTraffic, MonitoringErrorRate

    def run_services() -> Any:
        from google.cloud import run_v2

        return run_v2.ServicesClient()

    def metric_service() -> Any:
        from google.cloud import monitoring_v3

        return monitoring_v3.MetricServiceClient()

    secrets = SecretManagerSecrets()
    adapters = {
        "traffic": CloudRunTraffic(LazyClient(run_services)),
        "metrics": MonitoringErrorRate(LazyClient(metric_service), project=project or ""),
        "synthetic": CloudSyntheticCheck(secrets=secrets),
        "registry": ArtifactRegistryDigests(),
    }
    return adapters, secrets
