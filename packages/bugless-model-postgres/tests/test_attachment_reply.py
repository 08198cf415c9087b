"""An attachment's upload and deletion answer from what they wrote, no read-back.

Right only while that answer equals what reads after the commit return: the
issue as GetIssue gives it (the caller's star, hotlists, children, custom
values), the entry as ListHistory gives it (the attached file, the deleted
attachment's id) and the attachment as ListAttachments gives it. A stale
version is still ABORTED with nothing written, and before the refusals that
come after the lock (the uploader check) only when the caller could act.
"""

from __future__ import annotations

from typing import Any

import pytest
from write_support import ADMIN, ALICE, component_with_field, upload

from bugless_core.errors import IssueVersionConflict, PermissionDenied
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

BOB = v1.Caller(user_id="bob", groups=["eng"])  # an editor, not the uploader


@pytest.fixture
async def issue(bugless_model_backend: PostgresBackend) -> v1.Issue:
    """An issue with what a reply carries: a custom value, hotlists, alice's star, a child."""
    backend = bugless_model_backend
    component, field = await component_with_field(backend, "att")
    mine = await backend.create_hotlist(v1.CreateHotlistRequest(caller=ALICE, name="mine"))
    hidden = await backend.create_hotlist(
        v1.CreateHotlistRequest(caller=ADMIN, name="not alice's", private=True)
    )

    async def create(**extra: Any) -> v1.Issue:
        return await backend.create_issue(
            v1.CreateIssueRequest(
                caller=ALICE,
                fields=v1.IssueFields(title="a crash", component_id=component.id),
                **extra,
            )
        )

    made = await create(
        hotlist_ids=[mine.id],
        custom_fields=[v1.CustomFieldValue(field_id=field.id, values=["1.2"])],
    )
    await backend.add_hotlist_items(
        v1.AddHotlistItemsRequest(caller=ADMIN, hotlist_id=hidden.id, issue_ids=[made.id])
    )
    await backend.star_issue(v1.StarIssueRequest(caller=ALICE, issue_id=made.id, starred=True))
    child = await create()
    await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ALICE,
            issue_id=child.id,
            expected_version=child.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(parent_id=made.id), update_mask=FieldMask(["parent_id"])
            ),
        )
    )
    read = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=made.id))
    assert read.starred
    assert read.has_children
    assert read.custom_fields
    assert read.hotlist_ids == [mine.id]
    return read


async def _state(
    backend: PostgresBackend, issue_id: int, caller: v1.Caller = ALICE
) -> tuple[v1.Issue, list[v1.HistoryEntry], list[v1.Attachment]]:
    """What reads return now: the issue, its history, its attachments (deleted ones too)."""
    read = await backend.get_issue(v1.GetIssueRequest(caller=caller, issue_id=issue_id))
    history = await backend.list_history(v1.ListHistoryRequest(caller=caller, issue_id=issue_id))
    listed = await backend.list_attachments(
        v1.ListAttachmentsRequest(caller=caller, issue_id=issue_id, include_deleted=True)
    )
    return read, history.entries, listed.attachments


async def test_an_upload_answers_what_reads_return_afterwards(
    bugless_model_backend: PostgresBackend, issue: v1.Issue
) -> None:
    backend = bugless_model_backend
    uploaded = await upload(backend, issue, comment="the log, @carol")
    read, entries, attachments = await _state(backend, issue.id)
    assert uploaded.issue == read
    assert uploaded.issue is not None
    assert uploaded.issue.to_dict() == read.to_dict()
    assert read.version == issue.version + 1
    assert read.comment_count == issue.comment_count + 1
    assert uploaded.entry == entries[-1]
    assert uploaded.attachment is not None
    assert uploaded.entry is not None
    assert uploaded.entry.attachments == [uploaded.attachment]
    assert attachments == [uploaded.attachment]
    # Without a comment, and with any version (0).
    again = await upload(backend, v1.Issue(id=issue.id))
    read, entries, attachments = await _state(backend, issue.id)
    assert again.issue == read
    assert again.entry == entries[-1]
    assert attachments == [uploaded.attachment, again.attachment]


async def test_a_deletion_answers_what_reads_return_afterwards(
    bugless_model_backend: PostgresBackend, issue: v1.Issue
) -> None:
    backend = bugless_model_backend
    uploaded = await upload(backend, issue)
    assert uploaded.attachment is not None
    assert uploaded.issue is not None
    deleted = await backend.delete_attachment(
        v1.DeleteAttachmentRequest(
            caller=ALICE,
            attachment_id=uploaded.attachment.id,
            expected_version=uploaded.issue.version,
        )
    )
    read, entries, attachments = await _state(backend, issue.id)
    assert deleted.issue == read
    assert deleted.entry == entries[-1]
    assert deleted.entry is not None
    assert deleted.entry.deleted_attachment_id == uploaded.attachment.id
    assert deleted.entry.attachments == []
    assert [a.deleted_in_version for a in attachments] == [read.version]
    # An admin deletes another's file: the reply is as the admin sees the issue.
    other = await upload(backend, read)
    assert other.attachment is not None
    by_admin = await backend.delete_attachment(
        v1.DeleteAttachmentRequest(caller=ADMIN, attachment_id=other.attachment.id)
    )
    read, entries, _ = await _state(backend, issue.id, ADMIN)
    assert by_admin.issue == read
    assert not read.starred  # the admin's star, not alice's
    assert by_admin.entry == entries[-1]


async def test_stale_attachment_calls_are_aborted_and_write_nothing(
    bugless_model_backend: PostgresBackend, issue: v1.Issue
) -> None:
    backend = bugless_model_backend
    uploaded = await upload(backend, issue)
    assert uploaded.attachment is not None
    before = await _state(backend, issue.id)
    with pytest.raises(IssueVersionConflict) as raised:
        await upload(backend, issue, comment="stale")
    assert raised.value.grpc_status.name == "ABORTED"
    for caller in (ALICE, BOB):  # the uploader, and an editor the uploader check would refuse
        with pytest.raises(IssueVersionConflict):
            await backend.delete_attachment(
                v1.DeleteAttachmentRequest(
                    caller=caller,
                    attachment_id=uploaded.attachment.id,
                    expected_version=issue.version,
                )
            )
    assert await _state(backend, issue.id) == before
    # At the current version the editor is refused (and nothing is written either).
    assert uploaded.issue is not None
    with pytest.raises(PermissionDenied):
        await backend.delete_attachment(
            v1.DeleteAttachmentRequest(
                caller=BOB,
                attachment_id=uploaded.attachment.id,
                expected_version=uploaded.issue.version,
            )
        )
    assert await _state(backend, issue.id) == before
