"""Contract: one delta applied to many issues."""

from __future__ import annotations

from grpclib.const import Status

from bugless_core.errors import IssueVersionConflict, from_grpc_error
from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    change,
    changes_by_field,
    delta,
    expect_error,
    get_issue,
    history,
    make_component,
    make_issue,
    only,
    user_entry,
)


class BatchChangeContract:
    """BatchChangeIssues, atomic and per issue.

    Pins down: atomic batches change every issue once (one entry each, with the
    comment) or, on the first failure (stale version, invisible issue), fail
    with that error naming the issue and write nothing; relations to issues in
    the same batch; non-atomic batches commit each success and report each
    failure as a gRPC code and message in request order.
    """

    async def test_atomic_batch_changes_every_issue_once(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issues = [await make_issue(model, comp.id) for _ in range(4)]
        response = await model.batch_change_issues(
            v1.BatchChangeIssuesRequest(
                caller=BOB,
                issues=[v1.IssueVersion(issue_id=i.id, expected_version=1) for i in issues],
                delta=delta(priority=v1.Priority.P0, cc_add=["triager"]),
                comment="bulk triage",
                atomic=True,
            )
        )
        assert [r.issue_id for r in response.results] == [i.id for i in issues]
        for result in response.results:
            assert result.code == 0
            assert result.issue is not None
            assert result.issue.priority == v1.Priority.P0
            assert result.issue.version == 2
            entry = (await history(model, result.issue_id))[-1]
            assert entry.comment == "bulk triage"
            assert entry.author == BOB.user_id
            assert set(changes_by_field(entry)) == {"priority", "cc"}

    async def test_atomic_batch_with_one_stale_version_writes_nothing(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issues = [await make_issue(model, comp.id) for _ in range(3)]
        stale = (await change(model, issues[1], comment="meanwhile")).issue
        error = await expect_error(
            model.batch_change_issues(
                v1.BatchChangeIssuesRequest(
                    caller=ALICE,
                    issues=[v1.IssueVersion(issue_id=i.id, expected_version=1) for i in issues],
                    delta=delta(priority=v1.Priority.P4),
                    atomic=True,
                )
            ),
            Status.ABORTED,
            str(stale.id),
        )
        conflict = from_grpc_error(error)
        assert isinstance(conflict, IssueVersionConflict)
        assert conflict.current_version == 2
        for issue in issues:
            now = await get_issue(model, issue.id)
            assert now.priority == v1.Priority.P2
        assert [(await get_issue(model, i.id)).version for i in issues] == [1, 2, 1]

    async def test_atomic_batch_with_an_invisible_issue_writes_nothing(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        hidden = await make_component(model, acl=[user_entry("carol", v1.Role.ADMIN)])
        visible = await make_issue(model, comp.id)
        secret = await make_issue(model, hidden.id, caller=ADMIN)
        await expect_error(
            model.batch_change_issues(
                v1.BatchChangeIssuesRequest(
                    caller=BOB,
                    issues=[
                        v1.IssueVersion(issue_id=visible.id, expected_version=1),
                        v1.IssueVersion(issue_id=secret.id, expected_version=1),
                    ],
                    delta=delta(title="mass rename"),
                    atomic=True,
                )
            ),
            Status.NOT_FOUND,
            f"issue {secret.id} not found",
        )
        assert (await get_issue(model, visible.id)).version == 1
        assert (await get_issue(model, secret.id)).version == 1

    async def test_atomic_batch_relation_to_an_issue_also_in_the_batch(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        blocker = await make_issue(model, comp.id)
        a, b = [await make_issue(model, comp.id) for _ in range(2)]
        await model.batch_change_issues(
            v1.BatchChangeIssuesRequest(
                caller=ALICE,
                issues=[v1.IssueVersion(issue_id=i.id, expected_version=1) for i in (a, b)],
                delta=delta(blocked_by_add=[blocker.id]),
                atomic=True,
            )
        )
        now = await get_issue(model, blocker.id)
        assert now.blocking_ids == sorted([a.id, b.id])
        assert now.version == 3
        assert len(await history(model, blocker.id)) == 3

    async def test_non_atomic_batch_commits_successes_and_reports_failures(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        hidden = await make_component(model, acl=[user_entry("carol", v1.Role.ADMIN)])
        ok = await make_issue(model, comp.id)
        stale = await make_issue(model, comp.id)
        await change(model, stale, comment="meanwhile")
        secret = await make_issue(model, hidden.id, caller=ADMIN)
        response = await model.batch_change_issues(
            v1.BatchChangeIssuesRequest(
                caller=BOB,
                issues=[
                    v1.IssueVersion(issue_id=stale.id, expected_version=1),
                    v1.IssueVersion(issue_id=ok.id, expected_version=1),
                    v1.IssueVersion(issue_id=secret.id, expected_version=1),
                ],
                delta=delta(severity=v1.Severity.S1),
                comment="each on its own",
                atomic=False,
            )
        )
        by_id = {r.issue_id: r for r in response.results}
        assert [r.issue_id for r in response.results] == [stale.id, ok.id, secret.id]
        assert by_id[ok.id].code == Status.OK.value
        ok_issue = by_id[ok.id].issue
        assert ok_issue is not None
        assert ok_issue.severity == v1.Severity.S1
        assert by_id[stale.id].code == Status.ABORTED.value
        assert by_id[stale.id].message
        assert by_id[secret.id].code == Status.NOT_FOUND.value
        assert f"issue {secret.id} not found" in by_id[secret.id].message
        assert (await get_issue(model, ok.id)).severity == v1.Severity.S1
        assert (await get_issue(model, stale.id)).version == 2
        assert (await get_issue(model, secret.id)).version == 1

    async def test_non_atomic_batch_with_only_a_viewer_role_reports_permission_denied(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(
            model, acl=[user_entry("bob", v1.Role.VIEWER), user_entry("alice", v1.Role.ADMIN)]
        )
        issue = await make_issue(model, comp.id, caller=ALICE)
        response = await model.batch_change_issues(
            v1.BatchChangeIssuesRequest(
                caller=BOB,
                issues=[v1.IssueVersion(issue_id=issue.id, expected_version=1)],
                comment="viewer",
                atomic=False,
            )
        )
        result = only(response.results)
        assert result.code == Status.PERMISSION_DENIED.value
        assert (await get_issue(model, issue.id)).version == 1
