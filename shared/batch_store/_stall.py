"""The stall check: for each active batch idle for the policy's window, re-send its open items
(each attempt recorded on its item, up to ``max_attempts``), then close it when they are spent
or it is too old; and the operator's ``list_stuck`` / ``cleanup_stuck``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

from shared.batch_model import (
    PAGE_SIZE,
    Batch,
    BatchState,
    FinishAction,
    StallPolicy,
    format_duration,
)
from shared.batch_store._finishing import Finishing
from shared.batch_store._publishing import work_message
from shared.limits import FIRESTORE_MAX_WRITES_PER_COMMIT

_DEFAULT_POLICY = StallPolicy()

#: ``send(topic, [(payload, attributes), ...])`` publishes every message or raises.
Sender = Callable[[str, list[tuple[dict[str, Any], dict[str, str]]]], None]


class StallCheck(Finishing):
    """``check_stalled`` (``decide`` then ``apply``), ``resend_open``, ``list_stuck`` and
    ``cleanup_stuck``."""

    def resend_open(
        self, batch: Batch, policy: StallPolicy, send: Sender, *, dry_run: bool = False
    ) -> tuple[int, int]:
        """Publish again every open item with attempts left (the attempt recorded on the item
        first, so the bound holds even if this stops half way). Returns ``(resent, spent)``:
        items sent again, and open items whose attempts are spent."""
        topic = self._topic(batch)
        items = self._items(batch.batch_id)
        resent = spent = 0
        pages = list(self.iter_open_items(batch.batch_id, fields=("payload", "attempts")))
        for page in pages:
            due = [(i, d) for i, d in page if int(d.get("attempts") or 0) < policy.max_attempts]
            spent += len(page) - len(due)
            if dry_run or not due:
                resent += len(due)
                continue
            for start in range(0, len(due), FIRESTORE_MAX_WRITES_PER_COMMIT):
                chunk = due[start : start + FIRESTORE_MAX_WRITES_PER_COMMIT]
                now = self.clock()
                wb = self.db.batch()
                for item_id, _ in chunk:
                    wb.update(
                        items.document(item_id),
                        {
                            "attempts": firestore.Increment(1),
                            "sent_at": firestore.ArrayUnion([now]),
                        },
                    )
                wb.commit()
                send(
                    topic,
                    [
                        work_message(
                            batch.batch_id,
                            item_id,
                            d.get("payload") or {},
                            int(d.get("attempts") or 0) + 1,
                        )
                        for item_id, d in chunk
                    ],
                )
                resent += len(chunk)
        if resent and not dry_run:
            now = self.clock()
            self._ref(batch.batch_id).update(
                {
                    "last_resend_at": now,
                    "resent_count": firestore.Increment(resent),
                    "updated_at": now,
                }
            )
        return resent, spent

    @staticmethod
    def _topic(batch: Batch) -> str:
        if not batch.request_topic:
            raise ValueError(f"batch {batch.batch_id!r} has no request topic to re-send to")
        return batch.request_topic

    def decide(
        self, batch: Batch, now: datetime, policy: StallPolicy
    ) -> tuple[str, str, Batch] | None:
        """The stall rules for one active batch: ``(action, reason, batch with live counts)``
        or None (leave it). ``resend`` may become ``partial`` when no item has attempts left."""
        age = batch.age(now)
        if age >= policy.max_age:
            live = batch.with_counts(self.counts(batch.batch_id))
            return (
                "fail",
                f"exceeded max age {format_duration(policy.max_age)} "
                f"(age {format_duration(age)}, {live.fraction_done * 100:.1f}% done)",
                live,
            )
        if batch.state == BatchState.PUBLISHING:
            idle = batch.idle(now)
            if idle >= policy.idle_window:
                return (
                    "publish_failed",
                    f"publishing stalled: {batch.published_count}/{batch.total_items} "
                    f"published, no progress for {format_duration(idle)}",
                    batch,
                )
            return None
        live = batch.with_counts(
            self.counts(batch.batch_id), self.last_completion_at(batch.batch_id)
        )
        if live.done >= live.total_items:
            return "complete", "all items done", live
        idle = live.idle(now)
        if idle < policy.idle_window:
            return None
        return (
            "resend",
            f"no completion for {format_duration(idle)} at {live.fraction_done * 100:.1f}%",
            live,
        )

    def apply(
        self,
        action: str,
        batch: Batch,
        reason: str,
        policy: StallPolicy,
        send: Sender | None,
        *,
        dry_run: bool = False,
    ) -> FinishAction:
        """Carry out (or with ``dry_run`` describe) one decided action."""
        pct = round(batch.fraction_done * 100, 2)
        bid = batch.batch_id
        if action == "resend":
            resent, spent = (
                self.resend_open(batch, policy, send, dry_run=True)
                if dry_run or send is None
                else self.resend_open(batch, policy, send)
            )
            if resent:
                why = (
                    f"{reason}: {'would re-send' if dry_run or send is None else 're-sent'} "
                    f"{resent} open item(s) (attempt limit {policy.max_attempts})"
                )
                return FinishAction(
                    bid, "resend", why, pct, applied=not dry_run and send is not None, resent=resent
                )
            action = "partial"
            reason = (
                f"{reason}: {spent} item(s) still missing after {policy.max_attempts} "
                "attempt(s) each"
            )
        if dry_run:
            return FinishAction(bid, action, reason, pct)
        before = batch.missing_count
        if action == "complete":
            applied = self._finish(bid, BatchState.COMPLETED, reason)
        elif action == "publish_failed":
            applied = self.close(
                bid,
                BatchState.PUBLISH_FAILED,
                reason,
                item_reason=lambda _: f"not delivered: {reason}",
                only_from=(BatchState.PUBLISHING,),
            )
        elif action == "partial":
            applied = self.close(
                bid,
                BatchState.PARTIAL,
                reason,
                item_reason=lambda d: (
                    f"no completion after {int(d.get('attempts') or 0)} attempt(s), the last "
                    f"sent {_last_sent(d)}"
                ),
            )
        else:  # fail
            applied = self.close(
                bid, BatchState.FAILED, reason, item_reason=lambda _: f"batch failed: {reason}"
            )
        return self._closed(
            batch, action, reason, applied, lambda after: max(after.missing_count - before, 0)
        )

    def check_stalled(
        self,
        policy: StallPolicy = _DEFAULT_POLICY,
        *,
        send: Sender | None = None,
        now: datetime | None = None,
        dry_run: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> list[FinishAction]:
        """Apply the stall rules to every active batch, a page at a time. Without ``send`` the
        re-sends are only reported (what the CLI does without a topic)."""
        now = now or self.clock()
        actions: list[FinishAction] = []
        for page in self.iter_active(page_size=page_size):
            for batch in page:
                decision = self.decide(batch, now, policy)
                if decision is None:
                    continue
                action, reason, live = decision
                actions.append(self.apply(action, live, reason, policy, send, dry_run=dry_run))
        return actions

    def list_stuck(
        self, *, idle_for: timedelta, now: datetime | None = None, page_size: int = PAGE_SIZE
    ) -> list[Batch]:
        """Active batches with no progress for at least ``idle_for``, oldest first (live
        counts and the latest completion's time)."""
        now = now or self.clock()
        out = []
        for page in self.iter_active(page_size=page_size):
            for b in page:
                live = b.with_counts(self.counts(b.batch_id), self.last_completion_at(b.batch_id))
                if live.idle(now) >= idle_for:
                    out.append(live)
        return out

    def cleanup_stuck(
        self,
        policy: StallPolicy = _DEFAULT_POLICY,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> list[FinishAction]:
        """Close active batches with no progress for ``policy.stuck_after``, reason recorded:
        one still publishing is ``publish_failed``; any other ``partial`` (open items recorded
        missing) or ``completed`` when nothing is open."""
        now = now or self.clock()
        actions: list[FinishAction] = []
        for batch in self.list_stuck(idle_for=policy.stuck_after, now=now, page_size=page_size):
            idle = batch.idle(now)
            pct = batch.fraction_done * 100
            reason = f"stuck: no progress for {format_duration(idle)} at {pct:.1f}%"
            if batch.state == BatchState.PUBLISHING:
                action = "publish_failed"
            elif batch.done >= batch.total_items:
                action, reason = "complete", "all items done"
            else:
                action = "partial"
            actions.append(self.apply(action, batch, reason, policy, None, dry_run=dry_run))
        return actions


def _last_sent(data: Mapping[str, Any]) -> str:
    sent = data.get("sent_at") or []
    last = max(sent) if sent else None
    return last.isoformat() if isinstance(last, datetime) else "never"
