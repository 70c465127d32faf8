"""The cloud adapters of the post-deploy sequence, each against the service it calls: Secret
Manager and Artifact Registry on in-process gRPC servers speaking Google's own definitions
(tests/fakegcp), the coordinator's HTTP API on a loopback server, the dead letters on Google's
Pub/Sub emulator. And where the deploy announces itself (the webhook secret)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import httpx
import pytest

from scripts.deploy import (
    ArtifactRegistryDigests,
    CloudSyntheticCheck,
    CloudTarget,
    SecretManagerSecrets,
    SecretUnavailable,
    ServiceRef,
    StackInfo,
    StackService,
    deploy_notifier,
)
from scripts.deploy._cloudcheck import service_audience
from scripts.deploy._registry import version_resource
from scripts.notify import DeployEvent, EventKind
from scripts.rollout import CheckPolicy
from tests.deploy.doubles import FakeEngine, FakeInspector, digest
from tests.fakegcp import FakeArtifactRegistry, FakeSecretManager

PROJECT = "demo-proj"
REPO = f"us-west2-docker.pkg.dev/{PROJECT}/platform-images"
KEY = "s3cret-api-key"
HOOK_PATH = "/hooks/T000/B000/very-secret-token"
POLICY = CheckPolicy(items=5, timeout=timedelta(seconds=30))


def _info(*, api_key_secret="prod-coordinator-api-key", dead_letters=(), deploy=None):
    services = {
        n: StackService(n, ServiceRef(n, n, PROJECT, "us-west2"), None)
        for n in ("prediction-coordinator", "prediction-worker")
    }
    return StackInfo(
        "prod",
        PROJECT,
        "us-west2",
        services,
        deploy=deploy,
        coordinator="prediction-coordinator",
        api_key_secret=api_key_secret,
        dead_letter_subscriptions=tuple(dead_letters),
    )


# -- Secret Manager ----------------------------------------------------------------------------


def test_secret_manager_reads_the_latest_version_and_names_secrets_never_values():
    with FakeSecretManager() as fake:
        fake.put(PROJECT, "api-key", "old-value")
        fake.put(PROJECT, "api-key", KEY + "\n")
        secrets = SecretManagerSecrets(fake.client())
        assert secrets.read(PROJECT, "api-key") == KEY  # the newest, whitespace stripped
        assert secrets.read(PROJECT, "api-key", version="1") == "old-value"
        assert [r.name for r in fake.requests("AccessSecretVersion")] == [
            f"projects/{PROJECT}/secrets/api-key/versions/latest",
            f"projects/{PROJECT}/secrets/api-key/versions/1",
        ]
        with pytest.raises(SecretUnavailable) as missing:
            secrets.read(PROJECT, "nope")
        fake.fail("AccessSecretVersion", grpc.StatusCode.PERMISSION_DENIED, "denied")
        with pytest.raises(SecretUnavailable) as denied:
            secrets.read(PROJECT, "api-key")
    assert "'nope'" in str(missing.value) and "does not exist" in str(missing.value)
    assert "permission denied" in str(denied.value) and "'api-key'" in str(denied.value)
    assert "secretmanager.versions.access" in str(denied.value)
    assert KEY not in str(denied.value) and "old-value" not in str(missing.value)


def test_an_empty_secret_is_refused():
    with FakeSecretManager() as fake:
        fake.put(PROJECT, "empty", "  \n")
        with pytest.raises(SecretUnavailable, match="'empty' of project 'demo-proj' is empty"):
            SecretManagerSecrets(fake.client()).read(PROJECT, "empty")


# -- Artifact Registry -------------------------------------------------------------------------


def test_a_digest_exists_is_gone_or_is_unknown():
    ref = f"{REPO}/prediction-worker@{digest('a')}"
    name = version_resource(ref)
    assert name == (
        f"projects/{PROJECT}/locations/us-west2/repositories/platform-images"
        f"/packages/prediction-worker/versions/{digest('a')}"
    )
    with FakeArtifactRegistry() as fake:
        fake.versions.add(name)
        registry = ArtifactRegistryDigests(fake.client())
        assert registry.digest_exists(ref) is True
        # Deleted (the cleanup policy keeps the 20 newest): NOT_FOUND.
        assert registry.digest_exists(f"{REPO}/prediction-worker@{digest('b')}") is False
        assert [r.name for r in fake.requests("GetVersion")][0] == name
        # Another failure is not evidence that the image is gone.
        fake.fail("GetVersion", grpc.StatusCode.PERMISSION_DENIED, "artifactregistry.versions.get")
        assert registry.digest_exists(ref) is None
    # Not a registry digest: nothing to ask.
    assert registry.digest_exists(f"{REPO}/prediction-worker:latest") is None
    assert registry.digest_exists(f"docker.io/library/python@{digest('c')}") is None


def test_the_cloud_target_asks_the_registry_before_a_rollback():
    with FakeArtifactRegistry() as fake:
        target = CloudTarget(
            engine=FakeEngine(),
            inspector=FakeInspector(),
            firestore_factory=lambda info: None,
            registry=ArtifactRegistryDigests(fake.client()),
        )
        assert target.image_exists(f"{REPO}/prediction-worker@{digest('a')}") is False
        assert len(fake.requests("GetVersion")) == 1


# -- the synthetic batch at the coordinator ----------------------------------------------------


class Coordinator:
    """What the loopback server answers as the coordinator: /start takes the batch when the
    key is right, /status reports it running once, then ``final``."""

    def __init__(self, final: dict) -> None:
        self.final = final
        self.polls = 0

    def __call__(self, request):
        if request.method == "POST" and request.path == "/start":
            if request.headers.get("x-api-key") != KEY:
                return 401, {"detail": "invalid API key"}
            self.batch_id = request.body["batch_id"]
            return 202, {"batch_id": self.batch_id, "state": "publishing"}
        if request.method == "GET" and request.path.startswith("/status/"):
            self.polls += 1
            if self.polls == 1:
                return 200, {"state": "running", "completed": 1, "failed": 0}
            return 200, self.final
        return 404, {"detail": "not found"}


def _runner(fake_secrets, tokens, *, subscriber=None):
    return CloudSyntheticCheck(
        secrets=SecretManagerSecrets(fake_secrets.client()),
        id_token=lambda audience: tokens.append(audience) or "id-token-for-test",
        subscriber=subscriber,
        http=httpx.Client(timeout=10),
        sleep=lambda _s: None,
    )


def test_the_check_starts_a_synthetic_batch_with_the_key_and_an_id_token(http_server):
    coordinator = Coordinator({"state": "completed", "completed": 5, "failed": 0})
    http_server.route = coordinator
    tokens: list[str] = []
    lines: list[str] = []
    with FakeSecretManager() as secrets:
        secrets.put(PROJECT, "prod-coordinator-api-key", KEY)
        result = _runner(secrets, tokens)(http_server.url, POLICY, _info(), lines.append)
    assert result.ok, result.detail
    assert (result.predicted, result.items, result.dead_lettered) == (5, 5, 0)
    start = http_server.requests[0]
    assert start.path == "/start" and start.headers["x-api-key"] == KEY
    assert start.headers["authorization"] == "Bearer id-token-for-test"
    assert tokens == [http_server.url]
    # Marked synthetic, so an operator and the statistics tell them from real work.
    assert start.body["metadata"]["synthetic"] is True
    assert all(i["item_id"].startswith("synthetic-") for i in start.body["items"])
    assert len(start.body["items"]) == POLICY.items
    assert all(r.path == f"/status/{coordinator.batch_id}" for r in http_server.requests[1:])
    assert KEY not in "\n".join(lines)


def test_a_batch_whose_items_all_failed_fails_the_check(http_server):
    http_server.route = Coordinator({"state": "completed", "completed": 0, "failed": 5})
    with FakeSecretManager() as secrets:
        secrets.put(PROJECT, "prod-coordinator-api-key", KEY)
        result = _runner(secrets, [])(http_server.url, POLICY, _info())
    assert not result.ok and result.failed == 5
    assert "0 of 5 items predicted" in result.detail


def test_an_unreadable_api_key_fails_the_check_naming_the_secret(http_server):
    with FakeSecretManager() as secrets:  # the secret has no version
        result = _runner(secrets, [])(http_server.url, POLICY, _info())
    assert not result.ok and result.state == "not-started"
    assert "'prod-coordinator-api-key'" in result.detail
    assert http_server.requests == [], "nothing sent without the key"


def test_without_an_id_token_the_check_still_runs_and_fails_with_the_answer(http_server):
    def no_token(audience):
        raise RuntimeError("user credentials cannot mint an ID token")

    http_server.route = lambda r: (403, {"detail": "forbidden"})
    lines: list[str] = []
    with FakeSecretManager() as secrets:
        secrets.put(PROJECT, "prod-coordinator-api-key", KEY)
        runner = CloudSyntheticCheck(
            secrets=SecretManagerSecrets(secrets.client()), id_token=no_token
        )
        result = runner(http_server.url, POLICY, _info(), lines.append)
    assert not result.ok and "/start answered HTTP 403" in result.detail
    assert "authorization" not in http_server.requests[0].headers
    assert any("no ID token" in line for line in lines)


def test_the_audience_of_a_tag_url_is_the_services_own_url():
    # Cloud Run accepts the service's run.app URL as audience also for its tags' URLs.
    assert (
        service_audience("https://candidate---prediction-coordinator-abc-uw.a.run.app/")
        == "https://prediction-coordinator-abc-uw.a.run.app"
    )
    assert (
        service_audience("https://svc-123.us-west2.run.app") == "https://svc-123.us-west2.run.app"
    )


@pytest.mark.emulator
def test_dead_letters_of_the_batch_are_counted_and_left_in_place(pubsub_emulator, monkeypatch):
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    project = pubsub_emulator.project
    suffix = uuid.uuid4().hex[:8]
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, f"dead-{suffix}")
    subs = [f"dead-sub-{suffix}", f"dead-sub2-{suffix}"]
    publisher.create_topic(name=topic)
    for sub in subs:
        subscriber.create_subscription(name=subscriber.subscription_path(project, sub), topic=topic)
    for batch in ("synthetic-1", "synthetic-1", "other"):
        publisher.publish(topic, b"{}", batch_id=batch).result(timeout=30)
    info = StackInfo("prod", project, "us-west2", {}, dead_letter_subscriptions=tuple(subs))
    runner = CloudSyntheticCheck(secrets=SecretManagerSecrets(object()), subscriber=subscriber)
    try:
        assert runner.count_dead_letters(info, "synthetic-1") == 4  # 2 per subscription
        assert runner.count_dead_letters(info, "synthetic-1") == 4, "peek left them in place"
        assert runner.count_dead_letters(info, "synthetic-2") == 0
    finally:
        for sub in subs:
            subscriber.delete_subscription(subscription=subscriber.subscription_path(project, sub))
        publisher.delete_topic(topic=topic)
        subscriber.close()


# -- where the deploy announces itself ---------------------------------------------------------


def _deploy_config(secret):
    from infra.config import DeployNotifyConfig

    class Deploy:
        notify = DeployNotifyConfig(webhook_url_secret=secret)

    return Deploy()


def _event():
    return DeployEvent(kind=EventKind.STARTED, stack="prod", commit="a" * 40, who="ci")


def test_the_webhook_url_comes_from_the_stack_secret(http_server):
    info = _info(deploy=_deploy_config("deploy-webhook"))
    with FakeSecretManager() as secrets:
        secrets.put(PROJECT, "deploy-webhook", http_server.url + HOOK_PATH)
        notifier, warnings = deploy_notifier(
            info, secrets=SecretManagerSecrets(secrets.client()), environ={}
        )
        assert warnings == [] and notifier.channels == ["webhook"]
        assert notifier.send(_event()) == []
    assert [r.path for r in http_server.posted()] == [HOOK_PATH]
    assert "very-secret-token" not in repr(notifier.webhook)


def test_an_unreadable_webhook_secret_is_a_warning_and_the_environment_is_used(http_server):
    info = _info(deploy=_deploy_config("deploy-webhook"))
    with FakeSecretManager() as secrets:
        secrets.fail("AccessSecretVersion", grpc.StatusCode.PERMISSION_DENIED, "denied")
        notifier, warnings = deploy_notifier(
            info,
            secrets=SecretManagerSecrets(secrets.client()),
            environ={"PLATFORM_NOTIFY_WEBHOOK": http_server.url + "/env-hook"},
        )
    assert len(warnings) == 1 and "'deploy-webhook'" in warnings[0], warnings
    assert "permission denied" in warnings[0]
    assert notifier.send(_event()) == []
    assert [r.path for r in http_server.posted()] == ["/env-hook"]


def test_without_a_reader_only_the_environment_counts(http_server):
    # The local platform has no Secret Manager: PLATFORM_NOTIFY_WEBHOOK or nothing.
    info = _info(deploy=_deploy_config("deploy-webhook"))
    notifier, warnings = deploy_notifier(info, secrets=None, environ={})
    assert warnings == [] and notifier.channels == []
    notifier, _ = deploy_notifier(
        info, secrets=None, environ={"PLATFORM_NOTIFY_WEBHOOK": http_server.url + "/x"}
    )
    assert notifier.channels == ["webhook"]
