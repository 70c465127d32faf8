"""Who is told: one notification channel per address, a Slack channel, a webhook."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig
from infra.options import child_options

__all__ = ["NotificationChannels", "NotificationChannelsArgs"]


@dataclass(frozen=True)
class NotificationChannelsArgs:
    stack: StackConfig
    # The values of the platform secrets the channels name (Pulumi config secrets; the Secret
    # components keep them in Secret Manager). Only the channels' own keys are read.
    secret_values: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class NotificationChannels(pulumi.ComponentResource):
    """The stack's notification channels, from ``platform.monitoring.notify``.

    Channels are granted nothing: Cloud Monitoring sends email, Slack and webhook
    notifications itself. A channel's credential is a secret of its own (config refuses one a
    service also reads), passed as a Pulumi secret, never in plain state or diffs.
    https://cloud.google.com/monitoring/support/notification-options
    """

    channel_ids: list[pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        args: NotificationChannelsArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("platform:index:NotificationChannels", name, None, opts)
        cfg = args.stack
        mon = cfg.platform.monitoring
        child = child_options(self, opts)
        notify = mon.notify if mon is not None else None

        def channel(resource: str, shown: str, **settings: object) -> None:
            channels.append(
                gcp.monitoring.NotificationChannel(
                    resource,
                    project=cfg.project,
                    display_name=f"[{cfg.stack}] {shown}",
                    opts=child,
                    **settings,
                )
            )

        channels: list[gcp.monitoring.NotificationChannel] = []
        for address in notify.emails if notify else ():
            channel(
                f"notify-email-{address}",
                address,
                type="email",
                labels={"email_address": address},
            )
        if notify is not None and notify.slack is not None:
            channel(
                "notify-slack",
                f"Slack {notify.slack.channel}",
                type="slack",
                labels={"channel_name": notify.slack.channel},
                sensitive_labels=gcp.monitoring.NotificationChannelSensitiveLabelsArgs(
                    auth_token=pulumi.Output.secret(args.secret_values[notify.slack.token_secret])
                ),
            )
        if notify is not None and notify.webhook is not None:
            channel(
                "notify-webhook",
                "webhook",
                # The token travels in the URL (webhook_tokenauth): the URL is the secret.
                type="webhook_tokenauth",
                labels={"url": pulumi.Output.secret(args.secret_values[notify.webhook.url_secret])},
            )
        # `name` is projects/<p>/notificationChannels/<id>: what an alert policy lists.
        self.channel_ids = [c.name for c in channels]
        self.register_outputs({"channel_ids": self.channel_ids})
