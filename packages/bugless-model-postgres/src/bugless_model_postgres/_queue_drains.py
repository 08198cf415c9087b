"""Drain a queue of issues after migrating, a batch per transaction, halving past the timeout.

Work a migration leaves for after its files (0033's text vectors,
:mod:`._text_rebuilds`; the ``mention:`` rows of 0011 and later readings,
:mod:`._mentions`) is a queue table of issue ids, drained by
``PostgresBackend.migrate`` in short transactions: each takes the next
queued issues no other replica's batch holds, locks them in id order as
every writer does, does its work and deletes them from the queue. A
migrate stopped part-way leaves the rest queued for the next one.

A batch runs under the migrate pool's ``statement_timeout``
(``statement_timeout_seconds``, 30 s by default). Issues with very long
histories can make a fixed batch run past it, and the next migrate would
take the same batch and fail on it again, for ever, until an operator
guessed to raise the timeout. So :func:`drain` takes a batch the server
cancelled (rolled back, nothing changed) again half as large, down to one
issue (:class:`._halving.Halving`, as every pass after migrating does), and
only an issue that alone runs past the timeout stops the migrate, naming
the issue and the setting to raise. One loop for every queue, so each says
the same things the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bugless_core.errors import Unavailable
from bugless_core.transactions import RetryPolicy, retrying
from bugless_model_postgres import _queries as q
from bugless_model_postgres._halving import Halving, alone_past_timeout
from bugless_model_postgres._mention_scans import PROGRESS_SECONDS

__all__ = ["Queue", "drain"]

#: The work of one batch: the connection (in the batch's transaction, its
#: issues locked) and the ids.
Work = Callable[[Any, list[int]], Awaitable[None]]


@dataclass(frozen=True)
class Queue:
    """A queue table of issue ids and how its drain speaks of itself.

    Attributes:
        table: The queue table (its one column ``issue_id``).
        name: The drain in log lines and errors ("migration 0033's text rebuild").
        done: What was done to an issue, past tense ("remade").
        doing: What is done to an issue's data, for the error ("remaking the
            text vectors of").
        log: The logger of the module that owns the queue.
    """

    table: str
    name: str
    done: str
    doing: str
    log: logging.Logger


async def drain(
    pool: Any,
    queue: Queue,
    work: Work,
    *,
    batch: int,
    retries: RetryPolicy,
    progress_seconds: float = PROGRESS_SECONDS,
) -> int:
    """Do ``work`` for every issue of ``queue``, ``batch`` issues a transaction; how many.

    Several replicas may run it at once: a batch takes queued issues no
    other batch holds. A batch that lost a conflict (CockroachDB, or
    PostgreSQL at SERIALIZABLE) is run again under ``retries``.

    A batch the server cancelled (``statement_timeout``: long histories, or
    a wait for an issue's lock that long) changed nothing and is taken again
    half as large; the smaller size is kept for the rest of the run, as the
    issues around it are likely as heavy. How far it got is logged every
    ``progress_seconds``, and once when done.

    Raises:
        Unavailable: one issue alone ran past ``statement_timeout``: the
            message names it and ``statement_timeout_seconds``; the issues
            before it are done and it stays queued for the next migrate.
    """
    take = f"SELECT issue_id FROM {queue.table} ORDER BY issue_id LIMIT $1 FOR UPDATE SKIP LOCKED"
    remove = f"DELETE FROM {queue.table} WHERE issue_id = ANY ($1::bigint[])"
    count = f"SELECT count(*) FROM {queue.table}"
    log = queue.log
    done = batches = 0
    halving = Halving(queue.name, batch, "issues a transaction", log)
    said = started = time.monotonic()
    left = int(await pool.fetchval(count))
    if left:
        log.info(
            "%s: %d issues queued, %d a transaction",
            queue.name,
            left,
            halving.size,
            extra={"left": left},
        )

    taken: list[int] = []  # the batch being done, for the error of a slow one

    async def one_batch(size: int) -> list[int]:
        taken.clear()
        async with pool.acquire() as conn, conn.transaction():
            ids = [int(r["issue_id"]) for r in await conn.fetch(take, size)]
            taken[:] = ids
            if ids:
                await conn.fetch(q.LOCK_ISSUES, ids)
                await work(conn, ids)
                await conn.execute(remove, ids)
        return ids

    while True:
        ids = await halving.run(
            lambda size: retrying(retries, lambda: one_batch(size)),
            lambda: _too_slow_alone(pool, queue, taken),
        )
        if not ids:
            break
        done += len(ids)
        batches += 1
        if time.monotonic() - said >= progress_seconds:
            said = time.monotonic()
            left = int(await pool.fetchval(count))
            log.info(
                "%s: %d issues %s, %d left",
                queue.name,
                done,
                queue.done,
                left,
                extra={queue.done: done, "left": left},
            )
    if done:
        log.info(
            "%s: done, %d issues %s in %d batches in %.0f s",
            queue.name,
            done,
            queue.done,
            batches,
            time.monotonic() - started,
            extra={queue.done: done},
        )
    return done


async def _too_slow_alone(pool: Any, queue: Queue, taken: list[int]) -> Unavailable:
    """The error of an issue whose work alone runs past ``statement_timeout``."""
    issue = f"issue {taken[0]}" if taken else "the next queued issue"
    return await alone_past_timeout(
        pool,
        f"{queue.name}: {queue.doing} {issue}",
        "that issue",
        "the issues before it are done, it and those after it stay queued",
    )
