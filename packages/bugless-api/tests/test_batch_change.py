"""BatchChangeIssues through the API: one delta, many issues, all or nothing."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from api_support import ConnectAs, signed_in
from grpclib.const import Status

from bugless_api.client import BuglessClient
from bugless_core.errors import InvalidArgument, IssueVersionConflict, NotFound, PermissionDenied
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


def _delta(*, cc_add: list[str] | None = None, **fields: Any) -> v1.IssueDelta:
    return v1.IssueDelta(
        fields=v1.IssueFields(**fields),
        update_mask=FieldMask(paths=list(fields)),
        cc_add=cc_add or [],
    )


async def _batch(
    client: BuglessClient,
    issues: list[v1.Issue],
    delta: v1.IssueDelta,
    *,
    versions: list[int] | None = None,
    comment: str = "",
    atomic: bool = True,
) -> v1.BatchChangeIssuesResponse:
    """Apply ``delta`` to ``issues`` at their versions (or the ``versions`` given)."""
    expected = versions or [issue.version for issue in issues]
    return await client.batch_change_issues(
        [(issue.id, version) for issue, version in zip(issues, expected, strict=True)],
        delta,
        comment=comment,
        atomic=atomic,
    )


async def _issues(client: BuglessClient, count: int) -> list[v1.Issue]:
    component = await client.create_component(f"Batch-{secrets.token_hex(3)}")
    return [await client.create_issue(f"batch {n}", component.id) for n in range(count)]


async def _versions_and_history(client: BuglessClient, issues: list[v1.Issue]) -> list[int]:
    """Each issue's version, checked to equal the length of its history."""
    versions = []
    for issue in issues:
        now = await client.get_issue(issue.id)
        assert len((await client.list_history(issue.id)).entries) == now.version
        versions.append(now.version)
    return versions


async def test_an_atomic_batch_changes_every_issue_once_with_usernames(
    connect_as: ConnectAs,
) -> None:
    """Every issue gets one entry with the comment; people are usernames both ways."""
    robot, *_ = await signed_in(connect_as, "robot", "boss", "viewer")
    issues = await _issues(robot, 3)

    reply = await _batch(
        robot,
        issues,
        _delta(assignee="boss", priority=v1.Priority.P1, cc_add=["viewer"]),
        comment="bulk triage",
    )

    assert [r.issue_id for r in reply.results] == [i.id for i in issues]
    for result in reply.results:
        assert (result.code, result.message) == (0, "")
        assert result.issue is not None
        assert (result.issue.assignee, result.issue.cc, result.issue.reporter) == (
            "boss",
            ["viewer"],
            "robot",
        )
        assert result.issue.priority is v1.Priority.P1
        assert result.issue.version == 2
        entry = (await robot.list_history(result.issue_id)).entries[-1]
        assert (entry.author, entry.comment) == ("robot", "bulk triage")
        assignee = next(c for c in entry.changes if c.field == "assignee")
        assert (assignee.old_value, assignee.new_value) == ("", "boss")
        assert next(c for c in entry.changes if c.field == "cc").added == ["viewer"]


async def test_one_stale_version_refuses_the_whole_atomic_batch(connect_as: ConnectAs) -> None:
    """ABORTED with the stale issue's current version; no issue is changed."""
    (robot,) = await signed_in(connect_as, "robot")
    issues = await _issues(robot, 3)
    await robot.comment(issues[1].id, "meanwhile")

    with pytest.raises(IssueVersionConflict) as caught:
        await _batch(robot, issues, _delta(priority=v1.Priority.P4), comment="too late")

    assert caught.value.issue_id == issues[1].id
    assert (caught.value.expected_version, caught.value.current_version) == (1, 2)
    assert f"issue {issues[1].id} is at version 2, not 1" in caught.value.message
    assert await _versions_and_history(robot, issues) == [1, 2, 1]
    for issue in issues:
        assert (await robot.get_issue(issue.id)).priority is v1.Priority.P2


@pytest.mark.parametrize("atomic", [True, False])
async def test_an_unknown_username_refuses_the_whole_batch(
    connect_as: ConnectAs, atomic: bool
) -> None:
    """The delta is shared, so an unknown person fails every item: nothing is written."""
    robot, _ = await signed_in(connect_as, "robot", "boss")
    issues = await _issues(robot, 2)

    with pytest.raises(InvalidArgument, match=r"delta\.cc_add\[1\]: no bugless user is named"):
        await _batch(
            robot,
            issues,
            _delta(priority=v1.Priority.P0, cc_add=["boss", "ghost"]),
            comment="who?",
            atomic=atomic,
        )
    with pytest.raises(InvalidArgument, match=r"delta\.fields\.assignee: .*'ghost'"):
        await _batch(robot, issues, _delta(assignee="ghost"), atomic=atomic)

    assert await _versions_and_history(robot, issues) == [1, 1]
    assert [(await robot.get_issue(i.id)).cc for i in issues] == [[], []]


async def test_an_invisible_issue_refuses_the_atomic_batch_as_not_found(
    connect_as: ConnectAs,
) -> None:
    """An issue the caller may not view is NOT_FOUND, named; the visible ones are untouched."""
    robot, boss = await signed_in(connect_as, "robot", "boss")
    (visible,) = await _issues(robot, 1)
    hidden = await boss.create_component(
        f"BatchHidden-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="boss"), role=v1.Role.ADMIN)],
    )
    secret = await boss.create_issue("boss only", hidden.id)

    with pytest.raises(NotFound, match=f"issue {secret.id} not found"):
        await _batch(robot, [visible, secret], _delta(title="mass rename"))

    assert await _versions_and_history(robot, [visible]) == [1]
    assert (await boss.get_issue(secret.id)).title == "boss only"


async def test_a_viewer_may_not_batch_change(connect_as: ConnectAs) -> None:
    """VIEWER on the component: PERMISSION_DENIED naming the editor role, nothing written."""
    boss, viewer = await signed_in(connect_as, "boss", "viewer")
    component = await boss.create_component(
        f"BatchSecret-{secrets.token_hex(3)}",
        acl=[
            v1.AclEntry(principal=v1.Principal(user="boss"), role=v1.Role.ADMIN),
            v1.AclEntry(principal=v1.Principal(group="secret-viewers"), role=v1.Role.VIEWER),
        ],
    )
    issues = [await boss.create_issue(f"guarded {n}", component.id) for n in range(2)]

    with pytest.raises(PermissionDenied, match="editor"):
        await _batch(viewer, issues, _delta(priority=v1.Priority.P0))

    assert await _versions_and_history(boss, issues) == [1, 1]


async def test_a_non_atomic_batch_commits_successes_and_reports_each_failure(
    connect_as: ConnectAs,
) -> None:
    """Per-issue codes in request order; the successful change is committed, named."""
    robot, boss = await signed_in(connect_as, "robot", "boss")
    stale, ok = await _issues(robot, 2)
    await robot.comment(stale.id, "meanwhile")
    hidden = await boss.create_component(
        f"BatchMixed-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="boss"), role=v1.Role.ADMIN)],
    )
    secret = await boss.create_issue("boss only", hidden.id)

    reply = await _batch(
        robot,
        [stale, ok, secret],
        _delta(assignee="boss", severity=v1.Severity.S1),
        comment="each on its own",
        atomic=False,
    )

    assert [(r.issue_id, r.code) for r in reply.results] == [
        (stale.id, Status.ABORTED.value),
        (ok.id, Status.OK.value),
        (secret.id, Status.NOT_FOUND.value),
    ]
    assert "version 2, not 1" in reply.results[0].message
    assert f"issue {secret.id} not found" in reply.results[2].message
    assert [r.issue is None for r in reply.results] == [True, False, True]
    committed = reply.results[1].issue
    assert committed is not None
    assert (committed.assignee, committed.severity) == ("boss", v1.Severity.S1)
    assert await _versions_and_history(robot, [stale, ok]) == [2, 2]
    assert (await boss.get_issue(secret.id)).version == 1
