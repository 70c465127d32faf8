"""Deploy-lock semantics against the Firestore emulator (no mocks)."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import pytest

from scripts.deploylock import (
    DeployLock,
    HolderInfo,
    InvalidLockConfig,
    LeaseLost,
    LockHeld,
    LockUnavailable,
)
from scripts.emulators import firestore_client

pytestmark = pytest.mark.emulator


def holder(who: str, **kw) -> HolderInfo:
    return HolderInfo(who=who, host="test-host", pid=1000, git_commit="abc123", **kw)


def events(lock: DeployLock) -> list[tuple[str, int]]:
    return [(e.event, e.token) for e in reversed(lock.history(100))]


def test_acquire_records_holder_and_token(make_lock):
    lock = make_lock()
    lease = lock.acquire(holder("alice", reason="release 42", command="pulumi up"))
    assert lease.token == 1
    assert lease.expires_at - lease.acquired_at == timedelta(seconds=5)
    status = lock.status()
    assert status.held and status.token == 1
    assert status.holder.who == "alice" and status.holder.command == "pulumi up"
    assert status.holder.git_commit == "abc123" and status.holder.reason == "release 42"
    assert status.expires_at == lease.expires_at
    with pytest.raises(LockHeld) as err:
        lock.acquire(holder("bob"))
    message = str(err.value)
    assert "alice" in message and "pulumi up" in message and "since" in message, message
    assert lock.try_acquire(holder("bob")) is None


def test_release_then_acquire_increments_token(make_lock):
    lock = make_lock()
    tokens = []
    for _ in range(3):
        lease = lock.acquire(holder("alice"))
        tokens.append(lease.token)
        assert lock.release(lease) is True
        assert lock.release(lease) is False, "a second release is a harmless no-op"
    assert tokens == [1, 2, 3]
    assert not lock.status().held


def test_locks_of_different_stacks_are_independent(make_lock):
    prod, staging = make_lock("prod"), make_lock("staging")
    assert prod.try_acquire(holder("a")) is not None
    assert staging.try_acquire(holder("b")) is not None


def test_stale_holder_release_and_renew_are_refused(make_lock):
    lock = make_lock(ttl=1)
    old = lock.acquire(holder("alice"))
    time.sleep(1.2)  # no heartbeat: the lease expires (Firestore time)
    status = lock.status()
    assert status.expired and not status.held
    new = lock.acquire(holder("bob"))
    assert new.token == old.token + 1
    with pytest.raises(LeaseLost, match="superseded by token 2.*bob"):
        lock.release(old)
    with pytest.raises(LeaseLost, match="superseded"):
        lock.renew(old)
    assert lock.status().holder.who == "bob"
    assert lock.release(new) is True
    takeover = lock.history(10)[1]
    assert takeover.event == "takeover" and takeover.previous_holder.who == "alice"
    assert takeover.previous_token == 1


def test_force_release_is_recorded_and_displaces_holder(make_lock):
    lock = make_lock(ttl=30)
    lease = lock.acquire(holder("alice", command="pulumi up"))
    with pytest.raises(InvalidLockConfig, match="reason"):
        lock.force_release(reason="  ")
    displaced = lock.force_release(reason="deploy hung", by=holder("oncall"))
    assert displaced.holder.who == "alice" and displaced.token == lease.token
    assert not lock.status().held
    with pytest.raises(LeaseLost, match="force-released by oncall: deploy hung"):
        lock.release(lease)
    with pytest.raises(LeaseLost, match="force-released"):
        lock.renew(lease)
    assert lock.force_release(reason="again", by=holder("oncall")) is None  # nothing held
    last = lock.history(1)[0]
    assert (last.event, last.by, last.reason, last.previous_holder.who) == (
        "force-release", "oncall", "deploy hung", "alice",
    )  # fmt: skip
    assert lock.acquire(holder("bob")).token == lease.token + 1


def test_history_is_complete(make_lock):
    lock = make_lock(ttl=1)
    a = lock.acquire(holder("a"))
    lock.renew(a)
    lock.release(a)
    b = lock.acquire(holder("b"))
    time.sleep(1.2)
    c = lock.acquire(holder("c"))  # takeover of b's expired lease
    lock.force_release(reason="test", by=holder("ops"))
    assert events(lock) == [
        ("acquire", 1), ("renew", 1), ("release", 1), ("acquire", 2), ("takeover", 3),
        ("force-release", 3),
    ]  # fmt: skip
    seqs = [e.seq for e in lock.history(100)]
    assert seqs == sorted(seqs, reverse=True) == list(range(len(seqs), 0, -1))
    assert b.token < c.token
    assert all(e.at is not None for e in lock.history(100))


def test_renew_extends_expiry_by_firestore_time(make_lock):
    lock = make_lock(ttl=2)
    lease = lock.acquire(holder("a"))
    first = lease.expires_at
    time.sleep(0.1)
    assert lock.renew(lease) is lease
    assert lease.expires_at > first
    assert lock.status().expires_at == lease.expires_at


def test_heartbeat_keeps_lease_alive_past_ttl(make_lock):
    lock = make_lock(ttl=1.5)
    started = time.monotonic()
    with lock.hold(holder("long")) as hb:
        while time.monotonic() - started < 4:  # well past the TTL
            time.sleep(0.25)
            assert lock.try_acquire(holder("other")) is None
            hb.check()
        assert hb.renewals >= 4, hb.renewals
        token = hb.lease.token
    assert not lock.status().held
    assert events(lock)[-1] == ("release", token)


def test_heartbeat_reports_loss_and_stops(make_lock):
    lock = make_lock(ttl=1.5)
    lost = threading.Event()
    lease = lock.acquire(holder("a"))
    with lock.heartbeat(lease, on_lost=lambda exc: lost.set()) as hb:
        lock.force_release(reason="test", by=holder("ops"))
        assert lost.wait(3), "heartbeat did not notice the force-release"
        with pytest.raises(LeaseLost, match="force-released"):
            hb.check()


def test_acquire_waits_for_release_and_reports_holder(make_lock):
    lock = make_lock(ttl=10)
    lease = lock.acquire(holder("alice"))
    seen: list[str] = []
    threading.Timer(0.7, lock.release, args=(lease,)).start()
    started = time.monotonic()
    second = lock.acquire(holder("bob"), wait=5, on_wait=lambda s: seen.append(s.holder.who))
    assert second.token == 2
    assert 0.6 < time.monotonic() - started < 4
    assert seen and set(seen) == {"alice"}
    with pytest.raises(LockHeld):
        lock.acquire(holder("carol"), wait=0.5)


def test_tokens_continue_after_lock_document_deleted(make_lock, lock_db):
    lock = make_lock()
    lock.release(lock.acquire(holder("a")))
    lock_db.collection("deploy_locks").document("prod").delete()
    assert lock.acquire(holder("b")).token == 2


@pytest.mark.parametrize("ttl", [0, -5, 0.5, timedelta(seconds=-1)])
def test_bad_ttl(firestore_db, ttl):
    with pytest.raises(InvalidLockConfig, match="TTL must be at least"):
        DeployLock(firestore_db, stack="prod", ttl=ttl)


@pytest.mark.parametrize("stack", ["", "Prod", "prod/eu", "1prod", "a" * 64, "pr od", None])
def test_bad_stack_name(firestore_db, stack):
    with pytest.raises(InvalidLockConfig, match="invalid stack name"):
        DeployLock(firestore_db, stack=stack)


def test_bad_wait_and_limit(make_lock):
    lock = make_lock()
    with pytest.raises(InvalidLockConfig, match="wait"):
        lock.acquire(holder("a"), wait=-1)
    with pytest.raises(InvalidLockConfig, match="limit"):
        lock.history(0)


def _dead_host() -> str:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_firestore_fails_fast_and_clearly():
    host = _dead_host()
    lock = DeployLock(firestore_client(host, "demo-test"), stack="prod")  # default timeouts
    started = time.monotonic()
    with pytest.raises(LockUnavailable, match=f"Firestore unavailable while reading .*{host}"):
        lock.acquire(holder("a"), wait=30)  # waiting is for a holder, not for a dead server
    assert time.monotonic() - started < 10


def test_unreachable_firestore_every_operation_raises():
    lock = DeployLock(
        firestore_client(_dead_host(), "demo-test"),
        stack="prod",
        retry_deadline=timedelta(seconds=0.5),
    )
    for call in (lock.status, lambda: lock.release(1), lambda: lock.history(5),
                 lambda: lock.force_release(reason="x", by=holder("ops"))):  # fmt: skip
        with pytest.raises(LockUnavailable, match="Firestore unavailable"):
            call()
