"""Batch state over Firestore, shared by the coordinator and the ``batches`` CLI.

Layout (collection names in :mod:`shared.indexes`)::

    prediction_batches/{batch_id}                     the batch: state, times, summary counts
    prediction_batches/{batch_id}/items/{item}        one per work item: payload, attempts,
                                                      outcome (null while open)
    prediction_batches/{batch_id}/completions/{item}  one per item outcome (ok, failed, missing)
    prediction_batches/{batch_id}/strays/{id}         completions acknowledged, never counted:
                                                      foreign, late, duplicate, unknown batch
    prediction_batches/{batch_id}/transitions/{published|final}  state-change markers

**Exact membership, without a read.** A completion is one commit of ``create(completions/
{item})`` and ``update(items/{item}, outcome)``. The update needs the item to exist, so a
completion for an item the batch never registered fails the commit (``NotFound``: a *foreign*
completion, or an *unknown batch* when the batch document is missing too); the create fails on
an item that already has an outcome (``AlreadyExists``: a redelivery, a second result, or a
*late* one for an item the batch was closed without). Items are registered before their
messages are published, so a fast worker can never beat its item's registration. None of those
is counted; each is acknowledged and recorded as a stray for ``batches inspect``.

**Open until every item has an outcome.** Every way of finishing a batch first records a
``missing`` outcome (with its reason) for each item still open, with the same create-if-absent
commit, and only then writes the final state. So a completion can only count while its item is
open, the batch cannot finish with an item unaccounted for, and a late completion finds the
``missing`` outcome and is refused.

**No hot document: counting by aggregation (the choice).** Nothing is written per completion
but the item's own two documents. Counts are aggregation queries over the completion documents
(``count()``, ``sum(ok)``, ``sum(missing)`` in one query), run at a bounded rate by the
coordinator's progress tracker (at most about once a second per batch and instance, or at once
when its own tally says the batch may be done) and by the stall check. The batch document is
written only on state transitions and by a summary of the counts, at most once per
:data:`SUMMARY_INTERVAL_S` of server time (a precondition on its update time keeps concurrent
instances from doubling that). Why not sharded counters (Google's distributed-counter
solution): a shard still takes about one write per second, so the shard count would have to
follow the peak completion rate (workers x concurrency, unbounded), every read of the total
reads every shard, and an increment in the completion commit is one more write per item. The
completion documents already exist, one per item and written once, because exactly-once needs
them; counting them costs reads (one per 1,000 index entries) at a rate we choose, not writes
at a rate the workers choose. The cost: a count is O(items) on the server, so its latency grows
with the batch (bounded by the check rate, not multiplied by completions), and the finish is
seen up to one check interval after the last completion when several instances share a batch.

**Recovery before giving up.** The stall check (scheduled; needs no completion to arrive)
re-sends the open items of a batch idle for the policy's window, recording each attempt on its
item, up to ``max_attempts`` publishes per item; once every open item's attempts are spent it
closes the batch ``partial``, recording each one ``missing`` with why.

Correct **without transactions** (the Firestore emulator stalls concurrent transactions on one
document), using only atomic single commits and create-if-absent markers for transitions.
Times come from an injectable clock (``clock()`` returns an aware UTC datetime). Scans are
paged, so memory stays bounded however many batches or items there are.
"""

from __future__ import annotations

from shared.batch_store._finishing import SUMMARY_INTERVAL_S, Refresh
from shared.batch_store._inspect import Inspect
from shared.batch_store._outcomes import Outcomes
from shared.batch_store._publishing import ItemTooLarge, Publishing, work_message
from shared.batch_store._stall import Sender, StallCheck

__all__ = [
    "BatchStore",
    "ItemTooLarge",
    "Sender",
    "SUMMARY_INTERVAL_S",
    "Refresh",
    "work_message",
]


class BatchStore(Publishing, Outcomes, StallCheck, Inspect):
    """Batch state over one Firestore database. Thread-safe (the client is).

    Its parts, one module each: ``_documents`` (the layout, the batch document's reads, the
    outcome counts, paged scans, delete), ``_publishing`` (create, register, publish),
    ``_outcomes`` (exact-once completions, strays), ``_finishing`` (progress, close, finish),
    ``_stall`` (the stall check) and ``_inspect`` (status and inspection reads)."""
