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

A batch the server cancels for running past ``statement_timeout`` is taken
again half as large, down to one issue (:func:`._queue_drains.drain`, the
one loop every such queue shares).
"""

from __future__ import annotations

import logging
from typing import Any

from bugless_core.transactions import COCKROACH_RETRIES
from bugless_model_postgres._mention_scans import PROGRESS_SECONDS
from bugless_model_postgres._queue_drains import Queue, drain

__all__ = ["REBUILD_BATCH", "rebuild"]

_log = logging.getLogger(__name__)

#: Issues per transaction: each reads its issues' whole history.
REBUILD_BATCH = 200

_QUEUE = Queue(
    table="issue_text_rebuilds",
    name="migration 0033's text rebuild",
    done="remade",
    doing="remaking the text vectors of",
    log=_log,
)
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

    async def remake(conn: Any, ids: list[int]) -> None:
        await conn.execute(_REMAKE, ids)

    return await drain(
        pool,
        _QUEUE,
        remake,
        batch=batch,
        retries=COCKROACH_RETRIES,
        progress_seconds=progress_seconds,
    )
