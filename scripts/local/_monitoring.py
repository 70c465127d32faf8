"""The cloud alerts' local equivalents, computed from the emulators (``platform local status``).

Cloud Monitoring has no emulator: the alert policies, notification channels, dashboard and
log-based metric are not applied locally (``NOT_APPLIED`` in :mod:`._topology`). What the
emulators can show instead, each flagged where the declared cloud alert would fire and naming
that alert's section of ``docs/runbooks.md``:

* **dead-letter depth**: the messages each dead-letter subscription holds, counted with a peek
  that leaves them in place (pulled, then nacked). Alert "dead letters retained".
* **stuck batches**: active batches with no progress for the idle window the coordinator's
  stall check runs with, read from the Firestore emulator by the batch store's ``list_stuck``
  (what ``batches list-stuck`` runs). In the cloud, "batches closed abnormally" fires when the
  stall check then closes such a batch; a stuck batch is where that starts.
* **push backlog**: not countable on the emulator without taking messages from the push loop.
  Measured on Google's emulator: Pull on a push subscription returns nothing while its
  messages wait for a push, and a snapshot of one carries no backlog. What can be counted
  instead is the items of active batches with no outcome yet (published or queued, somewhere
  in the two push hops or in a service); the backlog-age alert is not judged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from scripts.local._topology import AlertWatch, Topology

__all__ = [
    "AlertFlag",
    "DeadLetterDepth",
    "PushBacklog",
    "StuckBatches",
    "MonitoringStatus",
    "watches",
    "monitoring_status",
    "PUSH_BACKLOG_UNCOUNTABLE",
]

#: Dead-letter messages counted per subscription at most (a depth at the cap is "at least").
DEPTH_PEEK = 1000
#: Why a push subscription's backlog is not counted locally (both measured on the emulator).
PUSH_BACKLOG_UNCOUNTABLE = (
    "not countable on the emulator without taking messages from its push loop: Pull on a "
    "push subscription returns nothing while they wait for a push, and a snapshot of one "
    "carries no backlog"
)

# infra.monitoring.AlertKind values (a test holds them to the enum).
DEAD_LETTERS = "dead-letters"
BACKLOG_AGE = "backlog-age"
STUCK_BATCHES = "stuck-batches"
LOCAL_KINDS = frozenset({DEAD_LETTERS, BACKLOG_AGE, STUCK_BATCHES})


@dataclass(frozen=True)
class AlertFlag:
    """A declared cloud alert and whether the local measure says it would fire."""

    kind: str
    policy: str
    condition: str  # the cloud condition, in words
    fires: bool | None  # None: the local measure cannot say
    section: str  # docs/runbooks.md section
    runbook: str  # docs/runbooks.md#anchor


def _flag(watch: AlertWatch | None, fires: bool | None) -> AlertFlag | None:
    if watch is None:
        return None
    return AlertFlag(watch.kind, watch.policy, watch.condition, fires, watch.section, watch.runbook)


@dataclass(frozen=True)
class DeadLetterDepth:
    subscription: str
    sources: tuple[str, ...]  # the subscriptions that dead-letter into it
    depth: int
    capped: bool  # depth is a lower bound (DEPTH_PEEK reached)
    alert: AlertFlag | None  # None: no alert declared on it


@dataclass(frozen=True)
class PushBacklog:
    subscription: str
    endpoint: str
    backlog: int | None  # None: not countable here (``why``)
    why: str
    alert: AlertFlag | None


@dataclass(frozen=True)
class StuckBatches:
    idle_window_s: float
    window_from: str  # where the window comes from
    batches: tuple[dict[str, Any], ...]  # Batch.summary() of each stuck batch, oldest first
    active: int  # active batches
    open_items: int  # items of active batches with no outcome yet
    alert: AlertFlag | None


@dataclass(frozen=True)
class MonitoringStatus:
    dead_letters: tuple[DeadLetterDepth, ...]
    push_backlog: tuple[PushBacklog, ...]
    stuck: StuckBatches | None
    errors: tuple[str, ...] = ()  # what could not be read, one line each

    @property
    def firing(self) -> list[AlertFlag]:
        flags = [d.alert for d in self.dead_letters] + [p.alert for p in self.push_backlog]
        flags.append(self.stuck.alert if self.stuck else None)
        return [f for f in flags if f is not None and f.fires]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "firing": [asdict(f) for f in self.firing]}


def watches(cfg: Any) -> tuple[AlertWatch, ...]:
    """The stack's declared alerts (``infra.monitoring.alert_specs``) that have a local
    equivalent: dead-letter depth, push backlog age, batches closed abnormally."""
    from infra.monitoring import RUNBOOK, AlertKind, alert_specs, anchor

    out = []
    for spec in alert_specs(cfg):
        if spec.kind not in LOCAL_KINDS:
            continue
        th = spec.threshold or {}
        value = float(th.get("threshold_value", 0))
        held = str(th.get("duration", "0s")).removesuffix("s")
        condition = {
            AlertKind.DEAD_LETTERS: f"more than {value:g} held for {held} s",
            AlertKind.BACKLOG_AGE: f"oldest unacked older than {value:g} s for {held} s",
            AlertKind.STUCK_BATCHES: "any batch the stall check closes abnormally",
        }[spec.kind]
        out.append(
            AlertWatch(
                kind=str(spec.kind),
                policy=spec.key,
                watches=tuple(spec.watches),
                condition=condition,
                threshold=value,
                section=spec.runbook_section,
                runbook=f"{RUNBOOK}#{anchor(spec.runbook_section)}",
            )
        )
    return tuple(out)


def _dead_letters(admin: Any, topo: Topology) -> list[DeadLetterDepth]:
    out = []
    for sub in topo.dead_letter_subscriptions():
        depth = len(admin.peek(sub.name, max_messages=DEPTH_PEEK))
        sources = tuple(s.name for s in topo.subscriptions if s.dead_letter_topic == sub.topic)
        watch = topo.alert(DEAD_LETTERS, sub.name)
        fires = watch is not None and depth > watch.threshold
        out.append(
            DeadLetterDepth(sub.name, sources, depth, depth >= DEPTH_PEEK, _flag(watch, fires))
        )
    return out


def _push_backlog(topo: Topology) -> list[PushBacklog]:
    return [
        PushBacklog(
            s.name,
            s.push_endpoint or "",
            None,
            PUSH_BACKLOG_UNCOUNTABLE,
            _flag(topo.alert(BACKLOG_AGE, s.name), None),
        )
        for s in topo.subscriptions
        if s.push_endpoint
    ]


def _stuck(
    topo: Topology,
    service_env: Mapping[str, Mapping[str, str]],
    firestore: Callable[[str | None], Any],
    now: datetime,
) -> tuple[StuckBatches | None, list[str]]:
    from datetime import timedelta

    from shared.batch_model import stall_policy_from_env
    from shared.batch_store import BatchStore

    coordinator = topo.coordinator()
    if coordinator is None:
        return None, []
    env = {**coordinator.env, **service_env.get(coordinator.name, {})}
    policy, problems = stall_policy_from_env(env)
    errors = [f"{coordinator.name}: {p} (the stall check's default used)" for p in problems]
    window = policy.idle_window
    source = (
        f"STALL_IDLE_SECONDS of {coordinator.name}"
        if env.get("STALL_IDLE_SECONDS") and not problems
        else "the stall check's default"
    )
    store = BatchStore(firestore(env.get("FIRESTORE_DATABASE") or None))
    # What `batches list-stuck --idle WINDOW` lists; with no idle time, every active batch
    # (live counts), for the items still open.
    stuck = store.list_stuck(idle_for=window, now=now)
    active = store.list_stuck(idle_for=timedelta(0), now=now)
    watch = topo.alert(STUCK_BATCHES, coordinator.name)
    return (
        StuckBatches(
            idle_window_s=window.total_seconds(),
            window_from=source,
            batches=tuple(b.summary(now) for b in stuck),
            active=len(active),
            open_items=sum(max(b.total_items - b.done, 0) for b in active),
            alert=_flag(watch, bool(stuck)),
        ),
        errors,
    )


def monitoring_status(
    topo: Topology,
    *,
    admin: Callable[[], Any],
    firestore: Callable[[str | None], Any],
    service_env: Mapping[str, Mapping[str, str]],
    now: datetime,
) -> MonitoringStatus:
    """The local equivalents of ``topo``'s alerts (see the module doc). ``admin()``: the
    Pub/Sub emulator's :class:`~scripts.local._apply.PubSubAdmin`; ``firestore(database)``: a
    client on the running Firestore emulator; ``service_env``: the local-only env overrides
    the services run with. Never raises for an emulator that does not answer: that part is
    left out and the reason is in ``errors``."""
    from google.api_core.exceptions import GoogleAPICallError, RetryError

    from scripts.local._errors import NotRunning

    unreadable = (GoogleAPICallError, RetryError, NotRunning, OSError)
    errors: list[str] = []
    dead: list[DeadLetterDepth] = []
    try:
        dead = _dead_letters(admin(), topo)
    except unreadable as exc:
        errors.append(f"Pub/Sub emulator: {_line(exc)}")
    stuck = None
    try:
        stuck, problems = _stuck(topo, service_env, firestore, now)
        errors += problems
    except unreadable as exc:
        errors.append(f"Firestore emulator: {_line(exc)}")
    return MonitoringStatus(tuple(dead), tuple(_push_backlog(topo)), stuck, tuple(errors))


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
