"""Round trips the write calls no longer make, and that their answers stay the same.

Each write here used to send statements it could do without: the names of
an issue's custom fields (now read with the issue, so another replica's
rename is seen at once: no cache), the version check of an attachment
deletion (now read with the attachment), the attachment read again after a
redaction (the redaction returns its hash), an edit's separate reads of the
entry and its current text and its four writes of the issue and the entry
(now two), and, with a change listener, a read of every entry it wrote (now
built from the rows the write returned). Removing content no attachment
needs any more checks and forgets it in one statement; a change, an
upload, a deletion (marking its file deleted there too) and a redaction
write their entry with the change-feed row, an upload reads its issue's
usage with the version bump, and the content's row is made or locked in
one statement. An upload inserts its file with its entry and the feed
row; an edit writes its entry last, with the feed row, and an edit, a
redaction and a title change keep the mentions without reading them all
again; a change listener's issue is built from the write's rows.
The tests count what is sent, and check the answers against reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from bugless_core.errors import BuglessError, FailedPrecondition, IssueVersionConflict
from bugless_core.mentions import mentioned_usernames
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _mentions
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

ADMIN = v1.Caller(user_id="root", admin=True)
ALICE = v1.Caller(user_id="alice", groups=["eng"])
#: What the statements this file says are gone start with.
FIELD_NAMES = "SELECT id, name, type FROM custom_fields"
ISSUE_VERSION = "SELECT i.version, c.effective_acl FROM issues i"
ATTACHMENT_BY_ID = "SELECT a.*, i.component_id"
FETCH_ENTRY = "SELECT * FROM issue_history WHERE issue_id = $1 AND version = $2"


class _Sent:
    """The statements a backend's pool sends while entered (asyncpg's query logger)."""

    def __init__(self, backend: PostgresBackend, size: int) -> None:
        self._backend = backend
        self._size = size
        self.statements: list[str] = []

    def _record(self, logged: Any) -> None:
        text = " ".join(str(logged.query).split())
        if "typeinfo_tree" not in text and "'jit'" not in text:
            self.statements.append(text)

    async def _each_connection(self, method: str) -> None:
        pool = self._backend._pool
        connections = [await pool.acquire() for _ in range(self._size)]  # all of them
        for conn in connections:
            getattr(conn, method)(self._record)
            await pool.release(conn)

    def starting(self, prefix: str) -> int:
        """How many statements sent start with ``prefix``."""
        return sum(s.startswith(prefix) for s in self.statements)

    def take(self) -> list[str]:
        """The statements sent since the last take."""
        taken, self.statements = self.statements, []
        return taken

    async def __aenter__(self) -> _Sent:
        await self._each_connection("add_query_logger")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._each_connection("remove_query_logger")


async def _content(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _valued_issue(backend: PostgresBackend) -> tuple[v1.Issue, v1.CustomField]:
    """An issue in a fresh component, holding a value of the component's custom field."""
    component = await backend.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"trips-{uuid.uuid4().hex[:8]}")
    )
    field = await backend.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=component.id,
            name=f"Found in {uuid.uuid4().hex[:6]}",
            type=v1.CustomFieldType.TEXT,
        )
    )
    issue = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title="a crash", component_id=component.id),
            description="first words",
            custom_fields=[v1.CustomFieldValue(field_id=field.id, values=["1.2"])],
        )
    )
    return issue, field


async def _upload(backend: PostgresBackend, issue: v1.Issue) -> v1.UploadAttachmentResponse:
    return await backend.upload_attachment(
        v1.UploadAttachmentHeader(
            caller=ALICE, issue_id=issue.id, expected_version=issue.version, name="crash.log"
        ),
        _content(f"a log of {uuid.uuid4()}\n".encode()),
    )


async def _change(
    backend: PostgresBackend, issue: v1.Issue, priority: v1.Priority
) -> v1.ChangeIssueResponse:
    return await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ALICE,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(priority=priority), update_mask=FieldMask(["priority"])
            ),
            comment="a comment",
        )
    )


async def test_writes_read_names_with_the_issue_and_deletions_their_version_with_the_file(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Statements per call on an issue with a custom value (READ COMMITTED).

    ChangeIssue 2 (was 7), UploadAttachment 7 (14), DeleteAttachment 10
    (18), EditComment 6 (13), Redact of a file 10 (17), the removal of the
    content after those two included; the reply still names the field.
    """
    backend = bugless_model_backend
    issue, field = await _valued_issue(backend)
    names = [
        v1.CustomFieldValue(field_id=field.id, values=["1.2"], name=field.name, type=field.type)
    ]
    async with _Sent(backend, model_settings.pool_max_size) as sent:
        changed = await _change(backend, issue, v1.Priority.P1)
        assert len(sent.take()) == 2  # a read and one statement (test_change_in_one)
        uploaded = await _upload(backend, changed.issue or issue)
        assert len(sent.take()) == 7  # the file inserted with its entry and the feed row
        assert uploaded.attachment is not None
        assert uploaded.issue is not None
        deleted = await backend.delete_attachment(
            v1.DeleteAttachmentRequest(
                caller=ALICE,
                attachment_id=uploaded.attachment.id,
                expected_version=uploaded.issue.version,
            )
        )
        statements = sent.take()
        assert len(statements) == 10
        assert sum(s.startswith(ATTACHMENT_BY_ID) for s in statements) == 1
        assert deleted.issue is not None
        assert changed.entry is not None
        edited = await backend.edit_comment(
            v1.EditCommentRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=deleted.issue.version,
                entry_version=changed.entry.version,
                comment="a better comment",
            )
        )
        assert len(sent.take()) == 6  # was 9: the mentions' read and the entry with the feed
        assert edited.issue is not None
        again = await _upload(backend, edited.issue)
        assert again.attachment is not None
        assert again.issue is not None
        sent.take()
        redacted = await backend.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=again.issue.version,
                target=v1.RedactionTarget.ATTACHMENT,
                attachment_id=again.attachment.id,
            )
        )
        statements = sent.take()
        assert len(statements) == 10
        assert not any(s.startswith(ATTACHMENT_BY_ID) for s in statements)
        assert sent.starting(FIELD_NAMES) == 0
    for reply in (changed, deleted, edited, redacted):
        assert reply.issue is not None
        assert reply.issue.custom_fields == names
    for uploaded_reply in (uploaded, again):
        assert uploaded_reply.issue is not None
        assert uploaded_reply.issue.custom_fields == names
    read = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))
    assert redacted.issue == read
    # The redacted file's content left the store (it was the only reference).
    assert not await backend.blob_store.exists(again.attachment.sha256)


async def test_another_replicas_rename_is_in_the_next_reply_and_read(
    bugless_model_backend: PostgresBackend, replica: PostgresBackend
) -> None:
    """Names come with the issue's row: nothing cached that a rename elsewhere leaves stale."""
    backend = bugless_model_backend
    issue, field = await _valued_issue(backend)
    first = await _change(backend, issue, v1.Priority.P1)
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
    second = await _change(backend, first.issue, v1.Priority.P2)
    assert second.issue is not None
    assert [v.name for v in second.issue.custom_fields] == ["Renamed elsewhere"]
    uploaded = await _upload(backend, second.issue)
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
    issue, _ = await _valued_issue(backend)
    uploaded = await _upload(backend, issue)
    assert uploaded.attachment is not None
    assert uploaded.issue is not None
    attachment_id, version = uploaded.attachment.id, uploaded.issue.version
    settings = {"search_path": f'"{model_settings.schema}"'}
    holder = await asyncpg.connect(model_settings.database_url, server_settings=settings)
    watcher = await asyncpg.connect(model_settings.database_url, server_settings=settings)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT id FROM issues WHERE id = $1 FOR UPDATE", issue.id)
        deletion = asyncio.ensure_future(
            backend.delete_attachment(
                v1.DeleteAttachmentRequest(caller=ALICE, attachment_id=attachment_id)
            )
        )
        waiting = 0
        while not waiting and not deletion.done():
            await asyncio.sleep(0.01)
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        assert waiting, "the deletion did not wait for the issue's lock"
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
    finally:
        await holder.close()
        await watcher.close()
    history = await backend.list_history(v1.ListHistoryRequest(caller=ALICE, issue_id=issue.id))
    assert [e.deleted_attachment_id for e in history.entries] == [0, 0, attachment_id]


async def test_a_stale_upload_is_refused_before_its_file_is_read(
    bugless_model_backend: PostgresBackend,
) -> None:
    backend = bugless_model_backend
    issue, _ = await _valued_issue(backend)
    changed = await _change(backend, issue, v1.Priority.P1)
    assert changed.issue is not None
    read: list[bytes] = []

    async def content() -> AsyncIterator[bytes]:
        read.append(b"read")
        yield b"never stored"

    with pytest.raises(IssueVersionConflict) as raised:
        await backend.upload_attachment(
            v1.UploadAttachmentHeader(
                caller=ALICE, issue_id=issue.id, expected_version=issue.version, name="a.txt"
            ),
            content(),
        )
    assert raised.value.grpc_status.name == "ABORTED"
    assert read == []
    listed = await backend.list_attachments(
        v1.ListAttachmentsRequest(caller=ALICE, issue_id=issue.id, include_deleted=True)
    )
    assert listed.attachments == []


async def test_listeners_hear_the_entries_reads_return_without_reading_them_back(
    replica: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Entries the write returned are not read again; the other sides of relations are."""
    backend = replica
    heard: list[tuple[v1.Issue, v1.HistoryEntry]] = []
    backend.add_change_listener(lambda issue, entry: heard.append((issue, entry)))
    issue, _ = await _valued_issue(backend)
    other = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title="blocked", component_id=issue.component_id),
        )
    )
    heard.clear()
    async with _Sent(backend, model_settings.pool_max_size) as sent:
        changed = await _change(backend, issue, v1.Priority.P1)
        assert changed.issue is not None
        uploaded = await _upload(backend, changed.issue)
        assert uploaded.issue is not None
        assert uploaded.attachment is not None
        deleted = await backend.delete_attachment(
            v1.DeleteAttachmentRequest(
                caller=ALICE,
                attachment_id=uploaded.attachment.id,
                expected_version=uploaded.issue.version,
            )
        )
        assert deleted.issue is not None
        assert changed.entry is not None
        edited = await backend.edit_comment(
            v1.EditCommentRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=deleted.issue.version,
                entry_version=changed.entry.version,
                comment="a better comment",
            )
        )
        assert edited.issue is not None
        assert sent.starting(FETCH_ENTRY) == 0
        related = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=edited.issue.version,
                delta=v1.IssueDelta(blocking_add=[other.id]),
            )
        )
        # The other side's entry is written without RETURNING: read after the commit.
        assert sent.starting(FETCH_ENTRY) == 1
    assert related.issue is not None
    entries = [r.entry for r in (changed, uploaded, deleted, edited, related)]
    assert [(i.id, e.version) for i, e in heard] == [
        *((issue.id, e.version) for e in entries if e is not None),
        (other.id, 2),
    ]
    history = await backend.list_history(v1.ListHistoryRequest(caller=ADMIN, issue_id=issue.id))
    by_version = {e.version: e for e in history.entries}
    others = await backend.list_history(v1.ListHistoryRequest(caller=ADMIN, issue_id=other.id))
    by_version_other = {e.version: e for e in others.entries}
    for heard_issue, entry in heard:
        expected = (by_version if heard_issue.id == issue.id else by_version_other)[entry.version]
        expected.edited_in_version = 0  # ListHistory's own mark, never in an event
        for attached in expected.attachments:
            attached.deleted_in_version = 0  # by a later entry, after this one was heard
        assert entry == expected
        assert heard_issue.version == entry.version  # as read after that write's commit
    # A listener's entry is its own message, not the reply's.
    assert uploaded.entry is not None
    assert heard[1][1] == uploaded.entry
    assert heard[1][1] is not uploaded.entry
    assert heard[1][1].attachments == [uploaded.attachment]


async def test_entries_written_with_the_feed_row_are_in_the_feed_in_commit_order(
    bugless_model_backend: PostgresBackend,
) -> None:
    """One feed row per transaction still, naming every entry it wrote.

    A change, an upload and a deletion append their feed row with their entry;
    an atomic batch (two changes in one transaction) does not, so its one row
    names both entries; a change with a comment mentioning someone too.
    """
    backend = bugless_model_backend
    issue, _ = await _valued_issue(backend)
    other, _ = await _valued_issue(backend)
    head = await backend.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
    changed = await _change(backend, issue, v1.Priority.P1)
    assert changed.issue is not None
    uploaded = await _upload(backend, changed.issue)
    assert uploaded.issue is not None
    assert uploaded.attachment is not None
    deleted = await backend.delete_attachment(
        v1.DeleteAttachmentRequest(caller=ALICE, attachment_id=uploaded.attachment.id)
    )
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
    written = [[(e.issue_id, e.version) for e in change.entries] for change in feed.changes]
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
    issue, _ = await _valued_issue(backend)
    kib = 1024
    current = issue
    for n in range(2):
        done = await backend.upload_attachment(
            v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name=f"{n}.bin"),
            _content(bytes([n]) * (900 * kib)),
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
        _content(bytes([8]) * (900 * kib)),
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
    issue, _ = await _valued_issue(backend)
    data = f"shared {uuid.uuid4()}".encode()
    first = await backend.upload_attachment(
        v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name="a.log"), _content(data)
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
    settings = {"search_path": f'"{model_settings.schema}"'}
    remover = await asyncpg.connect(model_settings.database_url, server_settings=settings)
    try:
        second = asyncio.ensure_future(
            backend.upload_attachment(
                v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name="b.log"),
                _content(data),
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
        await remover.close()
    assert done.attachment is not None
    assert done.attachment.sha256 == first.attachment.sha256


async def test_mentions_after_edits_redactions_and_title_changes_are_what_a_resync_finds(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """An edit or redaction writes only the mentions that changed; a title change reads none.

    After every write the stored mentions equal what ``_mentions.sync``
    computes from the stored texts (the rule before: a read and two writes
    per edit, redaction and title change).
    """
    backend = bugless_model_backend
    component = await backend.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"mentions-{uuid.uuid4().hex[:8]}")
    )
    issue = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title="about @ann", component_id=component.id),
            description="hi @bob",
        )
    )

    async def stored() -> list[str]:
        async with backend._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT username FROM issue_mentions WHERE issue_id = $1 ORDER BY 1", issue.id
            )
            texts = await conn.fetch(_mentions._TEXTS, issue.id)
        names = [r["username"] for r in rows]
        assert names == sorted(mentioned_usernames(*(t["body"] for t in texts)))
        return names

    def mention_writes(statements: list[str]) -> list[str]:
        return [
            s
            for s in statements
            if s.startswith(("DELETE FROM issue_mentions", "INSERT INTO issue_mentions"))
            or s.startswith("SELECT title AS body")
        ]

    async def edit(current: v1.Issue, entry: int, text: str) -> v1.Issue:
        reply = await backend.edit_comment(
            v1.EditCommentRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=current.version,
                entry_version=entry,
                comment=text,
            )
        )
        assert reply.issue is not None
        return reply.issue

    async def retitle(current: v1.Issue, title: str, comment: str = "") -> v1.Issue:
        reply = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=current.version,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(title=title), update_mask=FieldMask(["title"])
                ),
                comment=comment,
            )
        )
        assert reply.issue is not None
        return reply.issue

    async def redact(current: v1.Issue, entry: int) -> v1.Issue:
        reply = await backend.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=current.version,
                target=v1.RedactionTarget.COMMENT,
                entry_version=entry,
            )
        )
        assert reply.issue is not None
        return reply.issue

    assert await stored() == ["ann", "bob"]
    commented = await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ALICE, issue_id=issue.id, expected_version=issue.version, comment="ping @carol"
        )
    )
    assert commented.issue is not None
    assert commented.entry is not None
    ping = commented.entry.version
    assert await stored() == ["ann", "bob", "carol"]
    async with _Sent(backend, model_settings.pool_max_size) as sent:
        current = await edit(commented.issue, ping, "ping @dave")
        assert len(mention_writes(sent.take())) == 2  # carol out, dave in
        assert await stored() == ["ann", "bob", "dave"]
        sent.take()
        current = await edit(current, ping, "ping @Dave, again")
        statements = sent.take()
        assert mention_writes(statements) == []  # the same names: nothing written
        assert len(statements) == 6
        current = await edit(current, 1, "hi @ann")  # the description; ann also in the title
        assert len(mention_writes(sent.take())) == 1  # bob out
        assert await stored() == ["ann", "dave"]
        sent.take()
        current = await retitle(current, "about @ann and @erin")
        assert len(sent.take()) == 2  # erin in, with the change's one statement; nothing read
        assert await stored() == ["ann", "dave", "erin"]
        sent.take()
        # ann and erin may go with the title: resync (ann stays: the description)
        current = await retitle(current, "quiet", "over to @frank")
        assert any(s.startswith("SELECT title AS body") for s in sent.take())
        assert await stored() == ["ann", "dave", "frank"]
        sent.take()
        current = await redact(current, ping + 2)  # an edit of ping: its comment goes
        statements = sent.take()
        assert len(statements) == 8  # was 12: BEGIN, lock, target, blank, bump, dave out,
        assert len(mention_writes(statements)) == 1  # entry and feed, COMMIT
        assert await stored() == ["ann", "frank"]
        current = await redact(current, 1)  # the description, edited
        assert await stored() == ["frank"]
        assert current.description == ""
    history = await backend.list_history(v1.ListHistoryRequest(caller=ADMIN, issue_id=issue.id))
    assert history.entries[-1].redaction_target == v1.RedactionTarget.DESCRIPTION
    read = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))
    assert read == current


async def test_a_move_that_drops_values_names_them_from_the_issues_row(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The names of the values a move drops come with the locked issue, not a look-up."""
    backend = bugless_model_backend
    issue, field = await _valued_issue(backend)
    elsewhere = await backend.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"away-{uuid.uuid4().hex[:8]}")
    )
    async with _Sent(backend, model_settings.pool_max_size) as sent:
        moved = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=issue.version,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(component_id=elsewhere.id),
                    update_mask=FieldMask(["component_id"]),
                ),
            )
        )
        assert sent.starting(FIELD_NAMES) == 0
    assert moved.issue is not None
    assert moved.issue.custom_fields == []
    assert moved.entry is not None
    dropped = [c for c in moved.entry.changes if c.field_name]
    assert [(c.field_name, c.field_type, c.old_value, c.new_value) for c in dropped] == [
        (field.name, field.type, "1.2", "")
    ]
    history = await backend.list_history(v1.ListHistoryRequest(caller=ADMIN, issue_id=issue.id))
    assert history.entries[-1] == moved.entry


async def test_listeners_hear_the_issue_an_admin_reads_without_a_read_after_the_commit(
    replica: PostgresBackend, model_settings: ModelSettings
) -> None:
    """With a change listener a write sends what it sends without one.

    The listener's issue is built from the rows the write returned and read
    under its lock (every hotlist, a private one the caller cannot see
    included; no star of the admin's), and equals an admin's read after it.
    """
    backend = replica
    bob = v1.Caller(user_id="bob")
    issue, _ = await _valued_issue(backend)
    hotlist = await backend.create_hotlist(
        v1.CreateHotlistRequest(caller=bob, name=f"bob's {uuid.uuid4().hex[:6]}", private=True)
    )
    await backend.add_hotlist_items(
        v1.AddHotlistItemsRequest(caller=bob, hotlist_id=hotlist.id, issue_ids=[issue.id])
    )
    await backend.star_issue(v1.StarIssueRequest(caller=ALICE, issue_id=issue.id, starred=True))
    current = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
    assert current.starred
    assert current.hotlist_ids == []
    heard: list[tuple[v1.Issue, v1.HistoryEntry]] = []
    backend.add_change_listener(lambda issue, entry: heard.append((issue, entry)))

    async def admin_read() -> v1.Issue:
        return await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))

    async with _Sent(backend, model_settings.pool_max_size) as sent:
        changed = await _change(backend, current, v1.Priority.P1)
        assert len(sent.take()) == 2  # as without a listener
        assert changed.issue is not None
        assert changed.issue.starred
        assert heard[-1][0] == await admin_read()
        assert heard[-1][0].hotlist_ids == [hotlist.id]
        assert not heard[-1][0].starred
        sent.take()
        uploaded = await _upload(backend, changed.issue)
        assert len(sent.take()) == 7
        assert uploaded.issue is not None
        assert uploaded.attachment is not None
        assert heard[-1][0] == await admin_read()
        sent.take()
        assert changed.entry is not None
        edited = await backend.edit_comment(
            v1.EditCommentRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=uploaded.issue.version,
                entry_version=changed.entry.version,
                comment="a better comment",
            )
        )
        assert len(sent.take()) == 6
        assert edited.issue is not None
        assert heard[-1][0] == await admin_read()
        sent.take()
        deleted = await backend.delete_attachment(
            v1.DeleteAttachmentRequest(
                caller=ALICE,
                attachment_id=uploaded.attachment.id,
                expected_version=edited.issue.version,
            )
        )
        assert len(sent.take()) == 10
        assert deleted.issue is not None
        assert heard[-1][0] == await admin_read()
        sent.take()
        removed = await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=bob,
                issue_id=issue.id,
                expected_version=deleted.issue.version,
                delta=v1.IssueDelta(hotlist_remove=[hotlist.id]),
            )
        )
        assert removed.issue is not None
        assert heard[-1][0] == await admin_read()
        assert heard[-1][0].hotlist_ids == []
    assert [e.version for _, e in heard] == [
        r.issue.version for r in (changed, uploaded, edited, deleted, removed) if r.issue
    ]
