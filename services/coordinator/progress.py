"""Bounded-rate progress checks: the batches this instance records completions for.

``/complete`` writes only the item's own documents (see :mod:`shared.batch_store`); something
must still notice when a batch is done and keep its summary counts fresh. One thread per
instance does, by :meth:`BatchStore.refresh` (one read and one aggregation query, and at most
one write of the batch document per second): for each batch it has seen completions for, at
most once per :data:`CHECK_INTERVAL_S`, and at once when its own tally (the last count plus
the completions it recorded since) reaches the batch's total, so a batch served by one
instance finishes right after its last completion. A check that fails is retried at the next
interval; the scheduled stall check is the backstop if the instance goes away first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.batch_store import SUMMARY_INTERVAL_S, Refresh
from shared.log import get_logger

__all__ = ["CHECK_INTERVAL_S", "ProgressTracker"]

log = get_logger("coordinator.progress")

#: At most one progress check per batch per instance this often: the summary may be written
#: once a second (Firestore's sustained rate for one document), so checking more often would
#: only spend aggregation reads.
CHECK_INTERVAL_S = SUMMARY_INTERVAL_S
#: Even "at once" checks of one batch are this far apart (a burst of final completions).
_MIN_GAP_S = 0.02


@dataclass
class _Entry:
    noted: int = 0  # completions recorded here since the last check started
    known_done: int | None = None
    total: int | None = None
    next_at: float = 0.0
    last_at: float = field(default=-1e9)

    def maybe_done(self) -> bool:
        return (
            self.known_done is not None
            and self.total is not None
            and self.known_done + self.noted >= self.total
        )


class ProgressTracker:
    """Runs ``refresh(batch_id)`` for noted batches at a bounded rate, on its own thread."""

    def __init__(
        self,
        refresh: Callable[[str], Refresh],
        *,
        interval: float = CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresh = refresh
        self._interval = interval
        self._now = clock
        self._entries: dict[str, _Entry] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()

    def note(self, batch_id: str) -> None:
        """One completion recorded for ``batch_id`` (cheap; never blocks on Firestore)."""
        with self._cond:
            entry = self._entries.get(batch_id)
            now = self._now()
            if entry is None:
                entry = self._entries[batch_id] = _Entry(next_at=now)
            entry.noted += 1
            if entry.maybe_done():
                entry.next_at = min(entry.next_at, max(now, entry.last_at + _MIN_GAP_S))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._entries)

    def close(self, *, timeout: float = 5.0) -> None:
        """Run the checks still due once more, then stop the thread."""
        with self._cond:
            self._stopping = True
            for entry in self._entries.values():
                entry.next_at = 0.0
            self._cond.notify()
        self._thread.join(timeout)

    def _due(self) -> tuple[str, _Entry, int] | None:
        """The next batch to check (with its noted count), or None after waiting."""
        with self._cond:
            while True:
                if not self._entries and self._stopping:
                    return None
                now = self._now()
                if self._entries:
                    batch_id, entry = min(self._entries.items(), key=lambda kv: kv[1].next_at)
                    if entry.next_at <= now:
                        entry.last_at = now
                        entry.next_at = float("inf")  # in progress
                        return batch_id, entry, entry.noted
                    self._cond.wait(timeout=entry.next_at - now)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while True:
            due = self._due()
            if due is None:
                return
            batch_id, entry, noted = due
            result: Refresh | None = None
            try:
                result = self._refresh(batch_id)
            except Exception as exc:  # noqa: BLE001 - retried at the next interval
                log.warning("progress check failed", batch_id=batch_id, error=str(exc))
            with self._cond:
                if result is None:
                    if self._stopping:  # Firestore is failing: the stall check will see it
                        del self._entries[batch_id]
                    else:
                        entry.next_at = entry.last_at + self._interval
                    continue
                entry.noted -= noted
                if result.counts is not None:
                    entry.known_done = result.counts.done
                if result.batch is not None:
                    entry.total = result.batch.total_items
                gone = result.batch is None or not result.batch.active or result.finished
                if gone or (result.settled and entry.noted == 0):
                    del self._entries[batch_id]
                    continue
                gap = _MIN_GAP_S if entry.maybe_done() else self._interval
                entry.next_at = entry.last_at + gap
