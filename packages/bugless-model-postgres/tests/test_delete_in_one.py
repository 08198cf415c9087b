"""DeleteAttachment as a read and one statement, refused or raced on the real database.

A deletion reads the file with its issue without locks and writes the
issue's version, the file's deletion, its entry and the change feed's row
in one statement, which writes only while the issue's row is the row
version read. A refused deletion sends nothing but its read; a deletion
whose statement finds the row moved on (a star, a deletion of the same file
on a connection of the tests' own, holding the row while the call queues
behind it) writes nothing there and the locked path decides. The tests
compare what every table the deletion writes holds before and after.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest
from write_support import (
    ADMIN,
    ALICE,
    Sent,
    connected,
    delete,
    upload,
    valued_issue,
    wait_behind_lock,
)

from bugless_core.errors import (
    BuglessError,
    FailedPrecondition,
    IssueVersionConflict,
    NotFound,
    PermissionDenied,
)
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _follow
from bugless_proto import v1

BOB = v1.Caller(user_id="bob", groups=["eng"])  # an editor, not the uploader
#: What the deletion's two statements start with.
READ = "SELECT i.id, i.title"
WRITE = "WITH upd AS ( UPDATE issues AS i SET version = i.version + 1"


async def _tables(backend: PostgresBackend, issue_id: int) -> dict[str, Any]:
    """What a deletion writes: the issue's row, its entries, its files, the feed's head and rows."""
    async with backend._pool.acquire() as conn:
        row = await conn.fetchrow(
            """
            SELECT (SELECT to_jsonb(i) - 'comments_tsv' - 'text_tsv' FROM issues i
                     WHERE i.id = $1)::text AS issue,
                   (SELECT array_agg(version || ':' || deleted_attachment_id ORDER BY version)
                      FROM issue_history WHERE issue_id = $1) AS entries,
                   (SELECT array_agg(id || ':' || deleted_in_version ORDER BY id)
                      FROM attachments WHERE issue_id = $1) AS files,
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


class _Filed(NamedTuple):
    """A fresh issue with a file alice uploaded."""

    issue_id: int
    reply: v1.UploadAttachmentResponse
    file: v1.Attachment
    #: The issue's version after the upload.
    version: int


async def _filed(backend: PostgresBackend) -> _Filed:
    issue, _ = await valued_issue(backend)
    uploaded = await upload(backend, issue)
    assert uploaded.issue is not None
    assert uploaded.attachment is not None
    return _Filed(issue.id, uploaded, uploaded.attachment, uploaded.issue.version)


async def _deleted_once(backend: PostgresBackend, filed: _Filed, before: dict[str, Any]) -> None:
    """The file was deleted by one new version, one entry naming it and one feed row."""
    after = await _tables(backend, filed.issue_id)
    version = filed.version + 1
    assert after["entries"] == [*before["entries"], f"{version}:{filed.file.id}"]
    assert after["files"] == [f"{filed.file.id}:{version}"]
    assert (after["head"], after["feed_rows"]) == (before["head"] + 1, before["feed_rows"] + 1)


async def test_a_deletion_is_a_read_and_one_statement(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """2 statements (was 6: BEGIN, the file read, lock and read, bump, entry and feed, COMMIT).

    The content's removal after it is 4 more, as before.
    """
    backend = bugless_model_backend
    filed = await _filed(backend)
    before = await _tables(backend, filed.issue_id)
    async with Sent(backend, model_settings.pool_max_size) as sent:
        deleted = await delete(backend, filed.reply, filed.version)
        statements = sent.take()
    assert len(statements) == 6
    assert statements[0].startswith(READ)
    assert statements[1].startswith(WRITE)
    # The content's removal, under its lock, in a transaction of its own.
    assert statements[2] == "BEGIN;"
    assert statements[3].startswith("INSERT INTO attachment_contents")
    assert statements[4].startswith("DELETE FROM attachment_contents")
    assert statements[5] == "COMMIT;"
    assert (deleted.issue, deleted.entry) == await _reads(backend, filed.issue_id)
    assert deleted.entry is not None
    assert deleted.entry.deleted_attachment_id == filed.file.id
    await _deleted_once(backend, filed, before)
    feed = await backend.read_feed(
        v1.ReadFeedRequest(caller=ADMIN, after_position=before["head"], max_changes=10)
    )
    assert [[(e.issue_id, e.version) for e in c.entries] for c in feed.changes] == [
        [(filed.issue_id, filed.version + 1)]
    ]
    assert [e.deleted_attachment_id for c in feed.changes for e in c.entries] == [filed.file.id]
    assert not await backend.blob_store.exists(filed.file.sha256)


async def test_a_refused_deletion_sends_only_its_read_and_writes_nothing(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Each refusal of the locked path, in its order, from the read alone."""
    backend = bugless_model_backend
    filed = await _filed(backend)
    issue = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=filed.issue_id))
    gone = await upload(backend, issue)
    assert gone.issue is not None
    assert gone.attachment is not None
    deleted = await delete(backend, gone, gone.issue.version)
    assert deleted.issue is not None
    current = deleted.issue.version
    file, deleted_file = filed.file.id, gone.attachment.id
    stranger = v1.Caller(user_id="mallory")
    hidden = await backend.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN,
            name=f"hidden-{issue.id}",
            acl=[v1.AclEntry(principal=v1.Principal(user="alice"), role=v1.Role.ADMIN)],
        )
    )
    secret = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE, fields=v1.IssueFields(title="secret", component_id=hidden.id)
        )
    )
    secret_file = await upload(backend, secret)
    assert secret_file.attachment is not None
    refusals: list[tuple[v1.Caller, int, int, type[BuglessError], str | None]] = [
        (ALICE, 10**12, 0, NotFound, f"attachment {10**12} not found"),
        (stranger, secret_file.attachment.id, 0, NotFound, "not found"),
        (ALICE, file, current - 1, IssueVersionConflict, None),
        (BOB, file, current - 1, IssueVersionConflict, None),  # before the uploader check
        (BOB, file, current, PermissionDenied, "only its uploader or an admin"),
        (ALICE, deleted_file, current, FailedPrecondition, "already deleted"),
    ]
    before = await _tables(backend, issue.id)
    for caller, attachment_id, version, error, message in refusals:
        async with Sent(backend, model_settings.pool_max_size) as sent:
            with pytest.raises(error, match=message):
                await backend.delete_attachment(
                    v1.DeleteAttachmentRequest(
                        caller=caller, attachment_id=attachment_id, expected_version=version
                    )
                )
            statements = sent.take()
        assert [s[: len(READ)] for s in statements] == [READ], (caller, attachment_id)
        assert await _tables(backend, issue.id) == before


async def test_a_deletion_racing_a_star_writes_nothing_in_one_statement_then_the_locked_path(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The star changes the row, not its version: the statement writes nothing at all.

    The locked path then deletes once: one entry, one version, one feed row,
    and the reply carries the star.
    """
    backend = bugless_model_backend
    filed = await _filed(backend)
    before = await _tables(backend, filed.issue_id)
    async with (
        Sent(backend, model_settings.pool_max_size) as sent,
        connected(model_settings, 2) as (holder, watcher),
    ):
        held = holder.transaction()
        await held.start()
        await holder.execute(_follow.ADD_STAR, filed.issue_id, ALICE.user_id, filed.file.created_at)
        deletion = asyncio.ensure_future(delete(backend, filed.reply, filed.version))
        await wait_behind_lock(watcher, deletion)
        await held.commit()
        deleted = await deletion
        statements = sent.take()
    assert statements[0].startswith(READ)
    assert statements[1].startswith(WRITE)
    assert statements[2] == "BEGIN;"  # the locked path
    assert deleted.issue is not None
    assert deleted.issue.starred
    assert deleted.issue.version == filed.version + 1
    assert (deleted.issue, deleted.entry) == await _reads(backend, filed.issue_id)
    await _deleted_once(backend, filed, before)


async def test_deletions_of_one_file_racing_delete_it_once(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Six callers delete one file at once: one entry, one feed row; the others are refused."""
    backend = bugless_model_backend
    filed = await _filed(backend)
    before = await _tables(backend, filed.issue_id)
    results = await asyncio.gather(
        *(delete(backend, filed.reply, version) for version in (0, 0, 0, *[filed.version] * 3)),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, v1.ChangeIssueResponse)]
    lost = [r for r in results if not isinstance(r, v1.ChangeIssueResponse)]
    assert len(won) == 1
    assert all(isinstance(r, FailedPrecondition | IssueVersionConflict) for r in lost), lost
    assert (won[0].issue, won[0].entry) == await _reads(backend, filed.issue_id)
    await _deleted_once(backend, filed, before)
