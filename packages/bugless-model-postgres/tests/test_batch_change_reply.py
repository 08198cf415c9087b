"""An atomic BatchChangeIssues answers from what its changes wrote, no read after the commit.

Right only while each item's answer is, byte for byte, what the read after
the commit (the answer before: the issues read as the caller) returns: every
field a change writes, the caller's star, mute and hotlists, custom values kept,
set and dropped by a move, children and duplicates. When a later item of
the batch changes an earlier item's issue again (the other side of a
relation: its version moves on) or a delta sets a parent (another issue's
``has_children`` follows), the batch still reads its issues after the commit.
"""

from __future__ import annotations

import uuid
from typing import Any

from write_support import (
    ADMIN,
    ALICE,
    Sent,
    change_with,
    component_with_field,
    create,
    fresh_component,
)

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: The read of issues by id (``q.FETCH_ISSUES`` and its slotted form).
READ = "SELECT i.id, i.title"


def _after_commit(statements: list[str]) -> list[str]:
    """What was sent after the (one) COMMIT (asyncpg sends ``COMMIT;``)."""
    ends = [n for n, s in enumerate(statements) if s.rstrip(";").upper() == "COMMIT"]
    assert len(ends) == 1
    return statements[ends[0] + 1 :]


def _fields(paths: list[str], **fields: Any) -> dict[str, Any]:
    return {"fields": v1.IssueFields(**fields), "update_mask": FieldMask(paths=paths)}


async def _batch(
    backend: PostgresBackend,
    issues: list[v1.Issue],
    comment: str = "",
    caller: v1.Caller = ALICE,
    **delta: Any,
) -> list[v1.Issue]:
    """Change ``issues`` at their versions atomically; check the answers; the issues after.

    Each answer must be, byte for byte, the issue as ``caller`` reads it after the commit.
    """
    reply = await backend.batch_change_issues(
        v1.BatchChangeIssuesRequest(
            caller=caller,
            issues=[v1.IssueVersion(issue_id=i.id, expected_version=i.version) for i in issues],
            delta=v1.IssueDelta(**delta),
            comment=comment,
            atomic=True,
        )
    )
    read = await backend.batch_get_issues(
        v1.BatchGetIssuesRequest(caller=caller, issue_ids=[i.id for i in issues])
    )
    assert [r.code for r in reply.results] == [0] * len(issues)
    assert [r.issue_id for r in reply.results] == [i.id for i in issues]
    answered = [r.issue for r in reply.results]
    assert answered == read.issues
    assert [bytes(i) for i in answered if i is not None] == [bytes(i) for i in read.issues]
    return read.issues


async def test_an_atomic_batch_answers_byte_for_byte_what_a_read_after_it_returns(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    backend = bugless_model_backend
    root = (await fresh_component(backend, "batch")).id
    child_component = (await fresh_component(backend, "batch", parent_id=root)).id
    fielded, own_field = await component_with_field(backend, "batch")
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
    # One issue with everything an answer carries: a star, a mute, a hotlist alice cannot see,
    # a custom value, a child and a duplicate; a plain one; one whose value a move drops.
    rich = await create(
        backend,
        root,
        description="a description with @carol",
        cc=["zoe"],
        custom_fields=[v1.CustomFieldValue(field_id=found_in.id, values=["4.2"])],
    )
    await backend.add_hotlist_items(
        v1.AddHotlistItemsRequest(caller=ADMIN, hotlist_id=hidden.id, issue_ids=[rich.id])
    )
    await backend.star_issue(v1.StarIssueRequest(caller=ALICE, issue_id=rich.id, starred=True))
    await backend.set_issue_mute(v1.SetIssueMuteRequest(caller=ALICE, issue_id=rich.id, muted=True))
    child = await create(backend, root)
    await change_with(backend, child, **_fields(["parent_id"], parent_id=rich.id))
    dupe = await create(backend, root)
    await change_with(
        backend,
        dupe,
        **_fields(
            ["status", "duplicate_of_id"], status=v1.Status.DUPLICATE, duplicate_of_id=rich.id
        ),
    )
    plain = await create(backend, root)
    valued = await create(
        backend,
        fielded.id,
        custom_fields=[v1.CustomFieldValue(field_id=own_field.id, values=["1.0"])],
    )
    issues = (
        await backend.batch_get_issues(
            v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=[rich.id, plain.id, valued.id])
        )
    ).issues
    assert issues[0].starred
    assert issues[0].muted
    assert issues[0].has_children
    assert issues[0].has_duplicates

    # A scalar, cc, a hotlist joined and a comment with a mention: no read after the commit.
    async with Sent(backend, model_settings.pool_max_size) as sent:
        issues = await _batch(
            backend,
            issues,
            "hi @dave",
            **_fields(["priority"], priority=v1.Priority.P0),
            cc_add=["kim"],
            hotlist_add=[mine.id],
        )
    # Only _batch's own read follows the commit.
    assert sum(s.startswith(READ) for s in _after_commit(sent.take())) == 1
    assert all(i.hotlist_ids == [mine.id] for i in issues)
    # A custom value set (in the two issues it applies to).
    issues[:2] = await _batch(
        backend,
        issues[:2],
        custom_fields_set=[v1.CustomFieldValue(field_id=found_in.id, values=["4.3"])],
    )
    # The hotlist left, closed and retitled, by an admin (who sees the hidden hotlist).
    issues = await _batch(
        backend,
        issues,
        "closing @erin",
        caller=ADMIN,
        **_fields(["status", "title"], status=v1.Status.FIXED, title="retitled @fay"),
        hotlist_remove=[mine.id],
    )
    assert issues[0].hotlist_ids == [hidden.id]
    # Moved: the root field's values follow into the subtree, the other field's are dropped.
    issues = await _batch(
        backend, issues, **_fields(["component_id"], component_id=child_component)
    )
    assert issues[0].custom_fields
    assert not issues[2].custom_fields
    assert issues[0].starred
    assert issues[0].has_children
    assert issues[0].has_duplicates


async def test_a_batch_whose_later_item_changes_an_earlier_ones_issue_reads_after_the_commit(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The other side of a relation, and a parent: the answers are read after the commit."""
    backend = bugless_model_backend
    root = (await fresh_component(backend, "batch")).id
    first, blocker, parent = [await create(backend, root) for _ in range(3)]
    await change_with(backend, blocker, blocking_add=[first.id])
    first, second = (
        await backend.batch_get_issues(
            v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=[first.id, blocker.id])
        )
    ).issues
    # Removing ``first`` from what each blocks: nothing for ``first`` itself, but
    # ``second``'s change writes ``first``'s other side after ``first``'s own change.
    async with Sent(backend, model_settings.pool_max_size) as sent:
        first, second = await _batch(
            backend, [first, second], "unblock", blocking_remove=[first.id]
        )
    assert first.blocked_by_ids == []
    assert first.version == 4  # created, blocked, commented, unblocked
    # The batch's read and _batch's.
    assert sum(s.startswith(READ) for s in _after_commit(sent.take())) == 2

    # ``first`` is ``second``'s parent; both get another: ``first`` has no child any more,
    # which the change of ``first`` (the batch's first item) could not know.
    await change_with(backend, second, **_fields(["parent_id"], parent_id=first.id))
    first, second = (
        await backend.batch_get_issues(
            v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=[first.id, second.id])
        )
    ).issues
    assert first.has_children
    first, second = await _batch(
        backend, [first, second], **_fields(["parent_id"], parent_id=parent.id)
    )
    assert not first.has_children
    assert first.parent_id == second.parent_id == parent.id
