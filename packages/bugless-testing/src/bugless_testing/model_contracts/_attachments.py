"""Contracts for attachments: streaming both ways, ACLs, limits, names, deletion, redaction.

The backend under test must have a blob store configured with
:data:`ATTACHMENT_LIMITS` (``backend.use_blob_store(store, ATTACHMENT_LIMITS)``
in the backend's conftest). Whether content really left the store is
checked on the backend's own store (``bugless_model_backend.blob_store``),
since the wire cannot tell.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable

from grpclib.const import Status

from bugless_core.attachments import AttachmentSettings
from bugless_core.errors import ContentGone, RangeNotSatisfiable, from_grpc_error
from bugless_core.model.backend import Capability, ModelBackend
from bugless_core.search.build import negate, term
from bugless_proto import v1
from bugless_testing.events import EventStream
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    expect_error,
    get_issue,
    history,
    make_component,
    make_issue,
    search_ids,
    unique,
    user_entry,
    within,
)
from bugless_testing.plugin import requires_capability

KiB = 1024
#: The limits the backend's store is configured with for these contracts.
ATTACHMENT_LIMITS = AttachmentSettings(
    max_file_bytes=1024 * KiB,
    max_issue_bytes=3 * 1024 * KiB,
    denied_types=("application/x-msdownload",),
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def requests(
    header: v1.UploadAttachmentHeader, content: bytes, chunk: int = 64 * KiB
) -> list[v1.UploadAttachmentRequest]:
    """An upload's messages: the header, then the content in chunks."""
    parts = [v1.UploadAttachmentRequest(header=header)]
    parts += [
        v1.UploadAttachmentRequest(chunk=content[i : i + chunk])
        for i in range(0, len(content), chunk)
    ]
    return parts


async def upload(
    model: v1.ModelStub,
    issue_id: int,
    content: bytes,
    *,
    name: str = "crash.log",
    content_type: str = "",
    caller: v1.Caller = ALICE,
    comment: str = "",
    size: int = 0,
) -> v1.UploadAttachmentResponse:
    """Upload ``content`` as one attachment of ``issue_id``."""
    header = v1.UploadAttachmentHeader(
        caller=caller,
        issue_id=issue_id,
        name=name,
        content_type=content_type,
        comment=comment,
        size=size,
    )
    return await model.upload_attachment(requests(header, content))


async def download(
    model: v1.ModelStub,
    attachment_id: int,
    *,
    caller: v1.Caller = ALICE,
    offset: int = 0,
    length: int = 0,
) -> tuple[v1.Attachment | None, bytes]:
    """The attachment message and the content a download streams."""
    attachment = None
    data = bytearray()
    async for part in model.download_attachment(
        v1.DownloadAttachmentRequest(
            caller=caller, attachment_id=attachment_id, offset=offset, length=length
        )
    ):
        if part.attachment is not None:
            assert attachment is None, "the attachment came twice"
            assert not data, "the attachment came after content"
            attachment = part.attachment
        else:
            data += part.chunk or b""
    return attachment, bytes(data)


async def listed(
    model: v1.ModelStub, issue_id: int, *, caller: v1.Caller = ALICE, deleted: bool = False
) -> list[v1.Attachment]:
    """An issue's attachments."""
    response = await model.list_attachments(
        v1.ListAttachmentsRequest(caller=caller, issue_id=issue_id, include_deleted=deleted)
    )
    return list(response.attachments)


async def delete(
    model: v1.ModelStub, attachment_id: int, *, caller: v1.Caller = ALICE
) -> v1.ChangeIssueResponse:
    """Delete an attachment."""
    return await model.delete_attachment(
        v1.DeleteAttachmentRequest(caller=caller, attachment_id=attachment_id)
    )


def _names(attachments: Iterable[v1.Attachment]) -> list[str]:
    return [a.name for a in attachments]


class AttachmentContract:
    """UploadAttachment, DownloadAttachment, Get/List/DeleteAttachment."""

    async def test_a_file_goes_up_and_comes_back_as_it_was(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        content = bytes(range(256)) * 1500  # 384000 bytes, several chunks
        done = await upload(
            model, issue.id, content, name="dump.bin", content_type="application/x-core",
            comment="the core dump",
        )  # fmt: skip
        attachment = done.attachment
        assert attachment is not None
        assert done.entry is not None
        assert done.issue is not None
        assert attachment.name == "dump.bin"
        assert attachment.size == len(content)
        assert attachment.sha256 == hashlib.sha256(content).hexdigest()
        assert attachment.declared_content_type == "application/x-core"
        assert attachment.content_type == "application/octet-stream"
        assert attachment.uploader == ALICE.user_id
        assert attachment.issue_id == issue.id
        assert attachment.entry_version == done.entry.version == issue.version + 1
        assert done.issue.version == issue.version + 1
        assert done.entry.comment == "the core dump"
        assert [a.id for a in done.entry.attachments] == [attachment.id]
        got, data = await download(model, attachment.id)
        assert got == attachment
        assert data == content
        assert await listed(model, issue.id) == [attachment]
        assert (
            await model.get_attachment(
                v1.GetAttachmentRequest(caller=BOB, attachment_id=attachment.id)
            )
            == attachment
        )
        entries = await history(model, issue.id)
        assert [a.id for a in entries[-1].attachments] == [attachment.id]
        assert all(not e.attachments for e in entries[:-1])

    async def test_an_empty_file_and_a_range(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        empty = await upload(model, issue.id, b"", name="empty.txt")
        assert empty.attachment is not None
        assert empty.attachment.size == 0
        assert (await download(model, empty.attachment.id))[1] == b""
        content = b"0123456789" * 10_000
        done = await upload(model, issue.id, content)
        assert done.attachment is not None
        _, part = await download(model, done.attachment.id, offset=99_990, length=50)
        assert part == content[99_990:]
        _, part = await download(model, done.attachment.id, offset=5, length=7)
        assert part == content[5:12]

    async def test_an_offset_past_the_end_is_out_of_range_naming_the_size(
        self, model: v1.ModelStub
    ) -> None:
        """At the end is an empty download (a resumed one that had it all); past it, refused."""
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        done = await upload(model, issue.id, b"0123456789")
        assert done.attachment is not None
        attachment_id = done.attachment.id
        got, part = await download(model, attachment_id, offset=10)
        assert (got, part) == (done.attachment, b"")
        refused = await expect_error(
            download(model, attachment_id, offset=11, length=5),
            Status.OUT_OF_RANGE,
            "offset: 11",
            f"attachment {attachment_id}",
            "10 bytes",
        )
        back = from_grpc_error(refused)
        assert isinstance(back, RangeNotSatisfiable)
        assert back.size == 10
        await expect_error(
            download(model, attachment_id, offset=-1), Status.INVALID_ARGUMENT, "offset"
        )

    async def test_the_served_type_is_sniffed_not_declared(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        cases = [
            (PNG, "text/plain", "image/png"),
            (b"<html><script>alert(1)</script></html>", "image/png", "text/html"),
            (b'<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>', "image/png",
             "image/svg+xml"),
            ("plain text, ünïcödé\n".encode(), "", "text/plain"),
        ]  # fmt: skip
        for content, declared, sniffed in cases:
            done = await upload(model, issue.id, content, content_type=declared)
            assert done.attachment is not None
            assert done.attachment.content_type == sniffed, content[:20]
            assert done.attachment.declared_content_type == declared

    async def test_hostile_file_names_are_sanitised(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        cases = {
            "../../etc/passwd": "passwd",
            "C:\\Users\\x\\evil.exe": "evil.exe",
            "invoice\u202etxt.exe": "invoicetxt.exe",
            "a\x07b\x1b[31mred\n.txt": "ab[31mred.txt",
            "\u2066iso\u2069late.png": "isolate.png",
            "..": "attachment",
            " / ": "attachment",
            "x" * 300 + ".log": "x" * 251 + ".log",
        }
        for raw, clean in cases.items():
            done = await upload(model, issue.id, b"x", name=raw)
            assert done.attachment is not None
            assert done.attachment.name == clean, raw

    async def test_who_cannot_see_the_issue_gets_not_found_for_its_attachments(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(
            model, acl=[user_entry(ALICE.user_id, v1.Role.EDITOR)], caller=ADMIN
        )
        issue = await make_issue(model, component.id)
        done = await upload(model, issue.id, b"secret log")
        assert done.attachment is not None
        attachment_id = done.attachment.id
        calls = [
            model.get_attachment(v1.GetAttachmentRequest(caller=BOB, attachment_id=attachment_id)),
            download(model, attachment_id, caller=BOB),
            delete(model, attachment_id, caller=BOB),
            listed(model, issue.id, caller=BOB),
            upload(model, issue.id, b"x", caller=BOB),
        ]
        for call in calls:
            error = await expect_error(call, Status.NOT_FOUND)
            assert "secret" not in (error.message or "")
        await expect_error(
            model.get_attachment(v1.GetAttachmentRequest(caller=BOB, attachment_id=10**15)),
            Status.NOT_FOUND,
            "attachment",
        )

    async def test_a_viewer_may_download_but_not_attach(self, model: v1.ModelStub) -> None:
        component = await make_component(
            model,
            acl=[
                user_entry(ALICE.user_id, v1.Role.EDITOR),
                user_entry(BOB.user_id, v1.Role.VIEWER),
            ],
        )
        issue = await make_issue(model, component.id)
        done = await upload(model, issue.id, b"log")
        assert done.attachment is not None
        assert (await download(model, done.attachment.id, caller=BOB))[1] == b"log"
        await expect_error(
            upload(model, issue.id, b"x", caller=BOB), Status.PERMISSION_DENIED, "editor"
        )

    async def test_size_limits_are_named_and_nothing_is_kept(
        self, model: v1.ModelStub, bugless_model_backend: ModelBackend
    ) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        limit = ATTACHMENT_LIMITS.max_file_bytes
        too_big = b"a" * (limit + 1)
        error = await expect_error(
            upload(model, issue.id, too_big),
            Status.RESOURCE_EXHAUSTED,
            "per file",
            "BUGLESS_ATTACHMENT_MAX_FILE_BYTES",
        )
        assert error.message is not None
        assert str(limit) in error.message
        store = bugless_model_backend.blob_store
        assert not await store.exists(hashlib.sha256(too_big).hexdigest())
        await expect_error(
            upload(model, issue.id, b"b", size=limit + 1), Status.RESOURCE_EXHAUSTED, "per file"
        )
        for n in range(3):
            await upload(model, issue.id, bytes([n]) * (900 * KiB))
        fourth = bytes([9]) * (900 * KiB)
        await expect_error(
            upload(model, issue.id, fourth),
            Status.RESOURCE_EXHAUSTED,
            "per issue",
            "BUGLESS_ATTACHMENT_MAX_ISSUE_BYTES",
        )
        assert not await store.exists(hashlib.sha256(fourth).hexdigest())
        assert (await get_issue(model, issue.id)).version == issue.version + 3
        assert len(await listed(model, issue.id)) == 3

    async def test_refused_types_and_bad_streams_change_nothing(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        await expect_error(
            upload(model, issue.id, b"MZ\x90\x00" + b"\x00" * 100), Status.INVALID_ARGUMENT,
            "content", "application/x-msdownload",
        )  # fmt: skip
        await expect_error(
            upload(model, issue.id, b"x", content_type="application/x-msdownload"),
            Status.INVALID_ARGUMENT,
            "header.content_type",
        )
        await expect_error(
            upload(model, issue.id, b"abc", size=5), Status.INVALID_ARGUMENT, "header.size"
        )
        await expect_error(
            model.upload_attachment([v1.UploadAttachmentRequest(chunk=b"no header")]),
            Status.INVALID_ARGUMENT,
            "header",
        )
        header = v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name="a")
        await expect_error(
            model.upload_attachment(
                [
                    v1.UploadAttachmentRequest(header=header),
                    v1.UploadAttachmentRequest(header=header),
                ]
            ),
            Status.INVALID_ARGUMENT,
            "header",
        )
        await expect_error(
            upload(model, issue.id, b"x", name=""), Status.INVALID_ARGUMENT, "header.name"
        )
        assert (await get_issue(model, issue.id)).version == issue.version
        assert await listed(model, issue.id) == []

    async def test_deletion_leaves_an_entry_and_removes_unshared_content(
        self, model: v1.ModelStub, bugless_model_backend: ModelBackend
    ) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        other = await make_issue(model, component.id)
        shared = b"the same bytes, attached twice " * 10
        first = (await upload(model, issue.id, shared)).attachment
        second = (await upload(model, other.id, shared, caller=BOB)).attachment
        assert first is not None
        assert second is not None
        assert first.sha256 == second.sha256
        await expect_error(
            delete(model, first.id, caller=BOB), Status.PERMISSION_DENIED, "uploader"
        )
        deleted = await delete(model, first.id)
        assert deleted.entry is not None
        assert deleted.entry.deleted_attachment_id == first.id
        await expect_error(delete(model, first.id), Status.FAILED_PRECONDITION, "already deleted")
        gone_error = await expect_error(
            download(model, first.id), Status.FAILED_PRECONDITION, "deleted"
        )
        assert from_grpc_error(gone_error).reason == "CONTENT_GONE"
        assert await listed(model, issue.id) == []
        [gone] = await listed(model, issue.id, deleted=True)
        assert gone.deleted_in_version == deleted.entry.version
        store = bugless_model_backend.blob_store
        assert await store.exists(first.sha256), "content another attachment needs was removed"
        assert (await download(model, second.id))[1] == shared
        await delete(model, second.id, caller=ADMIN)
        assert not await store.exists(first.sha256), "unreferenced content was kept"
        again = (await upload(model, issue.id, shared)).attachment
        assert again is not None
        assert (await download(model, again.id))[1] == shared

    async def test_a_deletion_entry_names_the_deleted_file_when_read_back(
        self, model: v1.ModelStub
    ) -> None:
        """History and the notifier's read say which file went, by name, as well as by id.

        A mail saying "Deleted attachment 7" told its reader nothing they could
        recognise; the file's metadata stays after its deletion, so its name is
        there to give.
        """
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        kept = (await upload(model, issue.id, b"kept", name="kept.txt")).attachment
        done = (await upload(model, issue.id, b"build output", name="build.log")).attachment
        assert kept is not None
        assert done is not None
        removed = await delete(model, done.id)
        assert removed.entry is not None
        # The deletion's reply names it too: the entry equals a later read of it.
        assert (removed.entry.deleted_attachment_id, removed.entry.deleted_attachment_name) == (
            done.id,
            "build.log",
        )
        entries = await history(model, issue.id)
        assert [(e.deleted_attachment_id, e.deleted_attachment_name) for e in entries][-1:] == [
            (done.id, "build.log")
        ]
        assert all(not e.deleted_attachment_name for e in entries[:-1])
        views = await model.get_notification_views(
            v1.GetNotificationViewsRequest(
                caller=ADMIN, issue_id=issue.id, versions=[removed.entry.version]
            )
        )
        assert [e.deleted_attachment_name for e in views.entries] == ["build.log"]

    async def test_redaction_removes_the_content(
        self, model: v1.ModelStub, bugless_model_backend: ModelBackend
    ) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        secret = b"AWS_SECRET_ACCESS_KEY=leaked-by-accident"
        done = await upload(model, issue.id, secret, name="env.txt")
        assert done.attachment is not None
        assert done.issue is not None
        redacted = await model.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=done.issue.version,
                target=v1.RedactionTarget.ATTACHMENT,
                attachment_id=done.attachment.id,
            )
        )
        assert redacted.entry is not None
        assert redacted.entry.redacted_attachment_id == done.attachment.id
        got = await model.get_attachment(
            v1.GetAttachmentRequest(caller=ALICE, attachment_id=done.attachment.id)
        )
        assert got.redacted
        assert got.name == "env.txt"
        gone_error = await expect_error(
            download(model, done.attachment.id), Status.FAILED_PRECONDITION, "redacted"
        )
        assert isinstance(from_grpc_error(gone_error), ContentGone)
        assert not await bugless_model_backend.blob_store.exists(done.attachment.sha256)

    async def test_search_by_having_attachments_and_by_name(self, model: v1.ModelStub) -> None:
        component = await make_component(model)
        bare = await make_issue(model, component.id)
        logs = await make_issue(model, component.id)
        shots = await make_issue(model, component.id)
        await upload(model, logs.id, b"boom", name="Crash-2026.LOG")
        await upload(model, shots.id, PNG, name="screenshot.png")
        gone = (await upload(model, bare.id, b"x", name="crash-old.log")).attachment
        assert gone is not None
        await delete(model, gone.id)
        field = v1.SearchField.ATTACHMENT

        async def ids(node: v1.SearchNode) -> set[int]:
            return set(await search_ids(model, within(component.id, node)))

        assert await ids(term(field, v1.SearchOperator.ANY)) == {logs.id, shots.id}
        assert await ids(negate(term(field, v1.SearchOperator.ANY))) == {bare.id}
        assert await ids(term(field, v1.SearchOperator.NONE)) == {bare.id}
        assert await ids(term(field, v1.SearchOperator.EQ, "crash")) == {logs.id}
        assert await ids(term(field, v1.SearchOperator.EQ, "nothing", "SHOT")) == {shots.id}

    async def test_names_are_searched_in_any_case_by_case_folding(
        self, model: v1.ModelStub
    ) -> None:
        """``attachment:`` finds its text in a name by Unicode case folding, both ways.

        "ÄPFEL" finds "äpfel…" and "äpfel" finds "ÄPFEL…" (a database's
        ``lower()`` under the C locale leaves "Ä" as it is); "STRASSE" finds
        "…Straße…" (no ``lower()`` folds "ß" to "ss").
        """
        component = await make_component(model)
        lower = await make_issue(model, component.id)
        upper = await make_issue(model, component.id)
        street = await make_issue(model, component.id)
        await upload(model, lower.id, b"a", name="äpfel-liste.txt")
        await upload(model, upper.id, b"b", name="ÄPFEL-FOTO.TXT")
        await upload(model, street.id, b"c", name="Karte-Hauptstraße.txt")
        field, eq = v1.SearchField.ATTACHMENT, v1.SearchOperator.EQ
        for text, expected in (
            ("ÄPFEL", {lower.id, upper.id}),
            ("äpfel-foto", {upper.id}),
            ("Äpfel-Liste", {lower.id}),
            ("HAUPTSTRASSE", {street.id}),
            ("straße.TXT", {street.id}),
        ):
            found = await search_ids(model, within(component.id, term(field, eq, text)))
            assert set(found) == expected, text

    async def test_the_comment_of_an_attaching_entry_mentions_people(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        name = unique("viewer")
        await upload(model, issue.id, b"boom", comment=f"@{name} see the log")
        mentioning = term(v1.SearchField.MENTION, v1.SearchOperator.EQ, name)
        assert await search_ids(model, within(component.id, mentioning)) == [issue.id]

    @requires_capability(Capability.WATCH)
    async def test_a_watched_issue_shows_the_attaching_entry_with_its_files(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        stream = EventStream(
            model.watch(v1.WatchRequest(caller=ALICE, issue_id=issue.id), timeout=60)
        )
        try:
            await stream.subscribed()
            done = await upload(model, issue.id, b"watched", name="w.txt")
            event = await stream.next()
        finally:
            await stream.close()
        assert event.entry is not None
        assert done.attachment is not None
        assert [a.id for a in event.entry.attachments] == [done.attachment.id]

    @requires_capability(Capability.CHANGE_FEED)
    async def test_the_change_feed_names_files_attached_and_deleted(
        self, model: v1.ModelStub
    ) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        hidden = await make_component(model, acl=[user_entry(BOB.user_id, v1.Role.EDITOR)])
        secret = await make_issue(model, hidden.id, caller=BOB)
        start = await model.read_feed(v1.ReadFeedRequest(caller=ADMIN, head_only=True))
        done = await upload(model, issue.id, b"feed me", name="feed.log")
        await upload(model, secret.id, b"not for alice", name="secret.log", caller=BOB)
        assert done.attachment is not None
        removed = await delete(model, done.attachment.id)
        assert removed.entry is not None
        answer = await model.read_feed(
            v1.ReadFeedRequest(caller=ALICE, after_position=start.head_position, max_changes=50)
        )
        entries = [e for change in answer.changes for e in change.entries]
        assert [(e.issue_id, [a.name for a in e.attachments], e.deleted_attachment_id)
                for e in entries] == [
            (issue.id, ["feed.log"], 0),
            (issue.id, [], done.attachment.id),
        ]  # fmt: skip
        assert entries[0].attachments[0].id == done.attachment.id

    async def test_content_stored_but_never_attached_is_swept_after_the_grace_period(
        self, model: v1.ModelStub, bugless_model_backend: ModelBackend
    ) -> None:
        component = await make_component(model)
        issue = await make_issue(model, component.id)
        attached = (await upload(model, issue.id, b"attached and kept " * 50)).attachment
        assert attached is not None
        store = bugless_model_backend.blob_store
        # What a Model that died between storing the content and attaching it
        # leaves behind: content in the store that no attachment names.
        orphan = await store.put(_chunks(hashlib.sha256(b"orphan").digest() * 3000))
        assert await bugless_model_backend.sweep_orphaned_content(3600) == 0
        assert await store.exists(orphan.sha256), "young content (maybe mid-upload) was taken"
        assert await bugless_model_backend.sweep_orphaned_content(0) >= 1
        assert not await store.exists(orphan.sha256), "orphaned content was kept"
        assert await store.exists(attached.sha256), "attached content was swept"
        assert (await download(model, attached.id))[1] == b"attached and kept " * 50
        # The same bytes again after the sweep: stored afresh and attached.
        again = await upload(model, issue.id, hashlib.sha256(b"orphan").digest() * 3000)
        assert again.attachment is not None
        assert again.attachment.sha256 == orphan.sha256
        assert await store.exists(orphan.sha256)


async def _chunks(content: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(content), 16 * KiB):
        yield content[start : start + 16 * KiB]
