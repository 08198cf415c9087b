"""The change feed's sequencer: numbers committed pending changes into ``change_feed``.

A write transaction here appends its change to ``change_feed_pending``
(migration 0026 of this package) instead of taking a position from the
``head`` row, which overlapping SERIALIZABLE writers cannot share. The
sequencer gives positions afterwards: one statement
(:data:`~bugless_model_cockroach._queries.SEQUENCE_FEED`) takes the pending
changes in ticket order, inserts them at ``head + 1 ...``, deletes them and
moves ``head``. Only sequencers write ``head``, so writers never wait or
restart because of it; positions stay dense (one writer of ``head`` at a
time) and each issue's changes keep their commit order (tickets do: see
the migration).

Who runs it: the feed's readers, before they read the head or the rows
(the PostgreSQL backend's ``ChangeFeed.catch_up``: ReadFeed, each Watch
poll, and pruning, once a minute, so the pending table stays bounded where
nobody reads), one pass at a time per process. Two replicas'
passes at once meet on ``head``: one fails with 40001 and is retried by
the backend's policy, finding what the other left. A lease
(``LeaseLock``) was not used: a sequencer holding it and dying would stall
every replica's feed until the lease expired (its TTL of latency for every
notification), where a conflict costs one retry of a short statement.

Isolation. On CockroachDB the pass runs SERIALIZABLE (there is nothing
else in 23.2): a writer inserting into the pending span after the pass
read it has its timestamp pushed above the read and refreshes its reads
at commit, which fails (a restart) only if something it read changed
meanwhile. On PostgreSQL (compatibility mode) SERIALIZABLE would give
every writer an rw-antidependency from the pass (the pass read the range
the writer inserts into), and SSI aborts a writer that has one in and one
out (any page another writer changed after it read it): measured, the
feed added restarts. So there the pass runs REPEATABLE READ, which takes
no predicate locks: it still sees one snapshot (all of an issue's earlier
changes if it sees a later one), and two passes still meet on ``head``
(the second's update of a row the first changed fails with 40001).
"""

from __future__ import annotations

from typing import Literal

import asyncpg

from bugless_core.transactions import RetryPolicy, retrying
from bugless_model_cockroach import _queries as q
from bugless_model_postgres.seam import translated_errors

#: Pending changes one statement numbers; a pass loops while it fills one.
BATCH = 500


class Sequencer:
    """Numbers the changes committed to ``change_feed_pending`` (a ``FeedSequencer``)."""

    def __init__(self, pool: asyncpg.Pool, policy: RetryPolicy, *, batch: int = BATCH) -> None:
        """Sequence through ``pool``, retrying conflicts with other replicas by ``policy``."""
        self._pool = pool
        self.policy = policy
        self._batch = batch
        #: The pass's isolation level; ``None``: the database's (SERIALIZABLE).
        #: Compatibility mode sets ``repeatable_read`` (see the module).
        self.isolation: Literal["repeatable_read"] | None = None
        #: Changes numbered and passes run by this process (tests, metrics).
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
        async with translated_errors(), self._pool.acquire() as conn:
            if self.isolation is None:
                row = await conn.fetchrow(q.SEQUENCE_FEED, self._batch)
            else:
                async with conn.transaction(isolation=self.isolation):
                    row = await conn.fetchrow(q.SEQUENCE_FEED, self._batch)
        if (
            row is None or row["numbered"] != row["gone"]
        ):  # pragma: no cover - one row, one snapshot
            msg = f"the sequencing statement answered {row!r}"
            raise RuntimeError(msg)
        numbered: int = row["numbered"]
        return numbered
