"""Where a deploy announces itself, from the stack config and the environment.

The webhook's URL is the one in the Secret Manager secret ``deploy.notify.webhook_url_secret``
names (in the stack's project) when the stack config names one and a reader is given (the
cloud), else ``PLATFORM_NOTIFY_WEBHOOK``; GitHub deployments when running in GitHub Actions
with ``GITHUB_TOKEN``. Nothing here fails a deploy: a secret that cannot be read is a warning
(and the environment's webhook, if any, is used instead); the URL is never printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scripts.notify import Notifier

from ._errors import DeployError
from ._stackinfo import StackInfo

__all__ = ["deploy_notifier"]


def deploy_notifier(
    info: StackInfo,
    *,
    secrets: Any = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Notifier, list[str]]:
    """(the notifier, setup warnings). ``secrets``: a :class:`SecretManagerSecrets` (None:
    the stack's secret is not read, e.g. on the local platform, which has no Secret Manager)."""
    warnings: list[str] = []
    url = None
    notify = getattr(getattr(info, "deploy", None), "notify", None)
    secret = getattr(notify, "webhook_url_secret", None)
    if secret and secrets is not None:
        try:
            url = secrets.read(info.project, secret)
        except DeployError as exc:
            warnings.append(f"webhook: not configured from deploy.notify.webhook_url_secret: {exc}")
    notifier, setup = Notifier.from_environment(
        webhook_url=url, environ=dict(environ) if environ is not None else None
    )
    return notifier, warnings + [str(w) for w in setup]
