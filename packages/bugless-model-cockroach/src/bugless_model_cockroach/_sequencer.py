"""The change feed's sequencer: numbers committed pending changes into ``change_feed``.

A write transaction here appends its change to ``change_feed_pending``
(migration 0026 of this package) instead of taking a position from the
``head`` row, which overlapping SERIALIZABLE writers cannot share. The
sequencer gives positions afterwards, in one transaction: it locks the
``head`` row (``SELECT ... FOR UPDATE``, its first statement), reads what is
pending, orders it (:func:`sequence_order`), and one statement
(:data:`~bugless_model_cockroach._queries.SEQUENCE_FEED`) inserts the first
:data:`BATCH` at ``head + 1 ...``, deletes them and moves ``head``. Only
sequencers write ``head``, so writers never wait or restart because of it,
and positions stay dense (one writer of ``head`` at a time).

Order. Each issue's changes keep their commit order because their
versions say it: a change of an issue is numbered only after every pending
change holding a lower version of that issue. A pass that sees a change
sees the issue's earlier ones (they committed before it began: both wrote
the issue's row), so none is left for a later pass. Changes no issue
relates are numbered by ``committed_at`` (the writer's clock), then
``ticket``: roughly in time, as nothing promises more. No shared
counter orders them: a sequence would put one range every write waits for
(cross-region, on a multi-region cluster) back in front of every write,
and ``cluster_logical_timestamp()`` fixes a transaction's timestamp, so a
writer the pass's read pushes would restart instead of refreshing.

Who runs it: the feed's readers, before they read the head or the rows
(the PostgreSQL backend's ``ChangeFeed.catch_up``: ReadFeed, each Watch
poll, and pruning, once a minute, so the pending table stays bounded where
nobody reads), one pass at a time per process, and only when something is
pending (one read outside the transaction; no lock is taken otherwise).
Two replicas' passes at once queue on the ``head`` row's lock: the second
starts reading once the first committed, and finds what it left. (Without
the lock they met on ``head`` all the same, but the second failed with
40001 and, under constant writes with many replicas, could lose often
enough for a reader to get UNAVAILABLE.) A lease (``LeaseLock``) was not
used: a sequencer holding it and dying would stall every replica's feed
until the lease expired (its TTL of latency for every notification),
where the row lock is released the moment a pass ends, or its connection.
A pass that fails (:meth:`Sequencer.sequence` raises) fails no reader:
the reader logs it and reads what is numbered, and a later pass numbers
the rest (the PostgreSQL backend's ``ChangeFeed.catch_up``).

Isolation. On CockroachDB the pass runs SERIALIZABLE (there is nothing
else in 23.2): the lock is its first statement, so a pass that waited
for it has read nothing its pushed timestamp could invalidate; a writer
inserting into the pending span after the pass read it has its timestamp
pushed above the read and refreshes its reads at commit, which fails (a
restart) only if something it read changed meanwhile. On PostgreSQL
(compatibility mode) SERIALIZABLE would give every writer an
rw-antidependency from the pass (the pass read the range the writer
inserts into), and SSI aborts a writer that has one in and one out (it
read a row another transaction then changed): measured, the feed added
restarts. So there the pass runs READ COMMITTED, which takes no predicate
locks: each statement reads a snapshot taken after the lock is held (a
snapshot showing an issue's later change shows its earlier ones), and only
a holder of the lock deletes pending rows or moves ``head``, so the tickets
read are still pending when the numbering statement runs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg

from bugless_core.transactions import RetryPolicy, retrying
from bugless_model_cockroach import _queries as q
from bugless_model_postgres.seam import translated_errors

_log = logging.getLogger(__name__)

#: Pending changes one statement numbers; a pass loops while it fills one.
BATCH = 500


def sequence_order(pending: Sequence[Any]) -> list[Any]:
    """The tickets of ``pending`` rows in the order they are to be numbered.

    Rows have ``ticket``, ``committed_at``, ``issue_ids`` and ``versions``.
    Order: by ``(committed_at, ticket)``, except that a row holding an
    issue's version comes after every row holding a lower version of that
    issue (a topological order of those constraints, the earliest key
    first). Any prefix of it is a batch that can be numbered alone.
    """
    rows = sorted(pending, key=lambda r: (r["committed_at"], r["ticket"]))
    holders: dict[int, list[tuple[int, int]]] = {}
    for index, row in enumerate(rows):
        for issue_id, version in zip(row["issue_ids"], row["versions"], strict=True):
            holders.setdefault(issue_id, []).append((version, index))
    after: list[set[int]] = [set() for _ in rows]
    waiting = [0] * len(rows)
    for held in holders.values():
        held.sort()
        for (_, first), (_, then) in itertools.pairwise(held):
            if first != then and then not in after[first]:
                after[first].add(then)
                waiting[then] += 1
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for then in after[index]:
            waiting[then] -= 1
            if waiting[then] == 0:
                heapq.heappush(ready, then)
    if len(order) < len(rows):  # pragma: no cover - versions grow in commit order
        _log.error(
            "change feed: pending changes hold issue versions in no possible commit order; "
            "numbering %d of them by time",
            len(rows) - len(order),
        )
        numbered = set(order)
        order += [index for index in range(len(rows)) if index not in numbered]
    return [rows[index]["ticket"] for index in order]


class Sequencer:
    """Numbers the changes committed to ``change_feed_pending`` (a ``FeedSequencer``)."""

    def __init__(self, pool: asyncpg.Pool, policy: RetryPolicy, *, batch: int = BATCH) -> None:
        """Sequence through ``pool``, retrying conflicts with other replicas by ``policy``."""
        self._pool = pool
        self.policy = policy
        self._batch = batch
        #: The pass's isolation level (the database's: SERIALIZABLE);
        #: compatibility mode sets ``read_committed`` (see the module).
        self.isolation: Literal["serializable", "read_committed"] = "serializable"
        #: Changes numbered and passes run by this sequencer (read by tests).
        self.numbered = 0
        self.passes = 0

    async def sequence(self) -> int:
        """Number every change committed so far; how many were numbered.

        Raises:
            Unavailable: the database is away, or the pass conflicted with
                other replicas' more often than the policy retries.
        """
        total = 0
        while True:
            done = await retrying(self.policy, self._one_batch)
            total += done
            if done < self._batch:
                break
        self.numbered += total
        self.passes += 1
        return total

    async def _one_batch(self) -> int:
        """Number the first :data:`BATCH` pending changes in :func:`sequence_order`."""
        async with translated_errors(), self._pool.acquire() as conn:
            if not await self._anything_pending(conn):
                return 0
            async with conn.transaction(isolation=self.isolation):
                await conn.execute(q.LOCK_HEAD)  # another replica's pass: wait for it
                pending = await conn.fetch(q.PENDING_CHANGES)
                if not pending:
                    return 0
                tickets = sequence_order(pending)[: self._batch]
                row = await conn.fetchrow(q.SEQUENCE_FEED, tickets)
        if row is None or row["numbered"] != row["gone"] or row["numbered"] != len(tickets):
            msg = f"the sequencing statement answered {row!r} for {len(tickets)} changes"
            raise RuntimeError(msg)  # pragma: no cover - one snapshot read them all
        return len(tickets)

    async def _anything_pending(self, conn: Any) -> bool:
        """Whether anything is pending, read at the pass's isolation level.

        At the database's SERIALIZABLE in compatibility mode even this one
        read would give each writer an rw-antidependency (see the module).
        """
        if self.isolation == "serializable":
            return bool(await conn.fetchval(q.ANY_PENDING))
        async with conn.transaction(isolation=self.isolation, readonly=True):
            return bool(await conn.fetchval(q.ANY_PENDING))
