"""Text vectors made again after migrating, a batch of issues per transaction.

Migration 0033 queues the issues whose ``comments_tsv`` and ``text_tsv``
lack their files' descriptions (``issue_text_rebuilds``); :func:`rebuild`,
run by ``PostgresBackend.migrate`` right after the files, makes them again
from the stored texts. Done in the migration's own transaction, as 0033 did
at first, that was one UPDATE holding the row locks of every such issue
until the whole upgrade committed, while the replicas of the earlier release
still served writes to them (and, on CockroachDB, one transaction as large
as the deployment's imported files). Here each batch is one short
transaction that locks its issues in id order, as every writer does, so a
write waits for a batch at most, and a migrate stopped part-way leaves the
rest queued for the next one.

A batch runs under the migrate pool's ``statement_timeout``
(``statement_timeout_seconds``, 30 s by default). Issues with very long
histories can make a batch of :data:`REBUILD_BATCH` run past it, and the
next migrate would take the same batch and fail on it again; so a batch the
server cancelled is taken again half as large, down to one issue, and only
an issue that alone runs past the timeout stops the migrate, naming the
issue and the setting to raise.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg

from bugless_core.errors import Unavailable
from bugless_core.transactions import COCKROACH_RETRIES, retrying
from bugless_model_postgres import _queries as q
from bugless_model_postgres._mention_scans import PROGRESS_SECONDS

__all__ = ["REBUILD_BATCH", "rebuild"]

_log = logging.getLogger(__name__)

#: Issues per transaction: each reads its issues' whole history.
REBUILD_BATCH = 200

_NEXT = """
SELECT issue_id FROM issue_text_rebuilds ORDER BY issue_id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
_DONE = "DELETE FROM issue_text_rebuilds WHERE issue_id = ANY ($1::bigint[])"
_LEFT = "SELECT count(*) FROM issue_text_rebuilds"
#: The vectors of the issues ``$1`` names, as an edit on CockroachDB makes
#: them: each entry's latest text (a redacted one is blank), then the
#: descriptions of the files it attached, in entry order. 0033's first
#: statement, for one batch.
_REMAKE = """
UPDATE issues AS i
   SET comments_tsv = t.tsv, text_tsv = to_tsvector('english', i.title) || t.tsv
  FROM (SELECT cur.issue_id,
               to_tsvector('english',
                           coalesce(string_agg(concat_ws(' ', cur.body, d.described),
                                               ' ' ORDER BY cur.original), '')) AS tsv
          FROM (SELECT DISTINCT ON (h.issue_id, coalesce(nullif(h.edits_version, 0), h.version))
                       h.issue_id, coalesce(nullif(h.edits_version, 0), h.version) AS original,
                       h.comment AS body
                  FROM issue_history h
                 WHERE h.issue_id = ANY ($1::bigint[])
                 ORDER BY h.issue_id, coalesce(nullif(h.edits_version, 0), h.version),
                          h.version DESC) cur
               LEFT JOIN (SELECT issue_id, entry_version,
                                 string_agg(description, ' ' ORDER BY id) AS described
                            FROM attachments
                           WHERE description <> '' AND issue_id = ANY ($1::bigint[])
                           GROUP BY issue_id, entry_version) d
                      ON d.issue_id = cur.issue_id AND d.entry_version = cur.original
         GROUP BY cur.issue_id) t
 WHERE i.id = t.issue_id
"""


async def rebuild(
    pool: Any, *, batch: int = REBUILD_BATCH, progress_seconds: float = PROGRESS_SECONDS
) -> int:
    """Make the queued issues' vectors again, ``batch`` issues a transaction; how many.

    Several replicas may run it at once: a batch takes queued issues no
    other batch holds. A batch that lost a conflict (CockroachDB, or
    PostgreSQL at SERIALIZABLE) is run again. The vectors are what the
    stored texts say, so an issue done twice (queued again by a rerun of
    0033's statements) comes out the same.

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
    done = batches = 0
    size = batch
    said = started = time.monotonic()
    left = int(await pool.fetchval(_LEFT))
    if left:
        _log.info(
            "migration 0033's text rebuild: %d issues queued, %d a transaction",
            left,
            size,
            extra={"left": left},
        )

    taken: list[int] = []  # the batch being made, for the error of a slow one

    async def one_batch() -> list[int]:
        taken.clear()
        async with pool.acquire() as conn, conn.transaction():
            ids = [int(r["issue_id"]) for r in await conn.fetch(_NEXT, size)]
            taken[:] = ids
            if ids:
                await conn.fetch(q.LOCK_ISSUES, ids)
                await conn.execute(_REMAKE, ids)
                await conn.execute(_DONE, ids)
        return ids

    while True:
        try:
            ids = await retrying(COCKROACH_RETRIES, one_batch)
        except asyncpg.QueryCanceledError as exc:
            if size == 1:
                raise await _too_slow_alone(pool, taken) from exc
            size = max(1, size // 2)
            _log.warning(
                "migration 0033's text rebuild: a batch ran past statement_timeout and was "
                "cancelled; taking %d issues a transaction from here",
                size,
                extra={"batch": size},
            )
            continue
        if not ids:
            break
        done += len(ids)
        batches += 1
        if time.monotonic() - said >= progress_seconds:
            said = time.monotonic()
            left = int(await pool.fetchval(_LEFT))
            _log.info(
                "migration 0033's text rebuild: %d issues remade, %d left",
                done,
                left,
                extra={"remade": done, "left": left},
            )
    if done:
        _log.info(
            "migration 0033's text rebuild: done, %d issues remade in %d batches in %.0f s",
            done,
            batches,
            time.monotonic() - started,
            extra={"remade": done},
        )
    return done


async def _too_slow_alone(pool: Any, taken: list[int]) -> Unavailable:
    """The error of an issue whose rebuild alone runs past ``statement_timeout``."""
    timeout = await pool.fetchval("SHOW statement_timeout")
    issue = f"issue {taken[0]}" if taken else "the next queued issue"
    return Unavailable(
        f"migration 0033's text rebuild: remaking the text vectors of {issue} alone "
        f"ran past the database's statement_timeout ({timeout}), or waited that long for a "
        "lock on it; nothing of that issue changed. Raise statement_timeout_seconds "
        "(--statement-timeout-seconds, BUGLESS_STATEMENT_TIMEOUT_SECONDS) for the migrate and "
        "run it again: the issues before it are done, it and those after it stay queued"
    )
