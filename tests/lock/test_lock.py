"""Deploy-lock semantics against the Firestore emulator (no mocks)."""

from __future__ import annotations

import dataclasses
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
    NotHolder,
    clock,
    max_grace,
    validate_grace,
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


def test_force_release_revokes_and_frees_when_the_holder_releases(make_lock):
    lock, ops = make_lock(ttl=30), make_lock(ttl=30)
    lease = lock.acquire(holder("alice", command="pulumi up"))
    with pytest.raises(InvalidLockConfig, match="reason"):
        ops.force_release(reason="  ")
    displaced = ops.force_release(reason="deploy hung", by=holder("oncall"))
    assert displaced.holder.who == "alice" and displaced.token == lease.token
    status = ops.status()
    assert status.revoked and not status.held and not status.expired
    assert status.expires_at == lease.expires_at, "revoking keeps the lease's validity"
    assert "force-released by oncall" in status.describe()
    # Not free while alice may still be running: she has not confirmed she stopped.
    with pytest.raises(LockHeld, match="waiting for alice"):
        ops.acquire(holder("bob"))
    with pytest.raises(LeaseLost, match="force-released by oncall: deploy hung"):
        lock.verify(lease)
    with pytest.raises(LeaseLost, match="force-released by oncall: deploy hung"):
        lock.renew(lease)
    assert ops.force_release(reason="again", by=holder("oncall")).revoked  # no second write
    # Her release acknowledges it: the lock is free at once, and she is told she lost it.
    with pytest.raises(LeaseLost, match="force-released by oncall.*the lock is free"):
        lock.release(lease)
    assert not ops.status().exists
    assert ops.force_release(reason="again", by=holder("oncall")) is None  # nothing held
    assert ops.acquire(holder("bob")).token == lease.token + 1
    force = next(e for e in lock.history(10) if e.event == "force-release")
    assert (force.by, force.reason, force.previous_holder.who, force.token) == (
        "oncall", "deploy hung", "alice", lease.token,
    )  # fmt: skip
    assert events(lock) == [("acquire", 1), ("force-release", 1), ("release", 1), ("acquire", 2)]


def test_force_release_of_a_gone_holder_frees_the_lock_at_its_expiry(make_lock):
    lock, ops = make_lock(ttl=1.5), make_lock(ttl=1.5)
    lease = lock.acquire(holder("alice"))
    assert ops.force_release(reason="alice's laptop died", by=holder("oncall")) is not None
    started = time.monotonic()
    taken = ops.acquire(holder("bob"), wait=10)
    assert time.monotonic() - started > 0.5  # waited for the revoked lease to expire
    assert taken.token == lease.token + 1
    assert events(lock)[-2:] == [("force-release", 1), ("takeover", 2)]


def test_force_release_now_frees_a_live_lease_at_once_and_says_so(make_lock):
    lock, ops = make_lock(ttl=30), make_lock(ttl=30)
    lease = lock.acquire(holder("alice"))
    assert ops.force_release(reason="laptop is off", by=holder("oncall"), now=True).held
    assert not ops.status().exists
    assert ops.acquire(holder("bob")).token == lease.token + 1
    force = next(e for e in ops.history(10) if e.event == "force-release")
    assert force.immediate and force.previous_holder.who == "alice"
    with pytest.raises(LeaseLost, match="superseded by token 2"):
        lock.renew(lease)


def test_force_release_of_an_expired_lease_frees_it_at_once(make_lock):
    lock = make_lock(ttl=1)
    lock.acquire(holder("alice"))
    time.sleep(1.2)
    assert lock.force_release(reason="stale", by=holder("oncall")).expired
    assert not lock.status().exists
    assert lock.acquire(holder("bob")).token == 2


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
    keys = [(e.token, e.seq) for e in lock.history(100)]
    assert keys == sorted(keys, reverse=True) == [(3, 1), (3, 0), (2, 0), (1, 2), (1, 1), (1, 0)]
    assert b.token < c.token
    history = lock.history(100)
    assert all(e.at is not None for e in history)
    assert [e.holder.who for e in reversed(history)] == ["a", "a", "a", "b", "c", "c"]
    assert history[-1].at == a.acquired_at
    # A window that cuts a lease's events shows none of that lease's acquire out of order.
    assert [(e.event, e.token) for e in lock.history(2)] == [("force-release", 3), ("takeover", 3)]


def test_renew_extends_expiry_by_firestore_time(make_lock):
    lock = make_lock(ttl=2)
    lease = lock.acquire(holder("a"))
    first = lease.expires_at
    time.sleep(0.1)
    assert lock.renew(lease) is lease
    assert lease.expires_at > first
    assert lock.status().expires_at == lease.expires_at


def test_heartbeat_keeps_lease_alive_past_ttl(make_lock):
    # 3 s: renewals every 1 s keep a safe time 2.85 s ahead, room for a slow RPC on a loaded
    # machine (with 1.5 s, one renewal slower than 0.5 s ended the lease's safe time).
    lock = make_lock(ttl=3)
    started = time.monotonic()
    with lock.hold(holder("long")) as hb:
        while time.monotonic() - started < 7:  # well past the TTL
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


def test_without_confirmed_renewals_the_heartbeat_stops_work_before_the_safe_time(
    make_lock, monkeypatch
):
    """Firestore unreachable: no renewal is confirmed, so ``on_lost`` fires ``stop_before``
    ahead of the lease's safe time (the caller's grace for stopping its work), not after it."""
    lock = make_lock(ttl=4)
    lease = lock.acquire(holder("a"))

    def unreachable(*args, **kwargs):
        raise LockUnavailable("partition")

    monkeypatch.setattr(lock, "renew", unreachable)
    monkeypatch.setattr(lock._docs, "read", unreachable)
    fired: list[float] = []
    hb = lock.heartbeat(lease, stop_before=timedelta(seconds=1.5),
                        on_lost=lambda exc: fired.append(clock()))  # fmt: skip
    with hb:
        assert hb.lost.wait(10), "the heartbeat never gave up"
    assert fired[0] < lease.safe_until - 1.0, (fired[0], lease.safe_until)
    assert fired[0] > lease.safe_until - 2.5, "fired long before it had to"
    assert "no renewal confirmed" in str(hb.error)
    with pytest.raises(LeaseLost):
        hb.check()


def test_acquire_waits_for_release_and_reports_holder(make_lock):
    lock = make_lock(ttl=10)
    lease = lock.acquire(holder("alice"))
    seen: list[str] = []
    threading.Timer(0.7, lock.release, args=(lease,)).start()
    started = time.monotonic()
    second = lock.acquire(holder("bob"), wait=5, on_wait=lambda s: seen.append(s.holder.who))
    # Acquired (a wait that ran out raises LockHeld), and only after alice released: no
    # upper bound on the time, which is the backoff's jitter plus the machine's load.
    assert second.token == 2
    assert time.monotonic() - started > 0.6
    assert seen and set(seen) == {"alice"}
    with pytest.raises(LockHeld):
        lock.acquire(holder("carol"), wait=0.5)


def test_the_lease_document_exists_only_while_held(make_lock, lock_db):
    lock = make_lock()
    ref = lock_db.collection("deploy_locks").document("prod")
    lease = lock.acquire(holder("a"))
    doc = ref.get().to_dict()
    assert doc["lease_id"] == lease.lease_id
    assert lease.holder_secret not in str(doc), "Firestore must not hold the secret itself"
    lock.release(lease)
    assert not ref.get().exists
    assert lock.status().token == 1 and "last token 1" in lock.status().describe()


def test_tokens_continue_after_the_lease_document_is_deleted_by_hand(make_lock, lock_db):
    lock = make_lock()
    lock.acquire(holder("a"))
    lock_db.collection("deploy_locks").document("prod").delete()  # "unlocked" in the console
    assert lock.acquire(holder("b")).token == 2


def test_release_and_renew_need_the_holder_secret(make_lock):
    lock, other = make_lock(ttl=30), make_lock(ttl=30)
    lease = lock.acquire(holder("alice"))
    assert "holder_secret" not in repr(lease) and lease.holder_secret not in repr(lease)
    assert lease.holder_secret not in str(lease.to_dict()) + str(lock.status().to_dict())
    for secret in (None, "", "guessed"):
        with pytest.raises(NotHolder, match="force-release"):
            other.lease_for(lease.token, secret, by=holder("mallory"))
    with pytest.raises(NotHolder):
        other.lease_for(lease.token, None, by=holder("mallory"), action="renew")
    assert other.status().held and other.status().token == lease.token
    refused = [e for e in other.history(10) if e.event.endswith("-refused")]
    assert [(e.event, e.by, e.token) for e in reversed(refused)] == [
        ("release-refused", "mallory@test-host", 1)] * 3 + [
        ("renew-refused", "mallory@test-host", 1)]  # fmt: skip
    assert [e.reason for e in reversed(refused)] == [
        "no holder secret given", "no holder secret given", "the holder secret is wrong",
        "no holder secret given"]  # fmt: skip
    # With the secret, another process (the CLI) renews and releases.
    stub = other.lease_for(lease.token, lease.holder_secret)
    other.renew(stub)
    assert other.release(stub) is True
    assert not other.status().exists
    events_ = events(lock)
    assert events_[0] == ("acquire", 1) and events_[-2:] == [("renew", 1), ("release", 1)]


def test_verify_before_each_mutation(make_lock):
    lock, other = make_lock(ttl=1.5), make_lock(ttl=1.5)
    lease = lock.acquire(holder("alice"))
    assert lock.verify(lease).token == lease.token
    forged = dataclasses.replace(lease, holder_secret="not-it")
    with pytest.raises(LeaseLost, match="secret"):
        lock.verify(forged)
    time.sleep(1.6)  # expired by Firestore's clock, not yet taken over
    with pytest.raises(LeaseLost, match="safe time passed"):
        lock.verify(lease)
    taken = other.acquire(holder("bob"))
    lease.safe_until = clock() + 60  # even a holder whose clock says "safe" is refused
    with pytest.raises(LeaseLost, match="superseded by token 2.*bob"):
        lock.verify(lease)
    assert other.verify(taken).holder.who == "bob"


def test_safe_time_is_ttl_minus_margin_from_the_send(make_lock):
    lock = make_lock(ttl=10)
    before = clock()
    lease = lock.acquire(holder("a"))
    after = clock()
    assert lock.margin == timedelta(milliseconds=500)
    assert before + 9.5 <= lease.safe_until <= after + 9.5
    before = clock()
    lock.renew(lease)
    assert before + 9.5 <= lease.safe_until <= clock() + 9.5


@pytest.mark.parametrize(
    ("ttl", "grace", "ok"),
    [(600, 10, True), (600, 270, True), (600, 271, False), (10, 4.5, True), (10, 10, False),
     (4, 1.5, True), (4, 1.6, False), (10, -1, False)],
)  # fmt: skip
def test_grace_must_fit_inside_the_lease(ttl, grace, ok):
    ttl_td = timedelta(seconds=ttl)
    if ok:
        assert validate_grace(grace, ttl_td) == timedelta(seconds=grace)
    else:
        with pytest.raises(InvalidLockConfig, match="grace"):
            validate_grace(grace, ttl_td)
    assert validate_grace(None, ttl_td) == min(timedelta(seconds=10), max_grace(ttl_td))


def test_a_legacy_lock_document_is_migrated_keeping_its_tokens(make_lock, lock_db):
    """The layout before (schema 1: the document always existed) keeps working: a live legacy
    lease is respected, a released one is taken over with the next token."""
    ref = lock_db.collection("deploy_locks").document("prod")
    legacy = {"schema": 1, "stack": "prod", "token": 41, "seq": 90, "state": "held",
              "lease_id": "old", "holder": holder("old-client").to_dict(), "ttl_seconds": 30.0,
              "acquired_at": None, "released_by": None}  # fmt: skip
    ref.create(legacy)
    lock = make_lock()
    with pytest.raises(LockHeld, match="old-client"):
        lock.acquire(holder("new"))
    ref.update({"state": "released"})
    lease = lock.acquire(holder("new"))
    assert lease.token == 42 and "released_by" not in ref.get().to_dict()
    lock.release(lease)
    assert lock.acquire(holder("new")).token == 43


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
    with pytest.raises(LockUnavailable, match=f"Firestore unavailable while acquiring .*{host}"):
        lock.acquire(holder("a"), wait=30)  # waiting is for a holder, not for a dead server
    assert time.monotonic() - started < 10


def test_unreachable_firestore_every_operation_raises():
    lock = DeployLock(
        firestore_client(_dead_host(), "demo-test"),
        stack="prod",
        retry_deadline=timedelta(seconds=0.5),
    )
    for call in (lock.status, lambda: lock.lease_for(1, "secret"), lambda: lock.history(5),
                 lambda: lock.force_release(reason="x", by=holder("ops"))):  # fmt: skip
        with pytest.raises(LockUnavailable, match="Firestore unavailable"):
            call()
