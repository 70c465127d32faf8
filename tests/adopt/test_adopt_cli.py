"""``platform adopt --stack prod`` end to end: Google's Pub/Sub emulator holds some of the
prod topics and subscriptions (created first with the official client, under the physical
names the plan uses); no credentials exist for anything else."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from scripts.adopt import NO_CREDENTIALS
from scripts.platform_cli import app

PROJECT = "nba-props-platform"
P = f"projects/{PROJECT}"
#: What the emulator holds: (type, logical name, import id, parent key).
EXISTING = [
    (
        "gcp:pubsub/topic:Topic",
        "prediction-request",
        f"{P}/topics/prediction-request-prod",
        "Topic:prediction-request",
    ),
    (
        "gcp:pubsub/topic:Topic",
        "prediction-ready-dead-letter",
        f"{P}/topics/prediction-ready-prod-dead-letter",
        "Topic:prediction-ready",
    ),
    (
        "gcp:pubsub/subscription:Subscription",
        "prediction-request-worker",
        f"{P}/subscriptions/prediction-request-worker-prod",
        "Topic:prediction-request",
    ),
]

pytestmark = pytest.mark.timeout(120)


def _environment(monkeypatch, tmp_path, *, pubsub: str | None = None, firestore: str | None = None):
    """Only the emulators given (``host:port``), and no credentials of any kind: no key file,
    an empty gcloud config, no metadata server."""
    for var, host in (("PUBSUB_EMULATOR_HOST", pubsub), ("FIRESTORE_EMULATOR_HOST", firestore)):
        if host is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, host)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")


@pytest.fixture
def emulator_holding_some(pubsub_emulator, monkeypatch, tmp_path):
    _environment(monkeypatch, tmp_path, pubsub=pubsub_emulator.host)
    from google.api_core.exceptions import AlreadyExists
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(credentials=AnonymousCredentials())
    subscriber = pubsub_v1.SubscriberClient(credentials=AnonymousCredentials())
    try:
        # The emulator is shared by the session: start from an empty project, so "exactly
        # those" means what this fixture created (another test leaves its own topics behind).
        for sub in subscriber.list_subscriptions(request={"project": P}, timeout=10):
            subscriber.delete_subscription(request={"subscription": sub.name}, timeout=10)
        for topic in publisher.list_topics(request={"project": P}, timeout=10):
            publisher.delete_topic(request={"topic": topic.name}, timeout=10)
        for type_, _name, rid, _parent in EXISTING:
            try:
                if type_.endswith("Topic"):
                    publisher.create_topic(request={"name": rid}, timeout=10)
                else:
                    subscriber.create_subscription(
                        request={"name": rid, "topic": f"{P}/topics/prediction-request-prod"},
                        timeout=10,
                    )
            except AlreadyExists:
                pass
    finally:
        publisher.transport.close()
        subscriber.close()
    return tmp_path


def _run(tmp_path, *extra):
    out = tmp_path / "import.json"
    result = CliRunner().invoke(
        app, ["adopt", "--stack", "prod", "--out", str(out), "--json", *extra]
    )
    return result, out


def test_import_file_lists_exactly_what_exists(emulator_holding_some, prod_plan):
    result, out = _run(emulator_holding_some)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    doc = json.loads(out.read_text())
    # Sorted by type and name: the same file on every run, whatever order the plan came in.
    assert [(r["type"], r["name"], r["id"], r.get("parent")) for r in doc["resources"]] == sorted(
        EXISTING
    )
    components = {
        (r.type.rsplit(":", 1)[-1], r.name): r.urn for r in prod_plan.resources if not r.custom
    }
    assert doc["nameTable"] == {
        "Topic:prediction-request": components[("Topic", "prediction-request")],
        "Topic:prediction-ready": components[("Topic", "prediction-ready")],
    }

    report = json.loads(result.stdout)
    rows = {(r["type"], r["name"]): r for r in report["resources"]}
    # The prod topics and subscriptions the emulator does not hold: to create.
    for name in ("prediction-ready", "prediction-request-dead-letter"):
        assert rows[("gcp:pubsub/topic:Topic", name)]["status"] == "create"
    for name in ("prediction-ready-coordinator", "prediction-request-dead-letter"):
        assert rows[("gcp:pubsub/subscription:Subscription", name)]["status"] == "create"
    # Cloud-only services: could not check, with the reason.
    for key in (
        ("gcp:cloudrunv2/service:Service", "prediction-worker"),
        ("gcp:secretmanager/secret:Secret", "coordinator-api-key"),
        ("gcp:firestore/database:Database", "firestore"),
        ("gcp:serviceaccount/account:Account", "prediction-worker-runtime"),
    ):
        assert rows[key]["status"] == "unchecked", rows[key]
        assert rows[key]["reason"].startswith(NO_CREDENTIALS), rows[key]
    member = rows[
        (
            "gcp:pubsub/topicIAMMember:TopicIAMMember",
            "prediction-request-publisher-prediction-coordinator",
        )
    ]
    assert member["status"] == "unchecked" and "emulator has no IAM" in member["reason"]
    assert report["counts"]["import"] == len(EXISTING)
    assert report["ok"] is True


def test_strict_fails_on_what_could_not_be_checked(emulator_holding_some):
    result, out = _run(emulator_holding_some, "--strict")
    assert result.exit_code == 1, result.output
    assert out.exists()  # the file is still written
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["counts"]["unchecked"] > 0


def test_human_table_reads_at_80_columns(emulator_holding_some):
    out = emulator_holding_some / "import.json"
    result = CliRunner().invoke(
        app, ["adopt", "--stack", "prod", "--out", str(out)], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
    assert "no credentials" in result.output and "import" in result.output


def test_usage_errors_exit_64(tmp_path):
    result = CliRunner().invoke(app, ["adopt", "--out", str(tmp_path / "f")])
    assert result.exit_code == 64, result.output
    result = CliRunner().invoke(app, ["adopt", "--stack", "prod"])
    assert result.exit_code == 64, result.output


def test_the_runbook_section_the_cli_names_exists():
    from infra.paths import REPO_ROOT

    runbook = (REPO_ROOT / "docs" / "runbooks.md").read_text()
    assert "\n## Adopting the hand-deployed production\n" in runbook
    assert "platform adopt --stack prod --out adopt-prod.json --strict" in runbook


def test_without_emulators_or_credentials_nothing_is_checked_and_nothing_hangs(
    monkeypatch, tmp_path
):
    _environment(monkeypatch, tmp_path)
    result, out = _run(tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["import"] == 0
    assert json.loads(out.read_text()) == {"nameTable": {}, "resources": []}
    topics = [r for r in report["resources"] if r["type"] == "gcp:pubsub/topic:Topic"]
    assert topics and all(r["reason"].startswith(NO_CREDENTIALS) for r in topics), topics


def test_firestore_emulator_database_is_found(firestore_emulator, monkeypatch, tmp_path):
    _environment(monkeypatch, tmp_path, firestore=firestore_emulator.host)
    result, out = _run(tmp_path)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert [(r["type"], r["name"], r["id"], r["parent"]) for r in doc["resources"]] == [
        (
            "gcp:firestore/database:Database",
            "firestore",
            f"{P}/databases/(default)",
            "Database:batch-state",
        )
    ]


def test_an_unreachable_emulator_is_reported_per_resource_not_raised(monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _environment(monkeypatch, tmp_path, pubsub=f"127.0.0.1:{port}")
    result, _out = _run(tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    pubsub = [r for r in report["resources"] if r["type"].startswith("gcp:pubsub/topic:")]
    assert pubsub and all(r["status"] == "unchecked" for r in pubsub), pubsub
    assert all(r["reason"].startswith("unreachable") for r in pubsub), pubsub
