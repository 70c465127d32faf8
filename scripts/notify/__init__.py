"""Deploy notifications: a webhook (Slack-compatible) and GitHub deployments.

A deploy announces ``started``, ``succeeded``, ``failed`` and ``rolled_back``. Delivery is
best effort by design: a notification that cannot be delivered becomes a warning (in the
output and the deployment record), never a failed deploy, and no message ever contains the
webhook URL (it is a credential: whoever has it can post to the channel).

    notifier = Notifier.from_environment(webhook_url=None)   # PLATFORM_NOTIFY_WEBHOOK, GITHUB_*
    warnings = notifier.send(DeployEvent(kind=EventKind.STARTED, stack="prod", ...))
"""

from ._events import DeployEvent, EventKind
from ._github import GitHubDeployments
from ._notifier import Notifier, NotifyWarning
from ._webhook import WEBHOOK_ENV, Webhook

__all__ = [
    "DeployEvent",
    "EventKind",
    "GitHubDeployments",
    "Notifier",
    "NotifyWarning",
    "WEBHOOK_ENV",
    "Webhook",
]
