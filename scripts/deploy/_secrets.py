"""Secret Manager, read by the deploy: the coordinator's API key (the post-deploy check) and
the notification webhook's URL (``deploy.notify.webhook_url_secret``).

Both values are credentials: no message here ever contains one, only the secret's name.
"""

from __future__ import annotations

from typing import Any

from ._errors import DeployError
from ._lazyclient import LazyClient

__all__ = ["SecretManagerSecrets", "SecretUnavailable"]

TIMEOUT_S = 30.0


def _secret_manager_client() -> Any:
    from google.cloud import secretmanager_v1

    return secretmanager_v1.SecretManagerServiceClient()


class SecretUnavailable(DeployError):
    """A secret could not be read; the message names the secret and why, never a value."""


class SecretManagerSecrets:
    """``client``: a ``secretmanager_v1.SecretManagerServiceClient`` (default: Google's, made
    on first use with Application Default Credentials)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client if client is not None else LazyClient(_secret_manager_client)

    def read(self, project: str, secret: str, *, version: str = "latest") -> str:
        """The secret's value (UTF-8, surrounding whitespace stripped); ``latest`` is Secret
        Manager's alias for the newest enabled version
        (https://cloud.google.com/secret-manager/docs/access-secret-version)."""
        from google.api_core import exceptions as gexc

        name = f"projects/{project}/secrets/{secret}/versions/{version}"
        try:
            response = self._client.access_secret_version(name=name, timeout=TIMEOUT_S)
        except gexc.NotFound:
            raise SecretUnavailable(
                f"Secret Manager secret '{secret}' of project '{project}' does not exist or "
                f"has no version '{version}'"
            ) from None
        except gexc.PermissionDenied:
            raise SecretUnavailable(
                f"Secret Manager secret '{secret}' of project '{project}': permission denied "
                "(the deploy identity needs secretmanager.versions.access on it)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - no credentials, a transport problem
            raise SecretUnavailable(
                f"Secret Manager secret '{secret}' of project '{project}' could not be read "
                f"({type(exc).__name__})"
            ) from None
        try:
            value = bytes(response.payload.data).decode("utf-8").strip()
        except UnicodeDecodeError:
            raise SecretUnavailable(
                f"Secret Manager secret '{secret}' of project '{project}' is not UTF-8 text"
            ) from None
        if not value:
            raise SecretUnavailable(
                f"Secret Manager secret '{secret}' of project '{project}' is empty"
            )
        return value
