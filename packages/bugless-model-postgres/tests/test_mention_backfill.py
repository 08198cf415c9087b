"""The mention backfill recomputes a batch of queued issues in a few set statements.

``_mentions.backfill`` drains ``issue_mentions_pending`` after an upgrade
(migration 0028's scans queue it). It locked and recomputed one issue at a
time: a lock, a read of the texts, a delete and an insert per issue, some
2,000 statements for each batch of 500. Now a batch is its queue read, one
lock of its issues (in id order, as every writer takes them), one read of
their texts, one delete, one insert and the queue's delete, whatever its
size; the mentions it leaves are those the writers wrote.
"""

from __future__ import annotations

from write_support import ALICE, Sent, fresh_component

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _mentions
from bugless_model_postgres._convert import Conn
from bugless_proto import v1

#: Two batches, the second short.
_ISSUES = _mentions.BACKFILL_BATCH + 20


async def _filed(backend: PostgresBackend, component_id: int, n: int) -> v1.Issue:
    """Issue ``n``: mentions in the title, the description or neither, by turns."""
    title = f"ask @ann{n % 4}" if n % 2 else f"plain {n}"
    description = f"cc @bob{n % 3}, not me@bob.example" if n % 3 else "no one"
    return await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title=title, component_id=component_id),
            description=description,
        )
    )


async def _stored(conn: Conn, ids: list[int]) -> dict[int, list[str]]:
    rows = await conn.fetch(
        "SELECT issue_id, array_agg(username ORDER BY username) AS names"
        "  FROM issue_mentions WHERE issue_id = ANY ($1::bigint[]) GROUP BY issue_id",
        ids,
    )
    return {r["issue_id"]: list(r["names"]) for r in rows}


async def test_a_backfill_recomputes_each_batch_in_set_statements(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """520 queued issues, some rows missing and some stale: two batches of six statements.

    Every 40th issue has a comment mentioning @dave edited to mention
    @carol instead (only the current text counts, read for every issue of
    the batch at once). The rows the writers wrote are the answer: they are
    removed (and a stale name added to every 7th issue), the issues queued,
    and the backfill makes them again.
    """
    backend = bugless_model_backend
    component = (await fresh_component(backend, "backfill")).id
    issues = [await _filed(backend, component, n) for n in range(_ISSUES)]
    for issue in issues[::40]:
        answer = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=issue.version,
                delta=v1.IssueDelta(),
                comment="over to @dave",
            )
        )
        assert answer.issue is not None
        await backend.edit_comment(
            v1.EditCommentRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=answer.issue.version,
                entry_version=answer.issue.version,
                comment="over to @carol",
            )
        )
    ids = [i.id for i in issues]
    async with backend._pool.acquire() as conn:
        written = await _stored(conn, ids)
        assert written[ids[0]] == ["carol"]  # "plain 0", "no one", the edited comment
        assert written[ids[1]] == ["ann1", "bob1"]
        await conn.execute("DELETE FROM issue_mentions WHERE issue_id = ANY ($1::bigint[])", ids)
        await conn.execute(
            "INSERT INTO issue_mentions (issue_id, username)"
            " SELECT i, 'zed' FROM unnest($1::bigint[]) i",
            ids[::7],
        )
        await conn.execute(
            "INSERT INTO issue_mentions_pending (issue_id) SELECT unnest($1::bigint[])", ids
        )

    async with Sent(backend, model_settings.pool_max_size) as sent:
        done = await _mentions.backfill(backend._pool)

    assert done == _ISSUES
    async with backend._pool.acquire() as conn:
        assert await _stored(conn, ids) == written
        assert await conn.fetchval("SELECT count(*) FROM issue_mentions_pending") == 0
    # Per batch: the queue, the lock, the texts, the delete, the insert, the
    # queue's delete (and BEGIN, COMMIT); then the empty look that ends the
    # drain, after the scans' look (none recorded) and the queue's count the
    # drain logs once when it starts: 21 in all, 2,010 before.
    assert sent.starting("SELECT id FROM issues WHERE id = ANY") == 2
    assert sent.starting("SELECT title AS body") == 2
    assert sent.starting("DELETE FROM issue_mentions m") == 2
    assert sent.starting("INSERT INTO issue_mentions (issue_id, username)") == 2
    assert sent.starting("SELECT issue_id FROM issue_mentions_pending") == 3
    assert sent.starting("SELECT count(*) FROM issue_mentions_pending") == 1
    assert len(sent.statements) <= 21, sent.statements
