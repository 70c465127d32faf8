"""Fan one event out to every configured channel; failures become warnings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._events import DeployEvent
from ._github import GitHubDeployments, GitHubError
from ._webhook import Webhook, WebhookError

__all__ = ["Notifier", "NotifyWarning"]


@dataclass(frozen=True)
class NotifyWarning:
    channel: str  # "webhook" | "github"
    event: str
    message: str  # never a URL or a token

    def __str__(self) -> str:
        return f"{self.channel}: {self.event} not delivered: {self.message}"


class Notifier:
    """Best-effort announcements: :meth:`send` never raises for a delivery problem."""

    def __init__(
        self, *, webhook: Webhook | None = None, github: GitHubDeployments | None = None
    ) -> None:
        self.webhook = webhook
        self.github = github
        self.sent: list[str] = []  # event kinds delivered to at least one channel

    @classmethod
    def from_environment(
        cls, *, webhook_url: str | None = None, environ: Mapping[str, str] | None = None
    ) -> tuple[Notifier, list[NotifyWarning]]:
        """``webhook_url`` (e.g. read from the stack's Secret Manager secret) wins over
        ``PLATFORM_NOTIFY_WEBHOOK``; GitHub deployments when running in GitHub Actions."""
        warnings: list[NotifyWarning] = []
        webhook = None
        try:
            webhook = Webhook(webhook_url) if webhook_url else Webhook.from_environment(environ)
        except WebhookError as exc:
            warnings.append(NotifyWarning("webhook", "setup", str(exc)))
        return cls(webhook=webhook, github=GitHubDeployments.from_environment(environ)), warnings

    @property
    def channels(self) -> list[str]:
        return [name for name, ch in (("webhook", self.webhook), ("github", self.github)) if ch]

    def send(self, event: DeployEvent) -> list[NotifyWarning]:
        warnings: list[NotifyWarning] = []
        delivered = False
        for name, channel, errors in (
            ("webhook", self.webhook, (WebhookError,)),
            ("github", self.github, (GitHubError, KeyError, ValueError, TypeError)),
        ):
            if channel is None:
                continue
            try:
                channel.post(event)
                delivered = True
            except errors as exc:
                warnings.append(NotifyWarning(name, str(event.kind), str(exc)))
        if delivered:
            self.sent.append(str(event.kind))
        return warnings
