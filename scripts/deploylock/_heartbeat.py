"""The heartbeat: a lease renewed in the background, and its safe time watched.

Renewals run every ``interval`` (TTL/3 by default) and a read in between (every
:data:`~scripts.deploylock.REVOCATION_POLL`) learns of a force-release. A second thread
watches the safe time on this machine's own clock, so that a holder that can no longer
confirm a renewal is told to stop before another client may take the lock over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from ._defaults import HEARTBEAT_FRACTION, REVOCATION_POLL
from ._errors import InvalidLockConfig, LeaseLost
from ._holding import check_holder, check_safe_time
from ._records import Lease, LockStatus
from ._watchdog import clock

if TYPE_CHECKING:
    from ._lock import DeployLock

LostCallback = Callable[[LeaseLost], None]
RenewedCallback = Callable[[Lease], None]


class Heartbeat:
    """Renews a lease in a daemon thread, and watches its safe time in another, until stopped
    or the lease is lost."""

    def __init__(
        self,
        lock: DeployLock,
        lease: Lease,
        *,
        interval: timedelta | None = None,
        stop_before: timedelta = timedelta(0),
        on_lost: LostCallback | None = None,
        on_renewed: RenewedCallback | None = None,
    ) -> None:
        self.lock = lock
        self.lease = lease
        self.interval = interval or lease.ttl / HEARTBEAT_FRACTION
        if self.interval <= timedelta(0) or self.interval >= lease.ttl:
            raise InvalidLockConfig(
                f"heartbeat interval must be positive and shorter than the TTL ({lease.ttl}), "
                f"got {self.interval}"
            )
        self.stop_before = stop_before.total_seconds()
        self.lost = threading.Event()
        self.error: LeaseLost | None = None
        self.renewals = 0
        self._on_lost = on_lost
        self._on_renewed = on_renewed
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._lose_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> Heartbeat:
        if not self._threads:
            name = f"deploy-lock-{self.lease.stack}"
            self._threads = [
                threading.Thread(target=self._renew_loop, name=f"{name}-renew", daemon=True),
                threading.Thread(target=self._deadline_loop, name=f"{name}-safe", daemon=True),
            ]
            for t in self._threads:
                t.start()
        return self

    def stop(self) -> None:
        """Stop renewing (waits for an in-flight renewal). Does not release the lease."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the lease was found lost, or its safe time has passed
        (no read: this process's own knowledge)."""
        if self.error is not None:
            raise self.error
        check_safe_time(self.lease, self.lock.margin)

    def verify(self) -> LockStatus:
        """:meth:`check`, then :meth:`DeployLock.verify` (a read): call before each mutation."""
        self.check()
        return self.lock.verify(self.lease)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _renew_loop(self) -> None:
        interval = self.interval.total_seconds()
        poll = REVOCATION_POLL.total_seconds()
        margin_ttl = (self.lease.ttl - self.lock.margin).total_seconds()
        next_renew = self.lease.safe_until - margin_ttl + interval
        next_poll = clock() + poll
        while not self.lost.is_set():
            wake = min(next_renew, next_poll)
            if self._stop.wait(max(0.0, wake - clock())):
                return
            now = clock()
            if now >= next_renew:
                try:
                    self.lock.renew(self.lease)
                except LeaseLost as exc:
                    self._lose(exc)
                    return
                except Exception:  # LockUnavailable and the like: retry soon
                    next_renew = clock() + max(0.05, interval / 4)
                    continue
                self.renewals += 1
                next_renew = self.lease.safe_until - margin_ttl + interval
                next_poll = clock() + poll
                with self._changed:
                    self._changed.notify_all()
                if self._on_renewed is not None and not self._stop.is_set():
                    self._on_renewed(self.lease)
            else:
                try:
                    check_holder(self.lease, self.lock._docs.read())
                except LeaseLost as exc:
                    self._lose(exc)
                    return
                except Exception:  # unreachable: the safe-time watch covers it
                    pass
                next_poll = clock() + poll

    def _deadline_loop(self) -> None:
        with self._changed:
            while not self._stop.is_set() and not self.lost.is_set():
                left = self.lease.safe_until - self.stop_before - clock()
                if left <= 0:
                    break
                # Re-checked at least every 0.5 s: a Condition waits on CLOCK_MONOTONIC,
                # which does not count a suspended machine's sleep; clock() does.
                self._changed.wait(min(left, 0.5))
            else:
                return
        self._lose(
            LeaseLost(
                self.lease,
                None,
                f"no renewal confirmed in time: its safe time ends in "
                f"{max(0.0, self.lease.safe_until - clock()):.1f} s (Firestore unreachable?)",
            )  # fmt: skip
        )

    def _lose(self, exc: LeaseLost) -> None:
        with self._lose_lock:
            if self.error is not None:
                return
            self.error = exc
            self.lost.set()
        with self._changed:
            self._changed.notify_all()
        if self._on_lost is not None:
            self._on_lost(exc)
