"""The writes of ``test_write_round_trips.py`` when another writer acts alongside.

Fewer round trips leave less room between a read and the lock, not none: a
rename on another replica is in the next reply (names are read with the
issue, nothing cached); a deletion that queued behind another reads the file
again under the lock; a stale upload is refused before its content is read;
an upload over the issue's limit after another took the room writes
nothing; an attach holds the content row it found until it commits; and the
change feed still has one row per transaction, in commit order, naming every
entry written with the feed row or apart from it.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from write_support import (
    ADMIN,
    ALICE,
    change,
    connected,
    content,
    delete,
    upload,
    valued_issue,
    wait_behind_lock,
)

from bugless_core.errors import BuglessError, FailedPrecondition, IssueVersionConflict
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


async def test_another_replicas_rename_is_in_the_next_reply_and_read(
    bugless_model_backend: PostgresBackend, replica: PostgresBackend
) -> None:
    """Names come with the issue's row: nothing cached that a rename elsewhere leaves stale."""
    backend = bugless_model_backend
    issue, field = await valued_issue(backend)
    first = await change(backend, issue, v1.Priority.P1)
    assert first.issue is not None
    assert [v.name for v in first.issue.custom_fields] == [field.name]
    renamed = await replica.update_custom_field(
        v1.UpdateCustomFieldRequest(
            caller=ADMIN,
            custom_field=v1.CustomField(id=field.id, name="Renamed elsewhere"),
            update_mask=FieldMask(["name"]),
            expected_version=field.version,
        )
    )
    assert renamed.name == "Renamed elsewhere"
    second = await change(backend, first.issue, v1.Priority.P2)
    assert second.issue is not None
    assert [v.name for v in second.issue.custom_fields] == ["Renamed elsewhere"]
    uploaded = await upload(backend, second.issue)
    assert uploaded.issue is not None
    assert [v.name for v in uploaded.issue.custom_fields] == ["Renamed elsewhere"]
    read = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
    assert read == uploaded.issue
    batch = await backend.batch_get_issues(
        v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=[issue.id, issue.id + 10**9])
    )
    assert batch.issues == [read]


async def test_a_deletion_queued_behind_another_reads_the_file_again_under_the_lock(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The file read before locking is only trusted while the issue kept its version.

    Here another transaction deletes the same file while this deletion (at any
    version) waits for the issue's lock: it must find the file deleted, not
    delete it a second time.
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    uploaded = await upload(backend, issue)
    assert uploaded.attachment is not None
    assert uploaded.issue is not None
    attachment_id, version = uploaded.attachment.id, uploaded.issue.version
    async with connected(model_settings, 2) as (holder, watcher):
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT id FROM issues WHERE id = $1 FOR UPDATE", issue.id)
        deletion = asyncio.ensure_future(delete(backend, uploaded))
        await wait_behind_lock(watcher, deletion)
        await holder.execute("UPDATE issues SET version = version + 1 WHERE id = $1", issue.id)
        await holder.execute(
            "INSERT INTO issue_history (issue_id, version, author, created_at, "
            "deleted_attachment_id) VALUES ($1, $2, 'bob', now(), $3)",
            issue.id,
            version + 1,
            attachment_id,
        )
        await holder.execute(
            "UPDATE attachments SET deleted_in_version = $2 WHERE id = $1",
            attachment_id,
            version + 1,
        )
        await held.commit()
        with pytest.raises(FailedPrecondition, match="already deleted"):
            await deletion
    history = await backend.list_history(v1.ListHistoryRequest(caller=ALICE, issue_id=issue.id))
    assert [e.deleted_attachment_id for e in history.entries] == [0, 0, attachment_id]


async def test_a_stale_upload_is_refused_before_its_file_is_read(
    bugless_model_backend: PostgresBackend,
) -> None:
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    changed = await change(backend, issue, v1.Priority.P1)
    assert changed.issue is not None
    read: list[bytes] = []

    async def counted() -> AsyncIterator[bytes]:
        read.append(b"read")
        yield b"never stored"

    with pytest.raises(IssueVersionConflict) as raised:
        await backend.upload_attachment(
            v1.UploadAttachmentHeader(
                caller=ALICE, issue_id=issue.id, expected_version=issue.version, name="a.txt"
            ),
            counted(),
        )
    assert raised.value.grpc_status.name == "ABORTED"
    assert read == []
    listed = await backend.list_attachments(
        v1.ListAttachmentsRequest(caller=ALICE, issue_id=issue.id, include_deleted=True)
    )
    assert listed.attachments == []


async def test_entries_written_with_the_feed_row_are_in_the_feed_in_commit_order(
    bugless_model_backend: PostgresBackend,
) -> None:
    """One feed row per transaction still, naming every entry it wrote.

    A change, an upload and a deletion append their feed row with their entry;
    an atomic batch (two changes in one transaction) does not, so its one row
    names both entries; a change with a comment mentioning someone too.
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    other, _ = await valued_issue(backend)
    head = await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
    changed = await change(backend, issue, v1.Priority.P1)
    assert changed.issue is not None
    uploaded = await upload(backend, changed.issue)
    assert uploaded.issue is not None
    assert uploaded.attachment is not None
    deleted = await delete(backend, uploaded)
    assert deleted.issue is not None
    mentioned = await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ALICE,
            issue_id=issue.id,
            expected_version=deleted.issue.version,
            comment="over to @carol",
        )
    )
    assert mentioned.issue is not None
    batch = await backend.batch_change_issues(
        v1.BatchChangeIssuesRequest(
            caller=ALICE,
            atomic=True,
            issues=[
                v1.IssueVersion(issue_id=issue.id, expected_version=mentioned.issue.version),
                v1.IssueVersion(issue_id=other.id, expected_version=other.version),
            ],
            delta=v1.IssueDelta(
                fields=v1.IssueFields(priority=v1.Priority.P3), update_mask=FieldMask(["priority"])
            ),
        )
    )
    assert [r.code for r in batch.results] == [0, 0]
    feed = await backend.read_feed(
        v1.ReadFeedRequest(caller=ADMIN, after_position=head.head_position, max_changes=100)
    )
    written = [[(e.issue_id, e.version) for e in row.entries] for row in feed.changes]
    v = changed.issue.version
    assert written == [
        [(issue.id, v)],
        [(issue.id, v + 1)],
        [(issue.id, v + 2)],
        [(issue.id, v + 3)],
        [(issue.id, v + 4), (other.id, other.version + 1)],
    ]
    assert [c.position for c in feed.changes] == list(
        range(head.head_position + 1, head.head_position + 6)
    )
    assert all(c.author == ALICE.user_id for c in feed.changes)
    async with backend._pool.acquire() as conn:
        mentions = await conn.fetch(
            "SELECT username FROM issue_mentions WHERE issue_id = $1", issue.id
        )
    assert [r["username"] for r in mentions] == ["carol"]


async def test_an_upload_over_the_issue_limit_under_the_lock_writes_nothing(
    bugless_model_backend: PostgresBackend,
) -> None:
    """The limits are checked on the usage the version bump returns; a refusal undoes it.

    Upload B passes the checks before streaming; while its file streams, upload
    C takes the room left. Under the issue's lock B is refused ("per issue"):
    the issue keeps C's version, B's file is neither listed nor stored.
    """
    backend = bugless_model_backend
    issue, _ = await valued_issue(backend)
    kib = 1024
    current = issue
    for n in range(2):
        done = await backend.upload_attachment(
            v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name=f"{n}.bin"),
            content(bytes([n]) * (900 * kib)),
        )
        assert done.issue is not None
        current = done.issue
    streaming, release = asyncio.Event(), asyncio.Event()
    late = bytes([7]) * (900 * kib)

    async def paused() -> AsyncIterator[bytes]:
        streaming.set()
        await release.wait()
        yield late

    upload_b = asyncio.ensure_future(
        backend.upload_attachment(
            v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name="b.bin"), paused()
        )
    )
    await asyncio.wait_for(streaming.wait(), 10)
    upload_c = await backend.upload_attachment(
        v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name="c.bin"),
        content(bytes([8]) * (900 * kib)),
    )
    assert upload_c.issue is not None
    assert upload_c.issue.version == current.version + 1
    release.set()
    with pytest.raises(BuglessError, match="per issue") as raised:
        await upload_b
    assert raised.value.grpc_status.name == "RESOURCE_EXHAUSTED"
    read = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
    assert read == upload_c.issue
    listed = await backend.list_attachments(
        v1.ListAttachmentsRequest(caller=ALICE, issue_id=issue.id, include_deleted=True)
    )
    assert [a.name for a in listed.attachments] == ["0.bin", "1.bin", "c.bin"]
    assert not await backend.blob_store.exists(hashlib.sha256(late).hexdigest())


async def test_an_attach_holds_the_content_row_it_found_until_it_commits(
    replica: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The one statement that makes or finds the content's row also locks a row it found.

    A second upload of the same bytes finds the row; while it checks the
    content is still stored (its transaction open), a remover could not take
    the row: removal waits for the attach, then sees its reference.
    """
    backend = replica
    issue, _ = await valued_issue(backend)
    data = f"shared {uuid.uuid4()}".encode()
    first = await backend.upload_attachment(
        v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name="a.log"), content(data)
    )
    assert first.attachment is not None
    store = backend.blob_store
    checking, release = asyncio.Event(), asyncio.Event()
    exists = store.exists

    async def paused_exists(sha256: str) -> bool:
        checking.set()
        await release.wait()
        return await exists(sha256)

    store.exists = paused_exists  # type: ignore[method-assign]
    try:
        async with connected(model_settings, 1) as (remover,):
            second = asyncio.ensure_future(
                backend.upload_attachment(
                    v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name="b.log"),
                    content(data),
                )
            )
            await asyncio.wait_for(checking.wait(), 10)
            with pytest.raises(asyncpg.LockNotAvailableError):
                await remover.execute(
                    "SELECT 1 FROM attachment_contents WHERE sha256 = $1 FOR UPDATE NOWAIT",
                    bytes.fromhex(first.attachment.sha256),
                )
            release.set()
            done = await second
    finally:
        release.set()
        store.exists = exists  # type: ignore[method-assign]
    assert done.attachment is not None
    assert done.attachment.sha256 == first.attachment.sha256
