"""A JSON webhook (a Slack incoming webhook, or anything that takes a POST)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import httpx

from ._events import DeployEvent

__all__ = ["WEBHOOK_ENV", "Webhook", "WebhookError"]

WEBHOOK_ENV = "PLATFORM_NOTIFY_WEBHOOK"
#: A chat message must not hold up a deploy: one short attempt, then a warning.
TIMEOUT_S = 5.0


class WebhookError(Exception):
    """Delivery failed; the message never contains the URL (it is a credential)."""


class Webhook:
    def __init__(self, url: str, *, client: httpx.Client | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise WebhookError("the webhook URL is not an http(s) URL")
        self._url = url
        self._client = client

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Webhook | None:
        url = (environ if environ is not None else os.environ).get(WEBHOOK_ENV, "").strip()
        return cls(url) if url else None

    def __repr__(self) -> str:  # never the URL, not even in a traceback's locals
        return "Webhook(<redacted>)"

    def post(self, event: DeployEvent) -> None:
        try:
            if self._client is not None:
                response = self._client.post(self._url, json=event.to_payload())
            else:
                response = httpx.post(self._url, json=event.to_payload(), timeout=TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise WebhookError(f"webhook not reachable ({type(exc).__name__})") from None
        if response.status_code >= 300:
            raise WebhookError(f"webhook answered HTTP {response.status_code}")
