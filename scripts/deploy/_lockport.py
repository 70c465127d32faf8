"""The deploy lock (``scripts.deploylock``) as the pipeline's :class:`~._steps.Locker`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from ._pulumi import INTERRUPT_GRACE_S

__all__ = ["DeployLockLocker"]


class DeployLockLocker:
    """Acquire without waiting (a held lock stops the deploy naming the holder), heartbeat with
    the library's defaults (TTL/3), release; a release that finds the lease lost returns False.

    ``grace``: how long the pipeline's interrupt gives ``pulumi up`` between SIGINT and SIGKILL.
    With no renewal confirmed, the heartbeat reports the lease lost that long before its safe
    time (at most what the TTL can hold), so the interrupted ``up`` has ended by then.
    """

    def __init__(
        self,
        *,
        ttl: timedelta | None = None,
        wait: float = 0,
        who: str | None = None,
        grace: float = INTERRUPT_GRACE_S,
    ) -> None:
        self.ttl = ttl
        self.wait = wait
        self.grace = grace
        self._who = who
        self._lock: Any = None
        self._holder: Any = None

    def _holder_info(self, reason: str | None = None):
        from scripts.deploylock import HolderInfo

        return HolderInfo.detect(reason=reason, command="deploy", who=self._who)

    def holder(self) -> Mapping[str, Any]:
        return self._holder_info().to_dict()

    def acquire(self, client: Any, stack: str, *, reason: str) -> Any:
        from scripts.deploylock import DEFAULT_TTL, DeployLock

        self._lock = DeployLock(client, stack=stack, ttl=self.ttl or DEFAULT_TTL)
        return self._lock.acquire(self._holder_info(reason), wait=self.wait)

    def token(self, lease: Any) -> int:
        return int(lease.token)

    def heartbeat(self, lease: Any, on_lost: Callable[[str], None]) -> Callable[[], None]:
        from scripts.deploylock import max_grace

        stop_before = min(timedelta(seconds=self.grace), max_grace(self._lock.ttl))
        hb = self._lock.heartbeat(
            lease, stop_before=stop_before, on_lost=lambda exc: on_lost(str(exc))
        )
        hb.start()
        return hb.stop

    def verify(self, lease: Any) -> None:
        """The library's lease re-check (one read); a lease no longer ours raises the
        pipeline's ``LeaseLost`` saying "superseded", an unconfirmable one a ``DeployError``."""
        from scripts.deploylock import DeployLockError, LeaseLost

        from ._errors import DeployError
        from ._errors import LeaseLost as Superseded

        try:
            self._lock.verify(lease)
        except LeaseLost as exc:
            raise Superseded(
                f"superseded: the deploy lock on '{lease.stack}' is no longer this run's "
                f"(token {lease.token}: {exc.why}); stopped before changing anything more"
            ) from None
        except DeployLockError as exc:
            raise DeployError(
                f"cannot re-verify the deploy lock on '{lease.stack}' ({exc}); stopped before "
                "changing anything more"
            ) from None

    def release(self, lease: Any) -> bool:
        from scripts.deploylock import LeaseLost

        try:
            self._lock.release(lease)
        except LeaseLost:  # taken over or force-released meanwhile: nothing of ours to free
            return False
        return True
