"""The cloud alerts' local equivalents on the emulators (issue 17's local part).

Cloud Monitoring has no emulator: ``platform local status`` lists the alert policies,
channels, dashboard and log metric as not applied, and shows instead what the emulators can
measure: dead-letter depth (a peek that leaves the messages), stuck batches (the batch store's
``list_stuck``, as ``batches list-stuck`` runs it) and what it cannot count for push
subscriptions, each flagged where the declared cloud alert would fire with its runbook section.
Everything goes through the real pieces: a worker that fails one item until it is
dead-lettered, the coordinator's ``/start``, the ``batches`` and ``platform`` CLIs.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.local import NOT_APPLIED, LocalPlatform, demo_items
from tests.e2e.conftest import IDLE_WINDOW_S
from tests.polling import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

BIN = Path(sys.executable).parent
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbooks.md"
WORKER = "prediction-worker"
COORDINATOR = "prediction-coordinator"
REQUEST_SUB = "prediction-request-worker-prod"
REQUEST_DL_SUB = "prediction-request-prod-dead-letter-sub"
READY_DL_SUB = "prediction-ready-prod-dead-letter-sub"
MONITORING_TYPES = {
    "gcp:monitoring/alertPolicy:AlertPolicy": "AlertPolicy",
    "gcp:monitoring/notificationChannel:NotificationChannel": "NotificationChannel",
    "gcp:monitoring/dashboard:Dashboard": "Dashboard",
    "gcp:logging/metric:Metric": "Metric",
}


def _env(platform: LocalPlatform) -> dict[str, str]:
    return {
        **os.environ,
        **platform.emulator_env(),
        "NO_GCE_CHECK": "true",
        "GCP_PROJECT_ID": platform.state["project"],
        "COLUMNS": "80",
    }


def _cli(platform: LocalPlatform, tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / tool), *args],
        env=_env(platform),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _status_json(platform: LocalPlatform) -> dict:
    proc = _cli(platform, "platform", "local", "status", "--json", "--state-dir", _dir(platform))
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def _dir(platform: LocalPlatform) -> str:
    return str(platform.state_dir)


#: The polls here read the emulators or run the CLI: every 0.5 s unless a call says.
_wait = functools.partial(wait_for, interval=0.5)


def _by_name(rows: list[dict], key: str = "subscription") -> dict[str, dict]:
    return {r[key]: r for r in rows}


def test_not_applied_lists_the_monitoring_resources_with_the_reason(platform):
    status = platform.status(monitoring=False)
    kinds = {typ: note for typ, _names, note in status.notes}
    for full, short in MONITORING_TYPES.items():
        assert kinds.get(short) == NOT_APPLIED[full], (short, status.notes)
        assert "Cloud Monitoring has no emulator" in kinds[short], kinds[short]
    alerts = next(names for typ, names, _ in status.notes if typ == "AlertPolicy")
    assert alerts == "13 resources", alerts  # the prod plan's 13 policies, none dropped
    assert not [n for n in status.notes if "no local equivalent" in n[2]], status.notes

    notes = _cli(platform, "platform", "local", "status", "--notes", "--state-dir", _dir(platform))
    assert notes.returncode == 0, notes.stdout + notes.stderr
    flat = " ".join(notes.stdout.split())
    for short in MONITORING_TYPES.values():
        assert short in flat, notes.stdout
    assert "Cloud Monitoring has no emulator" in flat, notes.stdout


def test_dead_lettered_item_shows_depth_1_its_stuck_batch_and_both_alerts(platform):
    """One item the worker keeps failing is dead-lettered: its dead-letter subscription shows
    depth 1 and the dead-letter alert would fire; its batch makes no progress for the stall
    check's idle window and shows up stuck with the batches alert. Replayed once the worker
    is healthy, the depth is back to 0, the batch completes, and both are quiet."""
    before = _by_name(_status_json(platform)["monitoring"]["dead_letters"])
    assert before[REQUEST_DL_SUB]["depth"] == 0, before
    assert before[REQUEST_DL_SUB]["alert"]["fires"] is False, before

    flaky = "player-00003"
    platform.restart_service(WORKER, extra_env={"FAULT_TRANSIENT_ITEMS": flaky})
    try:
        platform.start_batch(demo_items(5), batch_id="e2e-monitor")
        _wait(
            lambda: platform.dead_letters(batch_id="e2e-monitor")[REQUEST_DL_SUB],
            timeout=90,
            what="the flaky item in the dead-letter subscription",
        )
        _wait(
            lambda: platform.batch_status("e2e-monitor")["idle_seconds"] >= IDLE_WINDOW_S + 0.5,
            timeout=30,
            what="the batch idle for the stall check's window",
        )
        status = _status_json(platform)
        mon = status["monitoring"]
        dead = _by_name(mon["dead_letters"])
        assert dead[REQUEST_DL_SUB]["depth"] == 1, dead
        assert dead[REQUEST_DL_SUB]["sources"] == [REQUEST_SUB], dead
        flag = dead[REQUEST_DL_SUB]["alert"]
        assert flag["fires"] is True, flag
        assert flag["section"] == "Alert: dead letters retained", flag
        assert flag["runbook"] == "docs/runbooks.md#alert-dead-letters-retained", flag
        assert dead[READY_DL_SUB]["depth"] == 0 and dead[READY_DL_SUB]["alert"]["fires"] is False
        # Peeked, not taken: the message is still there for the replay.
        assert len(platform.dead_letters(batch_id="e2e-monitor")[REQUEST_DL_SUB]) == 1

        stuck = mon["stuck"]
        assert stuck["idle_window_s"] == IDLE_WINDOW_S, stuck
        assert "STALL_IDLE_SECONDS" in stuck["window_from"], stuck
        (batch,) = [b for b in stuck["batches"] if b["batch_id"] == "e2e-monitor"]
        assert (batch["state"], batch["done"], batch["total_items"]) == ("running", 4, 5), batch
        assert stuck["alert"]["fires"] is True, stuck
        assert stuck["alert"]["section"] == "Alert: batches closed abnormally", stuck
        assert stuck["open_items"] >= 1 and stuck["active"] >= 1, stuck
        firing = {f["policy"] for f in mon["firing"]}
        assert firing >= {f"alert-dead-letters-{REQUEST_DL_SUB}", "alert-stuck-batches"}, firing

        push = _by_name(mon["push_backlog"])
        assert set(push) == {REQUEST_SUB, "prediction-ready-coordinator-prod"}, push
        assert push[REQUEST_SUB]["backlog"] is None and "snapshot" in push[REQUEST_SUB]["why"]
        assert push[REQUEST_SUB]["alert"]["fires"] is None, push

        # The same as an operator reads it, at 80 columns.
        human = _cli(platform, "platform", "local", "status", "--state-dir", _dir(platform))
        assert human.returncode == 0, human.stdout + human.stderr
        wide = [line for line in human.stdout.splitlines() if len(line) > 80]
        assert not wide, "\n".join(wide)
        flat = " ".join(human.stdout.split())
        for section in ("Alert: dead letters retained", "Alert: batches closed abnormally"):
            assert f'runbook: docs/runbooks.md "{section}"' in flat, human.stdout
        assert f"{REQUEST_DL_SUB} 1 would fire" in flat, human.stdout
        assert "e2e-monitor 4/5, idle" in flat, human.stdout
        for section in ("Alert: dead letters retained", "Alert: batches closed abnormally"):
            assert f"## {section}" in RUNBOOK.read_text(), section
    finally:
        platform.restart_service(WORKER, extra_env={})

    replay = _cli(platform, "batches", "dead-letters", "replay", REQUEST_DL_SUB, "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    final = platform.wait_batch("e2e-monitor", timeout=60)
    assert (final["state"], final["completed"]) == ("completed", 5), final
    after = _wait(
        lambda: (
            (m := _status_json(platform)["monitoring"])
            and _by_name(m["dead_letters"])[REQUEST_DL_SUB]["depth"] == 0
            and m
        ),
        timeout=30,
        what="the dead-letter subscription empty again",
    )
    assert _by_name(after["dead_letters"])[REQUEST_DL_SUB]["alert"]["fires"] is False, after
    assert not [b for b in after["stuck"]["batches"] if b["batch_id"] == "e2e-monitor"], after


def test_the_local_kinds_are_the_alert_kinds_infra_declares():
    from infra.monitoring import AlertKind
    from scripts.local import _monitoring

    assert _monitoring.LOCAL_KINDS == {
        AlertKind.DEAD_LETTERS,
        AlertKind.BACKLOG_AGE,
        AlertKind.STUCK_BATCHES,
    }
