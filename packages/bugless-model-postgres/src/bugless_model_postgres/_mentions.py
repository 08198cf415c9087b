"""Who is ``@mentioned`` in each issue, kept as rows for ``mention:`` searches.

``issue_mentions`` (migration 0011) holds one row per issue and username
mentioned in the issue's title, in the current text of its
description or a comment (the latest edit of each entry, redacted text
blank) or in a file's description (an imported file's), each name by its
key (:func:`bugless_core.usernames.username_key`: "@Ölaf" and "@ölaf" are
one row, migration 0023). Mentions are found with
the one rule the web's renderer and the notifier use
(:func:`bugless_core.mentions.mentioned_usernames`), so a search finds
exactly the mentions people see linked and were notified of.

Every write that changes those texts calls :func:`add` (a new comment or a
new issue: mentions can only grow) or :func:`sync` (an import: recomputed
from what is stored) inside its own transaction. An edit and a redaction
read the issue's stored mentions with the entry they change (:data:`STORED`)
and, only when a name the entry's old text mentions may go
(``_edits.names_may_go``), its other texts with the vectors they rebuild
(``_edits.BUMP_AFTER_EDIT``), and write only the difference
(:func:`set_names`: no statement when the names stay the same); a title
change only adds names unless the old title's mentions may go
(:func:`title_change_only_adds`). Issues written before 0011, and those
whose texts a later reading (0023, 0025, 0027) may read differently, are
filled by :func:`backfill`, which the Model runs right after migrating,
after :mod:`._mention_scans` has queued them.
"""

from __future__ import annotations

import logging
from typing import Any

from bugless_core.mentions import mentioned_usernames
from bugless_core.transactions import COCKROACH_RETRIES
from bugless_model_postgres import _mention_scans
from bugless_model_postgres import _queries as q
from bugless_model_postgres._convert import NOT_IMPORTED_FIELD
from bugless_model_postgres._mention_scans import PROGRESS_SECONDS
from bugless_model_postgres._queue_drains import Queue, drain

__all__ = [
    "STORED",
    "add",
    "backfill",
    "not_imported_texts",
    "set_names",
    "sync",
    "sync_many",
    "title_change_only_adds",
]

_log = logging.getLogger(__name__)


def not_imported_texts(issues: str) -> str:
    """The texts of the files an import did not copy, of the issues ``issues`` selects.

    ``issues`` is a condition on ``h.issue_id``, as for
    :func:`._queries.current_entries`. Each row: ``issue_id``, ``version``
    the entry, ``ord`` the text's place in it, ``body`` the text (the
    ``added`` of its ``files_not_imported`` change: name, why, description,
    as ``_imports`` shows them). Written by people at the source, so they
    are searched (``_edits._DESCRIBED``) and mention (:data:`_TEXTS`) as the
    comment they were before the import recorded them as a change: one
    reading for both, so search and ``mention:`` agree.
    """
    return f"""
SELECT h.issue_id, h.version, n.ord, n.body
  FROM issue_history h,
       jsonb_array_elements(h.changes) c,
       jsonb_array_elements_text(c -> 'added') WITH ORDINALITY n (body, ord)
 WHERE {issues}
   AND h.changes @> '[{{"field": "{NOT_IMPORTED_FIELD}"}}]'::jsonb
   AND c ->> 'field' = '{NOT_IMPORTED_FIELD}'"""


_ISSUES = "h.issue_id = ANY ($1::bigint[])"
#: The title, then the current text of every entry (its latest edit), then
#: the description of every file (an imported file's, migration 0031:
#: written by a person, so it mentions as a comment does), then the texts of
#: the files an import did not copy (:func:`not_imported_texts`) of each
#: issue of $1, by ``issue_id``.
_TEXTS = f"""
SELECT title AS body, id AS issue_id FROM issues WHERE id = ANY ($1::bigint[])
UNION ALL
SELECT cur.body, cur.issue_id FROM ({q.current_entries(_ISSUES)}) cur
UNION ALL
SELECT description, issue_id FROM attachments
 WHERE issue_id = ANY ($1::bigint[]) AND description <> ''
UNION ALL
SELECT t.body, t.issue_id FROM ({not_imported_texts(_ISSUES)}) t
"""
#: The usernames stored as mentioned in issue ``$1``, as a text array.
STORED = "ARRAY(SELECT m.username FROM issue_mentions m WHERE m.issue_id = $1)"
_INSERT = """
INSERT INTO issue_mentions (issue_id, username)
SELECT $1, n FROM unnest($2::text[]) AS n
ON CONFLICT DO NOTHING
"""
_DELETE_OTHERS = """
DELETE FROM issue_mentions WHERE issue_id = $1 AND NOT (username = ANY ($2::text[]))
"""
#: The (issue $2[n], username $3[n]) pairs are the mentions of the issues
#: of $1: the others go, the missing ones come.
_DELETE_OTHERS_OF = """
DELETE FROM issue_mentions m
 WHERE m.issue_id = ANY ($1::bigint[])
   AND NOT EXISTS (SELECT 1 FROM unnest($2::bigint[], $3::text[]) AS k(issue_id, username)
                    WHERE k.issue_id = m.issue_id AND k.username = m.username)
"""
_INSERT_PAIRS = """
INSERT INTO issue_mentions (issue_id, username)
SELECT k.issue_id, k.username FROM unnest($1::bigint[], $2::text[]) AS k(issue_id, username)
ON CONFLICT DO NOTHING
"""
_QUEUE = Queue(
    table="issue_mentions_pending",
    name="the mention backfill",
    done="filled",
    doing="recomputing the mentions of",
    log=_log,
)
#: Issues per backfill transaction.
BACKFILL_BATCH = 500
#: The backfill runs beside writers and other replicas' backfills, on either
#: backend (at SERIALIZABLE in compatibility mode): a batch that lost a
#: conflict is run again, with the jittered tries CockroachDB needs (on
#: PostgreSQL at READ COMMITTED its row locks queue instead, and it seldom
#: needs one).
BACKFILL_RETRIES = COCKROACH_RETRIES


async def add(conn: Any, issue_id: int, *texts: str) -> None:
    """Record the mentions in ``texts``, new text of issue ``issue_id``."""
    names = mentioned_usernames(*texts)
    if names:
        await conn.execute(_INSERT, issue_id, names)


async def set_names(conn: Any, issue_id: int, stored: list[str], names: list[str]) -> None:
    """Make issue ``issue_id``'s mentions ``names``, where ``stored`` are the ones it has.

    ``stored`` was read under the issue's row lock (every writer of these
    rows holds it), so the difference is exact: usually empty (an edit or a
    redaction seldom adds or drops a mention), then nothing is sent.
    """
    wanted = set(names)
    gone = [n for n in stored if n not in wanted]
    have = set(stored)
    new = [n for n in names if n not in have]
    if gone:
        await conn.execute(_DELETE_OTHERS, issue_id, names)
    if new:
        await conn.execute(_INSERT, issue_id, new)


def title_change_only_adds(old_title: str, new_title: str, comment: str) -> bool:
    """Whether a title change (with ``comment``) can only add mentions.

    The stored mentions are those of the old title and of every entry's
    text. When every name the old title mentions is still mentioned by the
    new title or the comment, no stored name can go: :func:`add` of the new
    title and the comment is the whole update, with no read. Otherwise the
    caller recomputes from what is stored (:func:`sync`).
    """
    kept = set(mentioned_usernames(new_title, comment))
    return all(n in kept for n in mentioned_usernames(old_title))


async def sync(conn: Any, issue_id: int) -> None:
    """Recompute issue ``issue_id``'s mentions from its stored texts."""
    await sync_many(conn, [issue_id])


async def sync_many(conn: Any, issue_ids: list[int]) -> None:
    """Recompute the mentions of each of ``issue_ids`` from its stored texts.

    Three statements however many issues (the texts, the rows that go,
    those that come; the last only when a name is mentioned), where an issue
    at a time took three each: the backfill's batch of 500 sent 1,500.
    """
    texts: dict[int, list[str]] = {i: [] for i in issue_ids}
    for row in await conn.fetch(_TEXTS, issue_ids):
        texts[row["issue_id"]].append(row["body"] or "")
    pairs = [(i, name) for i, bodies in texts.items() for name in mentioned_usernames(*bodies)]
    ids = [i for i, _ in pairs]
    names = [name for _, name in pairs]
    await conn.execute(_DELETE_OTHERS_OF, issue_ids, ids, names)
    if pairs:
        await conn.execute(_INSERT_PAIRS, ids, names)


async def backfill(
    pool: Any, *, batch: int = BACKFILL_BATCH, progress_seconds: float = PROGRESS_SECONDS
) -> int:
    """Queue what the recorded scans still have to, then fill the queue's mentions; how many.

    The scans (:func:`._mention_scans.queue_registered`, migration 0028)
    queue first, so the queue this drains is whole. Batches of ``batch``
    issues (:func:`._queue_drains.drain`), each in one transaction that
    locks its issues first (one statement, in id order as every writer
    locks them), so a write racing it recomputes after (or before) it,
    never in between, and recomputes them together (:func:`sync_many`: six
    statements a batch with its queue's, where an issue at a time sent four
    an issue); a batch that lost a conflict is run again
    (:data:`BACKFILL_RETRIES`). Several replicas may run it at once: each
    batch takes queued issues no other batch holds (a batch done twice
    would write the same rows, but the two would wait on each other's
    locks). Stopped part-way, the next run goes on from what the committed
    batches left. A batch cancelled by ``statement_timeout`` is taken again
    half as large; an issue that alone runs past it stops the migrate.

    Raises:
        Unavailable: one issue alone ran past ``statement_timeout``: the
            message names it and ``statement_timeout_seconds``; the issues
            before it are filled and it stays queued for the next migrate.
    """
    await _mention_scans.queue_registered(pool, BACKFILL_RETRIES)
    return await drain(
        pool,
        _QUEUE,
        sync_many,
        batch=batch,
        retries=BACKFILL_RETRIES,
        progress_seconds=progress_seconds,
    )
