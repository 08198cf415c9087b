"""ChangeIssue as a read and one statement, against writers racing it on the real database.

A change of the issue's own fields and a comment reads the issue without
locks and writes the row, its entry and the change feed's row in one
statement, which writes only while the row is the row version read. A
writer holding the row makes it wait; the tests hold one on a connection of
their own (a star, which changes the row but not its version; a change,
which bumps the version; a bare row lock, which changes nothing), let the
change queue behind it (seen in ``pg_stat_activity``), commit, and check
the answer against reads. No timing: the tests wait for the state they need.
"""

from __future__ import annotations

import asyncio

import pytest
from write_support import ADMIN, ALICE, Holder, Sent, valued_issue

from bugless_core.errors import IssueVersionConflict
from bugless_core.mentions import mentioned_usernames
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _follow
from bugless_model_postgres import _mentions as _mentions_module
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

BOB = v1.Caller(user_id="bob", groups=["eng"])


def _priority(
    issue: v1.Issue, priority: v1.Priority, comment: str = "a comment", caller: v1.Caller = ALICE
) -> v1.ChangeIssueRequest:
    return v1.ChangeIssueRequest(
        caller=caller,
        issue_id=issue.id,
        expected_version=issue.version,
        delta=v1.IssueDelta(
            fields=v1.IssueFields(priority=priority), update_mask=FieldMask(["priority"])
        ),
        comment=comment,
    )


async def _reads(backend: PostgresBackend, issue_id: int) -> tuple[v1.Issue, v1.HistoryEntry]:
    issue = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue_id))
    history = await backend.list_history(v1.ListHistoryRequest(caller=ALICE, issue_id=issue_id))
    entry = history.entries[-1]
    entry.edited_in_version = 0
    return issue, entry


async def _feed_head(backend: PostgresBackend) -> int:
    head = await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
    return head.head_position


async def test_a_change_of_own_fields_is_a_read_and_one_statement(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """2 statements (was 5: BEGIN, lock and read, update, entry and feed, COMMIT)."""
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    head = await _feed_head(backend)
    async with Sent(backend, model_settings.pool_max_size) as sent:
        changed = await backend.change_issue(_priority(issue, v1.Priority.P1))
        statements = sent.take()
    assert len(statements) == 2
    assert not any(s in {"BEGIN;", "COMMIT;"} for s in statements)
    assert (changed.issue, changed.entry) == await _reads(backend, issue.id)
    feed = await backend.read_feed(
        v1.ReadFeedRequest(caller=ADMIN, after_position=head, max_changes=10)
    )
    assert changed.issue is not None
    assert [[(e.issue_id, e.version) for e in c.entries] for c in feed.changes] == [
        [(issue.id, changed.issue.version)]
    ]
    # Closing an issue holding custom values gives their search rows the status, in it too.
    async with backend._pool.acquire() as conn:
        before = await conn.fetch(
            "SELECT field_id, value, number, component_id, status FROM issue_custom_values "
            "WHERE issue_id = $1",
            issue.id,
        )
    assert [r["status"] for r in before] == [int(v1.Status.NEW)]
    async with Sent(backend, model_settings.pool_max_size) as sent:
        closed = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=changed.issue.version,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(status=v1.Status.FIXED), update_mask=FieldMask(["status"])
                ),
            )
        )
        assert len(sent.take()) == 2
    assert (closed.issue, closed.entry) == await _reads(backend, issue.id)
    async with backend._pool.acquire() as conn:
        after = await conn.fetch(
            "SELECT field_id, value, number, component_id, status FROM issue_custom_values "
            "WHERE issue_id = $1",
            issue.id,
        )
    assert [dict(r) for r in after] == [{**dict(r), "status": int(v1.Status.FIXED)} for r in before]


async def _mentions(backend: PostgresBackend, issue_id: int) -> list[str]:
    """The stored mentions, checked against what a resync computes from the texts."""
    async with backend._pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT username FROM issue_mentions WHERE issue_id = $1 ORDER BY 1", issue_id
        )
        texts = await conn.fetch(_mentions_module._TEXTS, [issue_id])
    names = [r["username"] for r in rows]
    assert names == sorted(mentioned_usernames(*(t["body"] for t in texts)))
    return names


async def test_a_comment_mentioning_someone_and_a_new_title_are_one_statement_too(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Mentions that can only be added go in the statement; a title dropping one resyncs."""
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    async with Sent(backend, model_settings.pool_max_size) as sent:
        changed = await backend.change_issue(_priority(issue, v1.Priority.P1, "over to @carol"))
        assert len(sent.take()) == 2
        assert changed.issue is not None
        titled = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=changed.issue.version,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(title="for @dave"), update_mask=FieldMask(["title"])
                ),
                comment="cc @erin",
            )
        )
        assert len(sent.take()) == 2
        assert (titled.issue, titled.entry) == await _reads(backend, issue.id)
        assert await _mentions(backend, issue.id) == ["carol", "dave", "erin"]
        assert titled.issue is not None
        retitled = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=titled.issue.version,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(title="quiet"), update_mask=FieldMask(["title"])
                ),
            )
        )
        assert "BEGIN;" in sent.take()  # dave may go: the locked path, which resyncs
    assert (retitled.issue, retitled.entry) == await _reads(backend, issue.id)
    assert await _mentions(backend, issue.id) == ["carol", "erin"]


async def test_a_change_queued_behind_a_star_answers_with_the_star(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The star changes the row, not its version: the read is stale, so the locked path answers."""
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    async with Holder(model_settings) as holder:
        await holder.conn.execute(_follow.ADD_STAR, issue.id, ALICE.user_id, issue.created_at)
        change = await holder.queued(backend.change_issue(_priority(issue, v1.Priority.P1)))
        await holder.commit()
        changed = await change
    assert changed.issue is not None
    assert changed.issue.starred
    assert changed.issue.star_count == issue.star_count + 1
    assert changed.issue.version == issue.version + 1
    assert (changed.issue, changed.entry) == await _reads(backend, issue.id)


async def test_a_change_queued_behind_a_bare_row_lock_still_writes_in_one_statement(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    async with Sent(backend, model_settings.pool_max_size) as sent:
        async with Holder(model_settings) as holder:
            await holder.conn.execute("SELECT id FROM issues WHERE id = $1 FOR UPDATE", issue.id)
            change = await holder.queued(backend.change_issue(_priority(issue, v1.Priority.P1)))
            await holder.commit()
            changed = await change
        assert len(sent.take()) == 2
    assert (changed.issue, changed.entry) == await _reads(backend, issue.id)


async def test_a_change_queued_behind_a_new_version_is_aborted_and_writes_nothing(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    head = await _feed_head(backend)
    async with Holder(model_settings) as holder:
        await holder.conn.execute(
            "UPDATE issues SET version = version + 1, priority = 1 WHERE id = $1", issue.id
        )
        await holder.conn.execute(
            "INSERT INTO issue_history (issue_id, version, author, created_at, comment) "
            "VALUES ($1, $2, 'bob', now(), 'first')",
            issue.id,
            issue.version + 1,
        )
        closing = v1.ChangeIssueRequest(
            caller=ALICE,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(status=v1.Status.FIXED), update_mask=FieldMask(["status"])
            ),
            comment="over to @zed",
        )
        change = await holder.queued(backend.change_issue(closing))
        await holder.commit()
        with pytest.raises(IssueVersionConflict) as raised:
            await change
    assert raised.value.grpc_status.name == "ABORTED"
    read, entry = await _reads(backend, issue.id)
    assert read.version == issue.version + 1
    assert (read.priority, read.status) == (v1.Priority.P0, v1.Status.NEW)
    assert (entry.version, entry.comment) == (issue.version + 1, "first")
    assert await _feed_head(backend) == head
    assert "zed" not in await _mentions(backend, issue.id)  # written only with the row
    async with backend._pool.acquire() as conn:
        statuses = await conn.fetch(
            "SELECT status FROM issue_custom_values WHERE issue_id = $1", issue.id
        )
    assert [r["status"] for r in statuses] == [int(v1.Status.NEW)]  # likewise


async def test_concurrent_changes_at_one_version_write_once(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Eight changes race at one version: one writes (entry, feed row), seven are ABORTED."""
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    head = await _feed_head(backend)
    callers = [v1.Caller(user_id=f"racer{n}", groups=["eng"]) for n in range(8)]
    priorities = [v1.Priority.P1, v1.Priority.P2, v1.Priority.P3, v1.Priority.P4] * 2
    results = await asyncio.gather(
        *(
            backend.change_issue(_priority(issue, p, f"from {c.user_id}", caller=c))
            for c, p in zip(callers, priorities, strict=True)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, v1.ChangeIssueResponse)]
    lost = [r for r in results if not isinstance(r, v1.ChangeIssueResponse)]
    assert len(won) == 1
    assert all(isinstance(r, IssueVersionConflict) for r in lost), lost
    assert (won[0].issue, won[0].entry) == await _reads(backend, issue.id)
    history = await backend.list_history(v1.ListHistoryRequest(caller=ALICE, issue_id=issue.id))
    assert [e.version for e in history.entries] == list(range(1, issue.version + 2))
    assert await _feed_head(backend) == head + 1


async def test_changes_racing_stars_answer_what_reads_return(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Changes chained at their replies' versions while another caller stars and unstars.

    Every reply equals an admin's read taken while no star runs: the last
    change's reply is compared after the stars have stopped; every reply's
    star count is one the star calls left (0 or 1).
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    stop = asyncio.Event()

    async def stars() -> int:
        done = 0
        while not stop.is_set():
            for starred in (True, False):
                await backend.star_issue(
                    v1.StarIssueRequest(caller=BOB, issue_id=issue.id, starred=starred)
                )
                done += 1
        return done

    starring = asyncio.ensure_future(stars())
    current, replies = issue, []
    for n in range(40):
        reply = await backend.change_issue(
            _priority(current, [v1.Priority.P1, v1.Priority.P2][n % 2], f"change {n}")
        )
        assert reply.issue is not None
        replies.append(reply)
        current = reply.issue
    stop.set()
    assert await starring > 0
    assert {r.issue.star_count for r in replies if r.issue} <= {0, 1}
    await backend.star_issue(v1.StarIssueRequest(caller=BOB, issue_id=issue.id, starred=False))
    last = await backend.change_issue(_priority(current, v1.Priority.P3, "last"))
    assert (last.issue, last.entry) == await _reads(backend, issue.id)
    history = await backend.list_history(v1.ListHistoryRequest(caller=ALICE, issue_id=issue.id))
    assert [e.comment for e in history.entries[-41:]] == [f"change {n}" for n in range(40)] + [
        "last"
    ]
