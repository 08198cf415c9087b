"""A change answers from what it wrote (``UPDATE``/``INSERT ... RETURNING``), no read-back.

Right only while that answer equals what a read after the commit returns:
every field of the issue (custom fields, relations, hotlists, the caller's
star and mute, children and duplicates, a redacted description) and of the entry, as
GetIssue and ListHistory give them. Also: a stale version still fails as
ABORTED with nothing written (also when it queued behind the issue's lock),
and a batch's failing items leave the others' answers right.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from write_support import (
    ADMIN,
    ALICE,
    change_with,
    connected,
    content,
    create,
    fresh_component,
    wait_behind_lock,
)

from bugless_core.errors import BuglessError, IssueVersionConflict
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


async def _component(backend: PostgresBackend, parent_id: int = 0) -> int:
    return (await fresh_component(backend, "reply", parent_id=parent_id)).id


async def _entries(
    backend: PostgresBackend, issue_id: int, caller: v1.Caller = ALICE
) -> list[v1.HistoryEntry]:
    listed = await backend.list_history(v1.ListHistoryRequest(caller=caller, issue_id=issue_id))
    return listed.entries


async def _check(
    backend: PostgresBackend, reply: v1.ChangeIssueResponse, caller: v1.Caller = ALICE
) -> v1.Issue:
    """The reply equals a fresh GetIssue and the last entry of ListHistory, field for field.

    Both as ``caller`` (the one who changed the issue) sees them: their star, their hotlists.
    """
    assert reply.issue is not None
    assert reply.entry is not None
    read = await backend.get_issue(v1.GetIssueRequest(caller=caller, issue_id=reply.issue.id))
    assert reply.issue == read
    assert reply.issue.to_dict() == read.to_dict()
    last = (await _entries(backend, reply.issue.id, caller))[-1]
    assert reply.entry == last
    assert reply.entry.version == read.version
    return read


def _fields(paths: list[str], **fields: Any) -> dict[str, Any]:
    return {"fields": v1.IssueFields(**fields), "update_mask": FieldMask(paths=paths)}


@pytest.fixture
async def world(
    bugless_model_backend: PostgresBackend,
) -> dict[str, Any]:
    """An issue with everything a reply carries: values, relations, hotlists, a star, a mute..."""
    backend = bugless_model_backend
    root = await _component(backend)
    child_component = await _component(backend, root)
    found_in = await backend.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=root,
            name=f"Found In {uuid.uuid4().hex[:6]}",
            type=v1.CustomFieldType.TEXT,
        )
    )
    mine = await backend.create_hotlist(v1.CreateHotlistRequest(caller=ALICE, name="mine"))
    hidden = await backend.create_hotlist(
        v1.CreateHotlistRequest(caller=ADMIN, name="not alice's", private=True)
    )
    other = await create(backend, root)
    issue = await create(
        backend,
        root,
        description="a description with @carol",
        cc=["zoe"],
        hotlist_ids=[mine.id],
        custom_fields=[v1.CustomFieldValue(field_id=found_in.id, values=["4.2"])],
    )
    await backend.add_hotlist_items(
        v1.AddHotlistItemsRequest(caller=ADMIN, hotlist_id=hidden.id, issue_ids=[issue.id])
    )
    await backend.star_issue(v1.StarIssueRequest(caller=ALICE, issue_id=issue.id, starred=True))
    await backend.set_issue_mute(
        v1.SetIssueMuteRequest(caller=ALICE, issue_id=issue.id, muted=True)
    )
    child = await create(backend, root)
    await change_with(backend, child, **_fields(["parent_id"], parent_id=issue.id))
    dupe = await create(backend, root)
    await change_with(
        backend,
        dupe,
        **_fields(
            ["status", "duplicate_of_id"], status=v1.Status.DUPLICATE, duplicate_of_id=issue.id
        ),
    )
    issue = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
    return {
        "issue": issue,
        "other": other,
        "mine": mine,
        "hidden": hidden,
        "found_in": found_in,
        "child_component": child_component,
    }


async def test_a_changes_reply_is_what_a_read_returns_afterwards(
    bugless_model_backend: PostgresBackend, world: dict[str, Any]
) -> None:
    backend = bugless_model_backend
    issue: v1.Issue = world["issue"]
    assert issue.starred
    assert issue.muted
    assert issue.has_children
    assert issue.has_duplicates
    assert issue.custom_fields
    assert issue.hotlist_ids == [world["mine"].id]

    # A comment and a scalar: the values unchanged (their names read back in the write).
    read = await _check(
        backend,
        await change_with(
            backend, issue, "hi @dave", **_fields(["priority"], priority=v1.Priority.P0)
        ),
    )
    assert read.comment_count == issue.comment_count + 1
    # A custom value set (its names from the plan).
    found_in: v1.CustomField = world["found_in"]
    read = await _check(
        backend,
        await change_with(
            backend,
            read,
            custom_fields_set=[v1.CustomFieldValue(field_id=found_in.id, values=["4.3"])],
        ),
    )
    assert read.custom_fields[0].values == ["4.3"]
    # Relations and hotlists, both ways.
    other: v1.Issue = world["other"]
    read = await _check(
        backend,
        await change_with(
            backend, read, blocking_add=[other.id], hotlist_remove=[world["mine"].id]
        ),
    )
    assert read.blocking_ids == [other.id]
    assert read.hotlist_ids == []
    read = await _check(
        backend,
        await change_with(
            backend,
            read,
            blocked_by_remove=[],
            blocking_remove=[other.id],
            hotlist_add=[world["mine"].id],
            cc_add=["amy"],
            cc_remove=["zoe"],
        ),
    )
    assert read.cc == ["amy"]
    assert read.hotlist_ids == [world["mine"].id]
    # Moved (the values follow their field into the subtree), closed, retitled.
    read = await _check(
        backend,
        await change_with(
            backend,
            read,
            "moving",
            **_fields(
                ["component_id", "status", "title", "assignee"],
                component_id=world["child_component"],
                status=v1.Status.FIXED,
                title="retitled @erin",
                assignee="bob",
            ),
        ),
    )
    assert read.closed_at is not None
    assert read.component_id == world["child_component"]


async def test_a_change_after_a_redaction_and_an_attachment_answers_what_a_read_returns(
    bugless_model_backend: PostgresBackend, world: dict[str, Any]
) -> None:
    backend = bugless_model_backend
    issue: v1.Issue = world["issue"]

    async def content() -> AsyncIterator[bytes]:
        yield b"a log line\n"

    uploaded = await backend.upload_attachment(
        v1.UploadAttachmentHeader(
            caller=ALICE, issue_id=issue.id, expected_version=issue.version, name="x.log"
        ),
        content(),
    )
    assert uploaded.issue is not None
    redacted = await backend.redact(
        v1.RedactRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=uploaded.issue.version,
            target=v1.RedactionTarget.DESCRIPTION,
        )
    )
    assert redacted.issue is not None
    assert redacted.issue.description == ""
    read = await _check(
        backend,
        await change_with(
            backend, redacted.issue, **_fields(["severity"], severity=v1.Severity.S1)
        ),
    )
    assert read.description == ""


async def test_a_stale_change_is_aborted_and_writes_nothing(
    bugless_model_backend: PostgresBackend, world: dict[str, Any]
) -> None:
    backend = bugless_model_backend
    issue: v1.Issue = world["issue"]
    await _check(backend, await change_with(backend, issue, "first"))
    before = await _entries(backend, issue.id)
    with pytest.raises(IssueVersionConflict) as raised:
        await change_with(backend, issue, "stale", **_fields(["priority"], priority=v1.Priority.P4))
    assert raised.value.grpc_status.name == "ABORTED"
    assert await _entries(backend, issue.id) == before
    read = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
    assert read.version == issue.version + 1
    assert read.priority != v1.Priority.P4


async def test_a_batch_change_answers_its_items_as_reads_do_beside_failing_ones(
    bugless_model_backend: PostgresBackend, world: dict[str, Any]
) -> None:
    backend = bugless_model_backend
    issue: v1.Issue = world["issue"]
    second = await create(backend, world["child_component"])
    stale = await create(backend, world["child_component"])
    await change_with(backend, stale, "moves it on")
    delta = v1.IssueDelta(**_fields(["priority"], priority=v1.Priority.P1), cc_add=["kim"])
    items = [
        v1.IssueVersion(issue_id=issue.id, expected_version=issue.version),
        v1.IssueVersion(issue_id=stale.id, expected_version=stale.version),
        v1.IssueVersion(issue_id=10**12, expected_version=1),
        v1.IssueVersion(issue_id=second.id, expected_version=second.version),
    ]
    reply = await backend.batch_change_issues(
        v1.BatchChangeIssuesRequest(caller=ALICE, issues=items, delta=delta, comment="batch")
    )
    codes = [r.code for r in reply.results]
    assert codes == [0, 10, 5, 0]  # OK, ABORTED, NOT_FOUND, OK
    for result in (reply.results[0], reply.results[3]):
        read = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=result.issue_id))
        assert result.issue == read
        assert "kim" in read.cc
    unchanged = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=stale.id))
    assert unchanged.version == stale.version + 1
    assert "kim" not in unchanged.cc

    # All or nothing: one stale item, nothing written for any.
    fresh = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=second.id))
    with pytest.raises(BuglessError) as raised:
        await backend.batch_change_issues(
            v1.BatchChangeIssuesRequest(
                caller=ALICE,
                issues=[
                    v1.IssueVersion(issue_id=second.id, expected_version=fresh.version),
                    v1.IssueVersion(issue_id=stale.id, expected_version=stale.version),
                ],
                delta=v1.IssueDelta(**_fields(["priority"], priority=v1.Priority.P3)),
                atomic=True,
            )
        )
    assert raised.value.grpc_status.name == "ABORTED"
    after = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=second.id))
    assert after == fresh


async def test_an_edit_and_a_redaction_answer_what_a_read_returns(
    bugless_model_backend: PostgresBackend, world: dict[str, Any]
) -> None:
    backend = bugless_model_backend
    issue: v1.Issue = world["issue"]
    commented = await _check(backend, await change_with(backend, issue, "first words"))
    edited = await backend.edit_comment(
        v1.EditCommentRequest(
            caller=ALICE,
            issue_id=issue.id,
            expected_version=commented.version,
            entry_version=commented.version,
            comment="better words @fay",
        )
    )
    read = await _check(backend, edited)
    assert edited.entry is not None
    assert edited.entry.edits_version == commented.version
    described = await backend.edit_comment(
        v1.EditCommentRequest(
            caller=ALICE,
            issue_id=issue.id,
            expected_version=read.version,
            entry_version=1,
            comment="a new description",
        )
    )
    read = await _check(backend, described)
    assert read.description == "a new description"
    redacted = await backend.redact(
        v1.RedactRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=read.version,
            target=v1.RedactionTarget.COMMENT,
            entry_version=commented.version,
        )
    )
    read = await _check(backend, redacted, ADMIN)
    assert not read.starred  # the admin's star, not alice's
    assert redacted.entry is not None
    assert redacted.entry.redacted_version == commented.version
    with pytest.raises(IssueVersionConflict):
        await backend.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=commented.version,
                target=v1.RedactionTarget.DESCRIPTION,
            )
        )
    after = await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=issue.id))
    assert after == read


async def test_a_stale_change_queued_behind_the_lock_is_aborted_when_the_holder_commits(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """READ COMMITTED needs no version check before locking: the one under the lock answers."""
    backend = bugless_model_backend
    issue = await create(backend, await _component(backend))
    async with connected(model_settings, 2) as (holder, watcher):
        held = holder.transaction()
        await held.start()
        await holder.execute("UPDATE issues SET version = version + 1 WHERE id = $1", issue.id)
        change = asyncio.ensure_future(change_with(backend, issue, "stale once the holder commits"))
        await wait_behind_lock(watcher, change)
        await held.commit()
        with pytest.raises(IssueVersionConflict):
            await change
    entries = await _entries(backend, issue.id)
    assert [e.version for e in entries] == [1]


async def test_a_stale_attachment_deletion_by_another_editor_is_aborted_before_refused(
    bugless_model_backend: PostgresBackend,
) -> None:
    """The attachment calls keep their version check first: ABORTED, not PermissionDenied."""
    backend = bugless_model_backend
    issue = await create(backend, await _component(backend))
    uploaded = await backend.upload_attachment(
        v1.UploadAttachmentHeader(caller=ALICE, issue_id=issue.id, name="a.txt"),
        content(b"bytes"),
    )
    assert uploaded.attachment is not None
    bob = v1.Caller(user_id="bob", groups=["eng"])  # an editor, not the uploader
    with pytest.raises(IssueVersionConflict):
        await backend.delete_attachment(
            v1.DeleteAttachmentRequest(
                caller=bob, attachment_id=uploaded.attachment.id, expected_version=issue.version
            )
        )


async def test_a_change_that_waited_for_the_lock_answers_what_the_holder_left(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """READ COMMITTED locks and reads one issue in one statement, unless it had to wait.

    Starring holds the issue's row lock without a new version: a change at
    the current version queued behind it must see the star (and a component
    the row moved to) once the holder commits, as a read after the lock would,
    not the snapshot its statement took before waiting.
    """
    backend = bugless_model_backend
    component = await _component(backend)
    moved_to = await _component(backend)

    async def behind(
        holder: asyncpg.Connection,
        watcher: asyncpg.Connection,
        issue: v1.Issue,
        *statements: tuple[str, list[Any]],
    ) -> v1.Issue:
        held = holder.transaction()
        await held.start()
        for sql, args in statements:
            await holder.execute(sql, *args)
        change = asyncio.ensure_future(change_with(backend, issue, "queued behind the holder"))
        await wait_behind_lock(watcher, change)
        await held.commit()
        return await _check(backend, await change)

    async with connected(model_settings, 2) as (holder, watcher):
        issue = await create(backend, component)
        star = (  # what StarIssue runs: the issue's row, not its version
            "WITH added AS (INSERT INTO issue_stars (issue_id, user_id, created_at) "
            "VALUES ($1, $2, now()) RETURNING issue_id) "
            "UPDATE issues SET star_count = star_count + 1 WHERE id = $1",
            [issue.id, ALICE.user_id],
        )
        read = await behind(holder, watcher, issue, star)
        assert read.starred
        assert read.star_count == 1
        # A row that moved (joined to its new component) is found, not NOT_FOUND.
        move = ("UPDATE issues SET component_id = $2 WHERE id = $1", [issue.id, moved_to])
        read = await behind(holder, watcher, read, move)
        assert read.component_id == moved_to
    # Not waiting: one statement, and the same answer.
    await _check(backend, await change_with(backend, read, "alone"))
