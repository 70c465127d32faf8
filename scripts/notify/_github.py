"""GitHub deployments for the environment a deploy targets, with the workflow's token.

Documented at https://docs.github.com/en/rest/deployments/deployments and
https://docs.github.com/en/rest/deployments/statuses: ``POST /repos/{repo}/deployments``
creates the deployment (``ref`` the commit, ``environment`` the stack), then one
``POST .../deployments/{id}/statuses`` per transition. The workflow needs
``permissions: deployments: write`` and passes ``GITHUB_TOKEN``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx

from ._events import DeployEvent, EventKind

__all__ = ["GitHubDeployments", "GitHubError"]

TIMEOUT_S = 10.0
API_VERSION = "2022-11-28"
#: Deployment status per event (GitHub's states: error, failure, inactive, in_progress,
#: queued, pending, success).
STATE = {
    EventKind.STARTED: "in_progress",
    EventKind.SUCCEEDED: "success",
    EventKind.FAILED: "failure",
    EventKind.ROLLED_BACK: "failure",
}


class GitHubError(Exception):
    """A request to GitHub's API failed; the message never contains the token."""


class GitHubDeployments:
    def __init__(
        self,
        *,
        repository: str,
        token: str,
        api_url: str = "https://api.github.com",
        client: httpx.Client | None = None,
    ) -> None:
        self.repository = repository
        self._token = token
        self.api_url = api_url.rstrip("/")
        self._client = client or httpx.Client(timeout=TIMEOUT_S)
        self.deployment_id: int | None = None

    def __repr__(self) -> str:
        return f"GitHubDeployments({self.repository!r}, token=<redacted>)"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> GitHubDeployments | None:
        """From a GitHub Actions run (``GITHUB_ACTIONS=true`` with ``GITHUB_TOKEN`` passed in);
        ``None`` anywhere else."""
        env = environ if environ is not None else os.environ
        if env.get("GITHUB_ACTIONS") != "true":
            return None
        token, repo = env.get("GITHUB_TOKEN", ""), env.get("GITHUB_REPOSITORY", "")
        if not token or not repo:
            return None
        return cls(
            repository=repo,
            token=token,
            api_url=env.get("GITHUB_API_URL", "https://api.github.com"),
        )

    def _post(self, path: str, body: dict) -> dict:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        try:
            response = self._client.post(f"{self.api_url}{path}", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise GitHubError(f"GitHub API not reachable ({type(exc).__name__})") from None
        if response.status_code >= 300:
            raise GitHubError(f"GitHub API answered HTTP {response.status_code} for {path}")
        return response.json()

    def post(self, event: DeployEvent) -> None:
        repo = f"/repos/{self.repository}"
        if self.deployment_id is None:
            created = self._post(
                f"{repo}/deployments",
                {
                    "ref": event.commit,
                    "environment": event.stack,
                    "description": f"deploy of {event.stack} by {event.who}",
                    # The deploy pipeline ran its own checks: GitHub must not refuse the
                    # deployment for commit statuses or try to merge the default branch.
                    "auto_merge": False,
                    "required_contexts": [],
                    "production_environment": event.stack == "prod",
                },
            )
            self.deployment_id = int(created["id"])
        body = {"state": STATE[event.kind], "description": _description(event)}
        if event.ci_run_url:
            body["log_url"] = event.ci_run_url
        self._post(f"{repo}/deployments/{self.deployment_id}/statuses", body)


def _description(event: DeployEvent) -> str:
    # GitHub limits a status description to 140 characters.
    text = {
        EventKind.STARTED: "deploy started",
        EventKind.SUCCEEDED: "deployed and verified",
        EventKind.FAILED: f"failed: {event.error or 'see the run'}",
        EventKind.ROLLED_BACK: f"rolled back to {event.rollback_of or 'the last good release'}",
    }[event.kind]
    return text[:140]
