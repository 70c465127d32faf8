"""Deploy notifications against a real HTTP server on loopback."""

from __future__ import annotations

import socket

from scripts.notify import (
    WEBHOOK_ENV,
    DeployEvent,
    EventKind,
    GitHubDeployments,
    Notifier,
)

SECRET_PATH = "/services/T000/B000/s3cr3t-hook-token"


def _event(kind: EventKind, **extra) -> DeployEvent:
    return DeployEvent(
        kind=kind,
        stack="prod",
        commit="0123456789abcdef0123",
        who="ci@example.com",
        deployment_id="prod-20261201T120000-abcd",
        lock_token=7,
        images={"prediction-worker": "r/worker@sha256:" + "a" * 64},
        ci_run_url="https://github.com/o/r/actions/runs/1",
        **extra,
    )


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET_PATH}"


def test_webhook_posts_event_and_slack_text(http_server):
    notifier, warnings = Notifier.from_environment(
        environ={WEBHOOK_ENV: http_server.url + SECRET_PATH}
    )
    assert warnings == [] and notifier.channels == ["webhook"]
    for kind in (EventKind.STARTED, EventKind.SUCCEEDED):
        assert notifier.send(_event(kind)) == []
    assert [r.body["event"] for r in http_server.requests] == ["started", "succeeded"]
    first = http_server.requests[0]
    assert first.path == SECRET_PATH
    text = first.body["text"]
    assert "prod" in text and "0123456789ab" in text and "ci@example.com" in text
    assert "lock token 7" in text and "r/worker@sha256:" in text
    assert "https://github.com/o/r/actions/runs/1" in text
    assert first.body["lock_token"] == 7 and first.body["images"]


def test_a_failing_webhook_is_a_warning_that_never_shows_the_url(http_server):
    http_server.status = 500
    notifier, _ = Notifier.from_environment(environ={WEBHOOK_ENV: http_server.url + SECRET_PATH})
    warnings = notifier.send(_event(EventKind.FAILED, error="verify failed"))
    assert len(warnings) == 1 and "HTTP 500" in str(warnings[0])
    assert "s3cr3t" not in str(warnings[0]) and "s3cr3t" not in repr(notifier.webhook)


def test_an_unreachable_webhook_is_a_warning_not_an_exception():
    notifier, _ = Notifier.from_environment(environ={WEBHOOK_ENV: _closed_port_url()})
    warnings = notifier.send(_event(EventKind.STARTED))
    assert len(warnings) == 1 and "not reachable" in warnings[0].message
    assert "s3cr3t" not in str(warnings[0]) and "127.0.0.1" not in str(warnings[0])
    assert notifier.sent == []


def test_a_malformed_webhook_url_is_a_setup_warning_without_the_value():
    notifier, warnings = Notifier.from_environment(environ={WEBHOOK_ENV: "not a url s3cr3t"})
    assert notifier.webhook is None
    assert len(warnings) == 1 and "s3cr3t" not in str(warnings[0])


def test_github_deployment_and_statuses_through_the_rest_api(http_server):
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_TOKEN": "ghs_tok3n",
        "GITHUB_REPOSITORY": "acme/platform",
        "GITHUB_API_URL": http_server.url,
    }
    notifier, _ = Notifier.from_environment(environ=env)
    assert notifier.channels == ["github"]
    for kind in (EventKind.STARTED, EventKind.FAILED, EventKind.ROLLED_BACK):
        assert notifier.send(_event(kind, error="check failed", rollback_of="prod-1")) == []
    paths = [r.path for r in http_server.requests]
    assert paths == [
        "/repos/acme/platform/deployments",
        "/repos/acme/platform/deployments/42/statuses",
        "/repos/acme/platform/deployments/42/statuses",
        "/repos/acme/platform/deployments/42/statuses",
    ]
    created = http_server.requests[0]
    assert created.headers["authorization"] == "Bearer ghs_tok3n"
    assert created.headers["x-github-api-version"] == "2022-11-28"
    assert created.body["ref"] == "0123456789abcdef0123" and created.body["environment"] == "prod"
    assert created.body["required_contexts"] == [] and created.body["auto_merge"] is False
    states = [r.body["state"] for r in http_server.requests[1:]]
    assert states == ["in_progress", "failure", "failure"]
    assert "rolled back to prod-1" in http_server.requests[3].body["description"]
    assert http_server.requests[1].body["log_url"] == "https://github.com/o/r/actions/runs/1"
    assert "ghs_tok3n" not in repr(notifier.github)


def test_github_is_off_outside_actions_and_without_a_token():
    assert GitHubDeployments.from_environment({"GITHUB_TOKEN": "x"}) is None
    assert GitHubDeployments.from_environment({"GITHUB_ACTIONS": "true"}) is None


def test_github_errors_are_warnings(http_server):
    http_server.status = 403
    gh = GitHubDeployments(repository="acme/platform", token="t", api_url=http_server.url)
    warnings = Notifier(github=gh).send(_event(EventKind.STARTED))
    assert len(warnings) == 1 and "HTTP 403" in warnings[0].message
