"""UploadAttachment's write as the content's lock with a read, then one statement, on the database.

After its checks and its streaming, an upload takes its content's lock with
an unlocked read of the issue, checks the store, and writes the issue's
version, the file, its entry, its mentions and the change feed's row in one
statement, which writes only while the issue's row is the row version read.
When it finds the row moved on (a star on a connection of the tests' own,
holding the row while the call queues behind it; a change while the file
streams) it writes nothing and the locked path decides in the same
transaction, the content's lock still held. The tests compare what every
table the upload writes holds before and after.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from write_support import (
    ADMIN,
    ALICE,
    Sent,
    change,
    connected,
    content,
    valued_issue,
    wait_behind_lock,
)

from bugless_core.errors import IssueVersionConflict, Unavailable
from bugless_core.mentions import mentioned_usernames
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _follow, _upload_in_one
from bugless_proto import v1

#: The uploads' file name, and as it is stored folded (migration 0022).
NAME, FOLDED = "Straße.LOG", "strasse.log"
#: What the upload's statements after its checks start with.
LOCK_AND_READ = "WITH locked AS ( INSERT INTO attachment_contents"
WRITE = "WITH upd AS ( UPDATE issues AS i SET version = i.version + 1"


async def _tables(backend: PostgresBackend, issue_id: int) -> dict[str, Any]:
    """What an upload writes: the issue's row, entries, files, mentions, the feed's head, rows."""
    async with backend._pool.acquire() as conn:
        row = await conn.fetchrow(
            """
            SELECT (SELECT to_jsonb(i) - 'comments_tsv' - 'text_tsv' FROM issues i
                     WHERE i.id = $1)::text AS issue,
                   (SELECT array_agg(version || ':' || comment ORDER BY version)
                      FROM issue_history WHERE issue_id = $1) AS entries,
                   (SELECT array_agg(id || ':' || entry_version || ':' || name || ':'
                                     || folded_name ORDER BY id)
                      FROM attachments WHERE issue_id = $1) AS files,
                   (SELECT array_agg(username ORDER BY username)
                      FROM issue_mentions WHERE issue_id = $1) AS mentions,
                   (SELECT position FROM change_feed_state WHERE name = 'head') AS head,
                   (SELECT count(*) FROM change_feed) AS feed_rows
            """,
            issue_id,
        )
    assert row is not None
    return dict(row)


async def _reads(backend: PostgresBackend, issue_id: int) -> tuple[v1.Issue, v1.HistoryEntry]:
    issue = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue_id))
    history = await backend.list_history(v1.ListHistoryRequest(caller=ALICE, issue_id=issue_id))
    return issue, history.entries[-1]


def _header(issue: v1.Issue, version: int, comment: str = "") -> v1.UploadAttachmentHeader:
    return v1.UploadAttachmentHeader(
        caller=ALICE, issue_id=issue.id, expected_version=version, name=NAME, comment=comment
    )


async def _uploaded_once(
    backend: PostgresBackend, reply: v1.UploadAttachmentResponse, before: dict[str, Any]
) -> None:
    """One new version, one entry and one file at it, one feed row; the reply equals reads."""
    assert reply.issue is not None
    assert reply.attachment is not None
    after = await _tables(backend, reply.issue.id)
    version = reply.issue.version
    assert after["entries"][:-1] == before["entries"]
    assert after["entries"][-1].startswith(f"{version}:")
    assert after["files"] == [
        *(before["files"] or []),
        f"{reply.attachment.id}:{version}:{NAME}:{FOLDED}",
    ]
    assert (after["head"], after["feed_rows"]) == (before["head"] + 1, before["feed_rows"] + 1)
    assert (reply.issue, reply.entry) == await _reads(backend, reply.issue.id)
    assert reply.entry is not None
    assert reply.entry.attachments == [reply.attachment]
    got = await backend.get_attachment(
        v1.GetAttachmentRequest(caller=ALICE, attachment_id=reply.attachment.id)
    )
    assert got == reply.attachment


async def test_an_upload_is_its_checks_the_contents_lock_with_a_read_and_one_statement(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """5 statements (was 7: the checks, BEGIN, lock and read, bump, lock, file+entry+feed, COMMIT).

    The comment's mentions are written in the statement; the feed names the file.
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    before = await _tables(backend, issue.id)
    comment = "the log, for @carol and @dave"
    async with Sent(backend, model_settings.pool_max_size) as sent:
        reply = await backend.upload_attachment(
            _header(issue, issue.version, comment), content(f"{uuid.uuid4()}".encode())
        )
        statements = sent.take()
    assert len(statements) == 5
    assert statements[1] == "BEGIN;"
    assert statements[2].startswith(LOCK_AND_READ)
    assert statements[3].startswith(WRITE)
    assert statements[4] == "COMMIT;"
    await _uploaded_once(backend, reply, before)
    after = await _tables(backend, issue.id)
    assert after["mentions"] == sorted({*(before["mentions"] or []), *mentioned_usernames(comment)})
    assert reply.issue is not None
    assert reply.issue.comment_count == 2
    feed = await backend.read_feed(
        v1.ReadFeedRequest(caller=ADMIN, after_position=before["head"], max_changes=10)
    )
    assert [[(e.issue_id, e.version) for e in c.entries] for c in feed.changes] == [
        [(issue.id, issue.version + 1)]
    ]
    assert [a for c in feed.changes for e in c.entries for a in e.attachments] == [reply.attachment]


async def test_an_upload_racing_a_star_writes_nothing_in_one_statement_then_the_locked_path(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The star changes the row, not its version: the statement writes nothing at all.

    The locked path then uploads once in the same transaction (the
    content's lock held, the store not asked again): one entry, one version,
    one feed row, and the reply carries the star.
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    before = await _tables(backend, issue.id)
    store = backend.blob_store
    asked: list[str] = []
    exists = store.exists

    async def counted_exists(sha256: str) -> bool:
        asked.append(sha256)
        return await exists(sha256)

    store.exists = counted_exists  # type: ignore[method-assign]
    try:
        async with (
            Sent(backend, model_settings.pool_max_size) as sent,
            connected(model_settings, 2) as (holder, watcher),
        ):
            held = holder.transaction()
            await held.start()
            await holder.execute(_follow.ADD_STAR, issue.id, ALICE.user_id, issue.created_at)
            upload = asyncio.ensure_future(
                backend.upload_attachment(_header(issue, issue.version), content(b"starred"))
            )
            await wait_behind_lock(watcher, upload)
            await held.commit()
            reply = await upload
            statements = sent.take()
    finally:
        store.exists = exists  # type: ignore[method-assign]
    assert statements[2].startswith(LOCK_AND_READ)
    assert statements[3].startswith(WRITE)
    assert not any(s.startswith("INSERT INTO attachment_contents") for s in statements)
    assert len(asked) == 1
    assert reply.issue is not None
    assert reply.issue.starred
    assert reply.issue.star_count == 1
    assert reply.issue.version == issue.version + 1
    await _uploaded_once(backend, reply, before)


async def test_an_upload_whose_issue_changed_while_it_streamed_is_aborted_and_writes_nothing(
    bugless_model_backend: PostgresBackend,
) -> None:
    """The read after streaming sees the new version: the locked path refuses it (ABORTED).

    Nothing is written and the file's content leaves the store again.
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    streaming, release = asyncio.Event(), asyncio.Event()
    data = f"late {uuid.uuid4()}".encode()

    async def paused() -> AsyncIterator[bytes]:
        streaming.set()
        await release.wait()
        yield data

    upload = asyncio.ensure_future(
        backend.upload_attachment(_header(issue, issue.version), paused())
    )
    await asyncio.wait_for(streaming.wait(), 10)
    changed = await change(backend, issue, v1.Priority.P0)
    assert changed.issue is not None
    before = await _tables(backend, issue.id)
    release.set()
    with pytest.raises(IssueVersionConflict):
        await upload
    assert await _tables(backend, issue.id) == before
    assert not await backend.blob_store.exists(hashlib.sha256(data).hexdigest())


async def test_an_upload_whose_content_went_before_its_lock_is_told_to_send_it_again(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Content removed between the streaming and the lock: Unavailable, nothing written."""
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    before = await _tables(backend, issue.id)
    store = backend.blob_store
    data = f"gone {uuid.uuid4()}".encode()
    put = store.put

    async def put_then_lose(*args: Any, **kwargs: Any) -> Any:
        ref = await put(*args, **kwargs)
        await store.delete(ref.sha256)  # as a concurrent removal would
        return ref

    store.put = put_then_lose  # type: ignore[method-assign]
    try:
        with pytest.raises(Unavailable, match="send the file again"):
            await backend.upload_attachment(_header(issue, issue.version), content(data))
    finally:
        store.put = put  # type: ignore[method-assign]
    assert await _tables(backend, issue.id) == before


async def test_uploads_racing_to_one_issue_each_write_once(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Eight uploads at any version, two of the same bytes: eight entries, versions, feed rows.

    Those whose statement found the row moved on went down the locked path.
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    before = await _tables(backend, issue.id)
    bodies = [b"same bytes", b"same bytes", *(f"file {n}".encode() for n in range(6))]
    replies = await asyncio.gather(
        *(backend.upload_attachment(_header(issue, 0), content(body)) for body in bodies)
    )
    versions = sorted(r.issue.version for r in replies if r.issue is not None)
    assert versions == list(range(issue.version + 1, issue.version + 9))
    after = await _tables(backend, issue.id)
    assert len(after["entries"]) == len(before["entries"]) + 8
    assert len(after["files"]) == 8
    assert after["feed_rows"] == before["feed_rows"] + 8
    last = max(replies, key=lambda r: r.issue.version if r.issue is not None else 0)
    assert (last.issue, last.entry) == await _reads(backend, issue.id)


def test_the_statements_are_built_from_the_locked_paths_parts() -> None:
    """The mentions' part goes in before the entry; without mentions, the plain statement."""
    assert _upload_in_one.upload_in_one(mentions=False) == _upload_in_one.UPLOAD_IN_ONE
    with_mentions = _upload_in_one.upload_in_one(mentions=True)
    assert "unnest($15::text[])" in with_mentions
    assert with_mentions.index("mentioned AS") < with_mentions.index("entry AS")
