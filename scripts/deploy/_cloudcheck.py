"""The post-deploy check in the cloud: a synthetic batch at the coordinator's URL (its
``candidate`` tag while the new revision serves 0%), as an operator's client would send it.

* the API key: the Secret Manager secret the stack config names for ``COORDINATOR_API_KEY``;
* the caller's identity: a Google-signed ID token for the coordinator
  (``google.oauth2.id_token.fetch_id_token``), whose audience is the service's own
  ``run.app`` URL: Cloud Run always accepts it, also for requests to a tag's URL
  (https://cloud.google.com/run/docs/configuring/custom-audiences);
* the dead letters: each dead-letter subscription of the stack read with
  ``shared.dead_letters.peek`` (messages left in place), counting the batch's own
  (attribute ``batch_id``).

What it exercises: Pub/Sub pushes reach the worker's serving URL, not a tag, so the batch
runs through the *new coordinator* and the worker revision that serves traffic; a new worker
revision is judged by the traffic steps' 5xx share (README, Deploy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from scripts.rollout import CheckPolicy, CheckResult, judge_check, run_synthetic_check

from ._errors import CheckFailed, DeployError
from ._secrets import SecretManagerSecrets
from ._stackinfo import StackInfo

__all__ = ["CloudSyntheticCheck", "DEAD_LETTER_PEEK", "service_audience"]

#: Dead letters read per subscription when counting the batch's (the API's pull maximum).
DEAD_LETTER_PEEK = 1000
#: Cloud Run's tag URLs are ``https://TAG---<the service's host>``
#: (https://cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration#tags).
TAG_SEPARATOR = "---"

OnOutput = Callable[[str], None]


def service_audience(url: str) -> str:
    """The service's own URL for a tag's URL (``https://candidate---svc-x.a.run.app`` ->
    ``https://svc-x.a.run.app``); other URLs as they are, without a path."""
    parts = urlsplit(url)
    host = parts.netloc.split(TAG_SEPARATOR, 1)[-1]
    return urlunsplit((parts.scheme, host, "", "", ""))


def fetch_id_token(audience: str) -> str:
    """A Google-signed ID token for ``audience`` from the environment (a service account key,
    the metadata server). Raises google.auth's errors when the credentials cannot mint one."""
    import google.auth.transport.requests
    from google.oauth2 import id_token

    return id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)


class CloudSyntheticCheck:
    """``CloudTarget(synthetic=...)``: ``check(url, policy, info, on_output)`` -> CheckResult.

    ``secrets``: reads the API key (:class:`SecretManagerSecrets`); ``id_token(audience)``:
    the caller's ID token (default :func:`fetch_id_token`; without one the check still runs,
    and a coordinator that requires it answers 401/403, which fails the check with the
    reason); ``subscriber``: a Pub/Sub ``SubscriberClient`` for the dead-letter peek (default
    made on first use); ``http``: an ``httpx.Client`` for the coordinator.
    """

    def __init__(
        self,
        *,
        secrets: SecretManagerSecrets | None = None,
        id_token: Callable[[str], str] | None = None,
        subscriber: Any = None,
        http: Any = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.secrets = secrets or SecretManagerSecrets()
        self._id_token = id_token or fetch_id_token
        self._subscriber = subscriber
        self._http = http
        self._sleep = sleep

    def _pubsub(self) -> Any:
        if self._subscriber is None:
            from google.cloud import pubsub_v1

            self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    def count_dead_letters(self, info: StackInfo, batch_id: str) -> int:
        """The batch's messages in the stack's dead-letter subscriptions (left in place).
        Raises :class:`CheckFailed` when one cannot be read: no count, no proof."""
        from shared.dead_letters import peek

        total = 0
        for subscription in info.dead_letter_subscriptions:
            try:
                letters = peek(
                    info.project,
                    subscription,
                    limit=DEAD_LETTER_PEEK,
                    subscriber=self._pubsub(),
                )
            except Exception as exc:  # noqa: BLE001 - permission, network: the check fails
                raise CheckFailed(
                    f"post-deploy check: cannot read dead-letter subscription '{subscription}' "
                    f"of project '{info.project}' ({type(exc).__name__}: {exc})"
                ) from None
            total += sum(1 for d in letters if d.attributes.get("batch_id") == batch_id)
        return total

    def _auth_header(self, url: str, say: OnOutput) -> dict[str, str]:
        audience = service_audience(url)
        try:
            token = self._id_token(audience)
        except Exception as exc:  # noqa: BLE001 - user credentials, no metadata server
            say(
                f"no ID token for {audience} ({type(exc).__name__}): calling the coordinator "
                "without one"
            )
            return {}
        return {"Authorization": f"Bearer {token}"} if token else {}

    def __call__(
        self,
        url: str,
        policy: CheckPolicy,
        info: StackInfo,
        on_output: OnOutput | None = None,
    ) -> CheckResult:
        say = on_output or (lambda _line: None)
        if not info.api_key_secret:
            return _not_run(policy, url, "the stack config names no API key secret for /start")
        try:
            api_key = self.secrets.read(info.project, info.api_key_secret)
        except DeployError as exc:
            return _not_run(policy, url, str(exc))
        kwargs: dict[str, Any] = {}
        if self._http is not None:
            kwargs["client"] = self._http
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        return run_synthetic_check(
            url,
            policy,
            api_key=api_key,
            count_dead_letters=lambda batch_id: self.count_dead_letters(info, batch_id),
            auth_header=self._auth_header(url, say),
            on_output=on_output,
            **kwargs,
        )


def _not_run(policy: CheckPolicy, url: str, why: str) -> CheckResult:
    result = judge_check(
        policy,
        batch_id=None,
        status={"state": "not-started"},
        dead_lettered=0,
        elapsed_s=0.0,
        target=url,
    )
    return CheckResult(**{**result.__dict__, "ok": False, "problems": (why, *result.problems)})
