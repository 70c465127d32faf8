"""Artifact Registry: does an image digest still exist? (The automatic rollback asks before
redeploying the last good release: the cleanup policy keeps the 20 newest versions.)"""

from __future__ import annotations

from typing import Any

from ._cloudbuild import package_resource
from ._errors import DeployError
from ._lazyclient import LazyClient

__all__ = ["ArtifactRegistryDigests", "version_resource"]

TIMEOUT_S = 30.0


def version_resource(ref: str) -> str | None:
    """``LOCATION-docker.pkg.dev/P/R/IMAGE@sha256:...`` -> the version's resource name (a
    docker image's versions are named by their digest); None for a reference without a
    digest or outside Artifact Registry."""
    repository, at, digest = ref.partition("@")
    if not at or not digest.startswith("sha256:"):
        return None
    try:
        return f"{package_resource(repository)}/versions/{digest}"
    except DeployError:
        return None


def _registry_client() -> Any:
    from google.cloud import artifactregistry_v1

    return artifactregistry_v1.ArtifactRegistryClient()


class ArtifactRegistryDigests:
    """``client``: an ``artifactregistry_v1.ArtifactRegistryClient`` (default: Google's, made
    on first use with Application Default Credentials)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client if client is not None else LazyClient(_registry_client)

    def digest_exists(self, ref: str) -> bool | None:
        """True: the version exists; False: Artifact Registry says NOT_FOUND (deleted, e.g. by
        the cleanup policy); None: unknown (not a registry digest, or the lookup failed for
        another reason: permission, network), which never refuses a rollback on its own."""
        from google.api_core import exceptions as gexc

        name = version_resource(ref)
        if name is None:
            return None
        try:
            self._client.get_version(name=name, timeout=TIMEOUT_S)
        except gexc.NotFound:
            return False
        except Exception:  # noqa: BLE001 - GoogleAPICallError, no credentials: unknown
            return None
        return True
