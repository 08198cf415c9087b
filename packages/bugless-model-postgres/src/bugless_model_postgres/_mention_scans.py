"""Queue issues for their mentions by scanning ``issues`` in batches of ids (migration 0028).

A new reading of mentions (migrations 0025, 0027) changes the ``mention:``
rows of the issues whose texts it may read differently. Which issues those
are is a SQL rule over the title and every history entry's text; queueing
them with one ``INSERT ... SELECT`` in the migration's transaction (as those
files did) holds one snapshot over the whole table during a rolling upgrade
on PostgreSQL, and on CockroachDB makes one transaction that may restart
for ever under the old replicas' writes, or outgrow its size limits.

So 0028 records what is to scan (``issue_mention_scans``: a rule's
migration, how far it got, where it ends) and :func:`queue_registered`, run
by ``PostgresBackend.migrate`` right after the files (the first step of
:func:`bugless_model_postgres._mentions.backfill`, which then drains the
queue), walks
``issues`` in ascending id order, :data:`SCAN_BATCH` issues per transaction:
each transaction locks its scan's row, queues the matching issues of its id
range and records the range's end, so a migrate stopped part-way (a killed
Job, a failover) continues from the last batch that committed, and the
queue it leaves is the one statement's. The ids need not be dense
(CockroachDB's are Snowflake ids): a batch's range ends at the id of its
:data:`SCAN_BATCH`-th issue. A range the server cancels past
``statement_timeout`` is taken again half as long (:mod:`._halving`), down
to one issue.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bugless_core.errors import Unavailable
from bugless_core.transactions import RetryPolicy, retrying
from bugless_model_postgres._halving import Halving, alone_past_timeout

__all__ = ["PROGRESS_SECONDS", "RESCAN", "RULES", "SCAN_BATCH", "queue_registered"]

_log = logging.getLogger(__name__)

#: Issues per scan transaction: a bounded read of issues and their history,
#: at most this many rows queued.
SCAN_BATCH = 1000
#: How often a long scan says how far it got (an upgrade's Job log).
PROGRESS_SECONDS = 30.0

#: The issues each migration's reading may change, as a condition on issue
#: ``i`` (its title, and the text of every history entry ``h``): the
#: statements of 0025 and 0027 as released, cut to an id range.
RULES: dict[int, str] = {
    25: """
        strpos(i.title, '@') > 0
        OR strpos(i.title, '&') > 0
        OR EXISTS (SELECT 1 FROM issue_history h
                    WHERE h.issue_id = i.id
                      AND (strpos(h.comment, '@') > 0 OR strpos(h.comment, '&') > 0))
    """,
    # `~` is POSIX on PostgreSQL, RE2 on CockroachDB; both read these
    # bracket expressions alike.
    27: """
        (strpos(i.title, '@') > 0 AND i.title ~ '[.+@-]_|_[.+@-]')
        OR EXISTS (SELECT 1 FROM issue_history h
                    WHERE h.issue_id = i.id
                      AND strpos(h.comment, '@') > 0
                      AND h.comment ~ '[.+@-]_|_[.+@-]')
    """,
}

#: Record migration ``$1``'s scan over every issue there is, from the start
#: (again, if it was recorded already): what 0028 records for an upgrade
#: from before that migration, and what an operator runs to queue again the
#: issues an old replica wrote during the rollout (docs/upgrades.md).
RESCAN = """
INSERT INTO issue_mention_scans (version, through_id)
SELECT $1, coalesce(max(id), 0) FROM issues
ON CONFLICT (version) DO UPDATE SET scanned_to = 0, through_id = excluded.through_id
"""
_SCANS = "SELECT version FROM issue_mention_scans ORDER BY version"
#: The scan's row, locked unless another migrate's batch holds it (then none).
_LOCK_SCAN = """
SELECT scanned_to, through_id FROM issue_mention_scans WHERE version = $1 FOR UPDATE SKIP LOCKED
"""
_RECORDED = "SELECT count(*) FROM issue_mention_scans WHERE version = $1"
_BATCH_END = """
SELECT max(b.id) FROM (SELECT id FROM issues
                        WHERE id > $1 AND id <= $2
                        ORDER BY id LIMIT $3) AS b
"""
_QUEUE = """
INSERT INTO issue_mentions_pending (issue_id)
SELECT i.id FROM issues i
 WHERE i.id > $1 AND i.id <= $2 AND ({rule})
ON CONFLICT (issue_id) DO NOTHING
"""
_ADVANCE = "UPDATE issue_mention_scans SET scanned_to = $2 WHERE version = $1"
_FINISHED = "DELETE FROM issue_mention_scans WHERE version = $1"


async def queue_registered(
    pool: Any,
    policy: RetryPolicy,
    *,
    batch: int = SCAN_BATCH,
    progress_seconds: float = PROGRESS_SECONDS,
) -> int:
    """Run every scan 0028 (or an operator) recorded to its end; how many issues it queued.

    Each batch is one transaction, re-run under ``policy`` when it loses a
    conflict with a writer. A scan whose row another migrate's batch holds
    (a second replica migrating at once) is left to that one, and said so:
    waiting would put this one behind each of its batches in turn (and, at
    SERIALIZABLE on PostgreSQL, fail it with 40001 each time the wait ends);
    should the holder stop, the next migrate finishes the scan. A finished
    scan's row is deleted.

    A range the server cancelled (``statement_timeout``: issues with long
    histories, or a wait that long for a writer's uncommitted queue row)
    recorded nothing and is taken again half as many issues long
    (:class:`._halving.Halving`), that size kept for the rest of the scan.
    How far it got is logged every ``progress_seconds``.

    Raises:
        Unavailable: the database went away, a batch kept conflicting
            (what the batches before it queued stays queued and recorded),
            or one issue alone ran past ``statement_timeout`` (the message
            names it and ``statement_timeout_seconds``; the scan goes on from
            it at the next migrate).
    """
    queued = 0
    async with pool.acquire() as conn:
        versions = [int(r["version"]) for r in await conn.fetch(_SCANS)]
    for version in versions:
        queued += await _scan(pool, version, policy, batch, progress_seconds)
    return queued


async def _scan(
    pool: Any, version: int, policy: RetryPolicy, batch: int, progress_seconds: float
) -> int:
    """Run migration ``version``'s scan from where it stopped to its end (or to another's)."""
    queue = _QUEUE.format(rule=RULES[version])
    name = f"migration {version:04d}'s mention scan"
    halving = Halving(name, batch, "issues a transaction", _log)
    started: tuple[int, int] | None = None
    queued = batches = 0
    held_elsewhere = False
    taken: list[int] = []  # the range being scanned (after, end), for the error of a slow one

    async def one_batch(size: int) -> tuple[int, int, int, int] | None:
        """Queue the next range: (scanned_to before, after, through_id, queued); None at the end."""
        nonlocal held_elsewhere
        taken.clear()
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_LOCK_SCAN, version)
            if row is None:  # finished, or another migrate's batch holds it
                held_elsewhere = bool(await conn.fetchval(_RECORDED, version))
                return None
            after, through = int(row["scanned_to"]), int(row["through_id"])
            end = await conn.fetchval(_BATCH_END, after, through, size)
            if end is None:
                await conn.execute(_FINISHED, version)
                return None
            taken[:] = [after, int(end)]
            status = await conn.execute(queue, after, end)
            await conn.execute(_ADVANCE, version, end)
            return after, int(end), through, int(status.rsplit(" ", 1)[-1])

    async def alone() -> Unavailable:
        issue = f"issue {taken[1]}" if taken else "the next issue"
        scanned = f" (scanned up to id {taken[0]})" if taken else ""
        return await alone_past_timeout(
            pool,
            f"{name}: scanning {issue}{scanned}",
            "the scan",
            "the issues before it are queued, the scan goes on from it",
        )

    said = time.monotonic()
    while (
        done := await halving.run(lambda size: retrying(policy, lambda: one_batch(size)), alone)
    ) is not None:
        after, end, through, count = done
        if started is None:
            started = (after, through)
            _log.info(
                "migration %04d's mention scan: queueing issues with ids after %d up to %d",
                version,
                after,
                through,
                extra={"version": version, "scanned_to": after, "through_id": through},
            )
        queued += count
        batches += 1
        if time.monotonic() - said >= progress_seconds:
            said = time.monotonic()
            _log.info(
                "migration %04d's mention scan: at id %d of %d, %d issues queued so far",
                version,
                end,
                through,
                queued,
                extra={"version": version, "scanned_to": end, "through_id": through},
            )
    if held_elsewhere:
        _log.info(
            "migration %04d's mention scan is being run by another migrate: left to it "
            "(a migrate run after that one stopped finishes it)",
            version,
            extra={"version": version},
        )
    if started is not None:
        _log.info(
            "migration %04d's mention scan: %s, %d issues queued in %d batches "
            "(ids after %d up to %d)",
            version,
            "the rest left to the other migrate" if held_elsewhere else "done",
            queued,
            batches,
            *started,
            extra={"version": version, "queued": queued, "batches": batches},
        )
    return queued
