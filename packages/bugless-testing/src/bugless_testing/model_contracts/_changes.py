"""Contract: changing issues with deltas."""

from __future__ import annotations

from typing import Any

import pytest
from grpclib.const import Status

from bugless_core.errors import IssueVersionConflict, from_grpc_error
from bugless_core.issue_fields import CLOSED_STATUSES
from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ALICE,
    BOB,
    change,
    changes_by_field,
    delta,
    expect_error,
    get_issue,
    history,
    kw,
    make_component,
    make_hotlist,
    make_issue,
    update_component,
    user_entry,
)

#: (delta keyword, new value, FieldChange new_value) for each scalar field.
_SCALAR_CHANGES: list[tuple[str, Any, str]] = [
    ("title", "A better title", "A better title"),
    ("status", v1.Status.ACCEPTED, "ACCEPTED"),
    ("priority", v1.Priority.P0, "P0"),
    ("severity", v1.Severity.S4, "S4"),
    ("issue_type", v1.IssueType.FEATURE_REQUEST, "FEATURE_REQUEST"),
    ("assignee", "bob", "bob"),
    ("verifier", "carol", "carol"),
]
_OLD_VALUES = {
    "title": "Original title",
    "status": "NEW",
    "priority": "P2",
    "severity": "S2",
    "type": "BUG",
    "assignee": "",
    "verifier": "",
}


class ChangeContract:
    """ChangeIssue and BatchChangeIssues: deltas, versions and two-way relations.

    Pins down: one entry and exactly one version per change, field changes
    rendered as the contract says, no FieldChange for unchanged fields, the
    empty change, version preconditions (ABORTED with the current version,
    nothing written), closed_at, cc and hotlist lists, relations kept two-way
    with other-side entries, self-references, parent/duplicate cycles, and
    atomic and non-atomic batch changes.
    """

    # ---- one change, one entry, one version ----

    @pytest.mark.parametrize(("keyword", "new", "rendered"), _SCALAR_CHANGES)
    async def test_scalar_change_is_one_entry_with_old_and_new_value(
        self, model: v1.ModelStub, keyword: str, new: Any, rendered: str
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, title="Original title")
        result = await change(model, issue, delta(**kw(keyword, new)), caller=BOB)
        assert result.issue.version == 2
        assert result.entry.version == 2
        assert result.entry.issue_id == issue.id
        assert result.entry.author == BOB.user_id
        field = "type" if keyword == "issue_type" else keyword
        got = changes_by_field(result.entry)
        assert field in got
        assert got[field].old_value == _OLD_VALUES[field]
        assert got[field].new_value == rendered
        assert getattr(result.issue, field) == new
        assert result.issue == await get_issue(model, issue.id, caller=BOB)

    async def test_component_change_renders_ids_in_decimal(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        other = await make_component(model)
        issue = await make_issue(model, comp.id)
        result = await change(model, issue, delta(component_id=other.id))
        assert result.issue.component_id == other.id
        fc = changes_by_field(result.entry)["component_id"]
        assert (fc.old_value, fc.new_value) == (str(comp.id), str(other.id))

    @pytest.mark.parametrize("field", ["parent_id", "duplicate_of_id"])
    async def test_reference_change_renders_none_as_empty_string(
        self, model: v1.ModelStub, field: str
    ) -> None:
        comp = await make_component(model)
        target = await make_issue(model, comp.id)
        issue = await make_issue(model, comp.id)
        first = await change(model, issue, delta(**kw(field, target.id)))
        fc = changes_by_field(first.entry)[field]
        assert (fc.old_value, fc.new_value) == ("", str(target.id))
        assert getattr(first.issue, field) == target.id
        second = await change(model, first.issue, delta(**kw(field, 0)))
        fc = changes_by_field(second.entry)[field]
        assert (fc.old_value, fc.new_value) == (str(target.id), "")
        assert getattr(second.issue, field) == 0

    async def test_marking_a_duplicate_sets_status_duplicate_and_reopening_ends_the_link(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        original = await make_issue(model, comp.id)
        issue = await make_issue(model, comp.id)
        marked = await change(model, issue, delta(duplicate_of_id=original.id))
        assert (marked.issue.status, marked.issue.duplicate_of_id) == (
            v1.Status.DUPLICATE,
            original.id,
        )
        assert set(changes_by_field(marked.entry)) == {"duplicate_of_id", "status"}
        reopened = await change(model, marked.issue, delta(status=v1.Status.NEW))
        assert (reopened.issue.status, reopened.issue.duplicate_of_id) == (v1.Status.NEW, 0)
        # A status said with the link is kept; a status change of no duplicate adds nothing.
        both = await change(
            model, reopened.issue, delta(duplicate_of_id=original.id, status=v1.Status.ASSIGNED)
        )
        assert (both.issue.status, both.issue.duplicate_of_id) == (v1.Status.ASSIGNED, original.id)
        plain = await make_issue(model, comp.id)
        fixed = await change(model, plain, delta(status=v1.Status.FIXED))
        assert set(changes_by_field(fixed.entry)) == {"status"}
        born = await make_issue(model, comp.id, duplicate_of_id=original.id)
        assert born.status == v1.Status.DUPLICATE

    async def test_clearing_assignee_renders_empty_string(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, assignee="bob")
        result = await change(model, issue, delta(assignee=""))
        fc = changes_by_field(result.entry)["assignee"]
        assert (fc.old_value, fc.new_value) == ("bob", "")
        assert result.issue.assignee == ""

    async def test_many_fields_and_a_comment_are_one_entry(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        result = await change(
            model,
            issue,
            delta(priority=v1.Priority.P0, severity=v1.Severity.S0, cc_add=["x"], title="new"),
            comment="escalating",
        )
        assert result.issue.version == 2
        assert result.entry.comment == "escalating"
        assert set(changes_by_field(result.entry)) == {"priority", "severity", "cc", "title"}
        entries = await history(model, issue.id)
        assert len(entries) == 2
        assert entries[1] == result.entry

    async def test_unchanged_field_in_mask_produces_no_field_change(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, priority=v1.Priority.P1)
        result = await change(model, issue, delta(priority=v1.Priority.P1, title="renamed"))
        assert set(changes_by_field(result.entry)) == {"title"}

    async def test_comment_only_change_writes_entry_without_changes(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, description="desc")
        result = await change(model, issue, comment="Any news?", caller=BOB)
        assert result.entry.changes == []
        assert result.entry.comment == "Any news?"
        assert result.issue.version == 2
        assert result.issue.comment_count == 2
        assert result.issue.description == "desc"

    async def test_changes_advance_modified_at_but_not_created_at(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        result = await change(model, issue, comment="later")
        assert result.issue.created_at == issue.created_at
        assert result.issue.modified_at is not None
        assert issue.modified_at is not None
        assert result.issue.modified_at >= issue.modified_at
        assert result.entry.created_at is not None
        assert result.entry.created_at >= issue.modified_at

    # ---- the empty change ----

    @pytest.mark.parametrize(
        "make_delta",
        [
            pytest.param(lambda i: delta(priority=v1.Priority.P2), id="field-at-its-value"),
            pytest.param(lambda i: delta(title="Same"), id="title-at-its-value"),
            pytest.param(lambda i: delta(cc_add=["present"]), id="add-present-cc"),
            pytest.param(lambda i: delta(cc_remove=["absent"]), id="remove-absent-cc"),
            pytest.param(lambda i: delta(blocking_remove=[i]), id="remove-absent-blocking"),
            pytest.param(lambda i: delta(blocked_by_remove=[i]), id="remove-absent-blocked-by"),
            pytest.param(lambda i: delta(parent_id=0), id="clear-absent-parent"),
        ],
    )
    async def test_delta_changing_nothing_without_comment_is_rejected_and_writes_nothing(
        self, model: v1.ModelStub, make_delta: Any
    ) -> None:
        comp = await make_component(model)
        other = await make_issue(model, comp.id)
        issue = await make_issue(model, comp.id, title="Same", cc=["present"])
        await expect_error(
            change(model, issue, make_delta(other.id)),
            Status.INVALID_ARGUMENT,
            "the change is empty",
        )
        assert (await get_issue(model, issue.id)).version == 1
        assert len(await history(model, issue.id)) == 1

    async def test_delta_changing_nothing_with_comment_writes_only_the_comment(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, cc=["present"])
        result = await change(
            model, issue, delta(cc_add=["present"], priority=v1.Priority.P2), comment="ping"
        )
        assert result.entry.changes == []
        assert result.entry.comment == "ping"
        assert result.issue.version == 2

    # ---- version preconditions ----

    async def test_stale_version_is_rejected_with_current_version(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        await change(model, issue, comment="first")
        error = await expect_error(
            change(model, issue, delta(title="lost update"), comment="second"),
            Status.ABORTED,
        )
        conflict = from_grpc_error(error)
        assert isinstance(conflict, IssueVersionConflict)
        assert conflict.reason == "VERSION_CONFLICT"
        assert conflict.current_version == 2
        assert conflict.expected_version == 1
        assert conflict.issue_id == issue.id
        now = await get_issue(model, issue.id)
        assert now.version == 2
        assert now.title == issue.title
        assert [e.comment for e in await history(model, issue.id)] == ["", "first"]

    async def test_version_from_the_future_is_rejected(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        error = await expect_error(
            change(model, issue, comment="x", expected_version=5), Status.ABORTED
        )
        conflict = from_grpc_error(error)
        assert isinstance(conflict, IssueVersionConflict)
        assert conflict.current_version == 1
        assert len(await history(model, issue.id)) == 1

    async def test_each_change_increments_version_by_exactly_one(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        for n in range(2, 7):
            issue = (await change(model, issue, comment=f"c{n}")).issue
            assert issue.version == n
        assert [e.version for e in await history(model, issue.id)] == [1, 2, 3, 4, 5, 6]

    # ---- status and closed_at ----

    @pytest.mark.parametrize("closed", sorted(CLOSED_STATUSES), ids=lambda s: s.name)
    async def test_closing_sets_closed_at_and_reopening_clears_it(
        self, model: v1.ModelStub, closed: v1.Status
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        done = (await change(model, issue, delta(status=closed))).issue
        assert done.closed_at is not None
        assert done.modified_at is not None
        assert done.closed_at <= done.modified_at
        reopened = (await change(model, done, delta(status=v1.Status.ACCEPTED))).issue
        assert reopened.closed_at is None

    async def test_moving_within_the_closed_class_keeps_closed_at(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        fixed = (await change(model, issue, delta(status=v1.Status.FIXED))).issue
        verified = (await change(model, fixed, delta(status=v1.Status.VERIFIED))).issue
        assert verified.closed_at == fixed.closed_at

    @pytest.mark.parametrize("target", [v1.Status.ASSIGNED, v1.Status.ACCEPTED])
    async def test_moving_within_the_open_class_leaves_closed_at_unset(
        self, model: v1.ModelStub, target: v1.Status
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        moved = (await change(model, issue, delta(status=target))).issue
        assert moved.closed_at is None

    # ---- cc and hotlists ----

    async def test_cc_add_and_remove_are_list_changes_and_stay_sorted(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, cc=["mia", "zoe"])
        result = await change(model, issue, delta(cc_add=["adam", "kim"], cc_remove=["zoe"]))
        assert result.issue.cc == ["adam", "kim", "mia"]
        fc = changes_by_field(result.entry)["cc"]
        assert sorted(fc.added) == ["adam", "kim"]
        assert fc.removed == ["zoe"]
        assert (fc.old_value, fc.new_value) == ("", "")

    async def test_cc_add_of_present_member_is_not_recorded(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, cc=["mia"])
        result = await change(model, issue, delta(cc_add=["mia", "zoe"]))
        assert changes_by_field(result.entry)["cc"].added == ["zoe"]

    async def test_hotlist_add_and_remove_by_delta_are_recorded(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        hot = await make_hotlist(model, caller=ALICE)
        issue = await make_issue(model, comp.id)
        added = await change(model, issue, delta(hotlist_add=[hot.id]))
        assert added.issue.hotlist_ids == [hot.id]
        assert changes_by_field(added.entry)["hotlist_ids"].added == [str(hot.id)]
        removed = await change(model, added.issue, delta(hotlist_remove=[hot.id]))
        assert removed.issue.hotlist_ids == []
        assert changes_by_field(removed.entry)["hotlist_ids"].removed == [str(hot.id)]

    async def test_hotlist_add_needs_edit_rights_on_the_hotlist(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        hot = await make_hotlist(model, caller=ALICE)
        issue = await make_issue(model, comp.id)
        await expect_error(
            change(model, issue, delta(hotlist_add=[hot.id]), caller=BOB),
            Status.PERMISSION_DENIED,
        )
        assert (await get_issue(model, issue.id)).version == 1

    # ---- relations ----

    async def test_blocking_add_gives_other_side_an_entry_in_same_change(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        a = await make_issue(model, comp.id)
        b = await make_issue(model, comp.id)
        result = await change(model, a, delta(blocking_add=[b.id]), caller=BOB, comment="dep")
        assert result.issue.blocking_ids == [b.id]
        assert changes_by_field(result.entry)["blocking_ids"].added == [str(b.id)]
        b_now = await get_issue(model, b.id)
        assert b_now.blocked_by_ids == [a.id]
        assert b_now.version == 2
        other = (await history(model, b.id))[-1]
        assert other.version == 2
        assert other.caused_by_issue_id == a.id
        assert other.author == BOB.user_id
        assert other.created_at == result.entry.created_at
        assert other.comment == ""
        assert changes_by_field(other)["blocked_by_ids"].added == [str(a.id)]
        assert set(changes_by_field(other)) == {"blocked_by_ids"}

    async def test_blocked_by_add_gives_other_side_an_entry(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        a = await make_issue(model, comp.id)
        b = await make_issue(model, comp.id)
        result = await change(model, a, delta(blocked_by_add=[b.id]))
        assert result.issue.blocked_by_ids == [b.id]
        b_now = await get_issue(model, b.id)
        assert b_now.blocking_ids == [a.id]
        other = (await history(model, b.id))[-1]
        assert other.caused_by_issue_id == a.id
        assert changes_by_field(other)["blocking_ids"].added == [str(a.id)]

    async def test_relation_remove_gives_other_side_an_entry(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        b = await make_issue(model, comp.id)
        a = await make_issue(model, comp.id, blocking_ids=[b.id])
        result = await change(model, a, delta(blocking_remove=[b.id]))
        assert result.issue.blocking_ids == []
        assert changes_by_field(result.entry)["blocking_ids"].removed == [str(b.id)]
        b_now = await get_issue(model, b.id)
        assert b_now.blocked_by_ids == []
        assert b_now.version == 3
        other = (await history(model, b.id))[-1]
        assert other.caused_by_issue_id == a.id
        assert changes_by_field(other)["blocked_by_ids"].removed == [str(a.id)]

    async def test_relations_with_several_issues_are_sorted_and_each_gets_an_entry(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        targets = [await make_issue(model, comp.id) for _ in range(3)]
        a = await make_issue(model, comp.id)
        ids = [t.id for t in targets]
        result = await change(model, a, delta(blocking_add=list(reversed(ids))))
        assert result.issue.blocking_ids == sorted(ids)
        for target in targets:
            now = await get_issue(model, target.id)
            assert now.blocked_by_ids == [a.id]
            assert now.version == 2

    async def test_two_way_invariant_holds_for_both_lists(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        a, b, c = [await make_issue(model, comp.id) for _ in range(3)]
        await change(model, a, delta(blocking_add=[b.id], blocked_by_add=[c.id]))
        issues = {i.id: await get_issue(model, i.id) for i in (a, b, c)}
        for issue in issues.values():
            for other in issue.blocking_ids:
                assert issue.id in issues[other].blocked_by_ids
            for other in issue.blocked_by_ids:
                assert issue.id in issues[other].blocking_ids

    async def test_changing_the_other_side_needs_only_viewer(self, model: v1.ModelStub) -> None:
        mine = await make_component(model, acl=[user_entry("bob", v1.Role.EDITOR)])
        theirs = await make_component(
            model,
            acl=[user_entry("bob", v1.Role.VIEWER), user_entry("alice", v1.Role.ADMIN)],
        )
        a = await make_issue(model, mine.id, caller=BOB)
        b = await make_issue(model, theirs.id, caller=ALICE)
        result = await change(model, a, delta(blocking_add=[b.id]), caller=BOB)
        assert result.issue.blocking_ids == [b.id]
        other = (await history(model, b.id))[-1]
        assert other.author == BOB.user_id
        assert other.caused_by_issue_id == a.id

    @pytest.mark.parametrize(
        "keyword", ["blocking_add", "blocked_by_add", "parent_id", "duplicate_of_id"]
    )
    async def test_issue_cannot_reference_itself(self, model: v1.ModelStub, keyword: str) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        value: Any = [issue.id] if keyword.endswith("_add") else issue.id
        await expect_error(
            change(model, issue, delta(**kw(keyword, value))), Status.INVALID_ARGUMENT
        )
        assert len(await history(model, issue.id)) == 1

    @pytest.mark.parametrize("keyword", ["blocking_add", "blocked_by_add"])
    async def test_unknown_related_issue_is_not_found_naming_the_field(
        self, model: v1.ModelStub, keyword: str
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        unknown = issue.id + 10_000_000
        await expect_error(
            change(model, issue, delta(**kw(keyword, [unknown]), cc_add=["x"])),
            Status.NOT_FOUND,
            f"{keyword}: issue {unknown} not found",
        )
        now = await get_issue(model, issue.id)
        assert now.version == 1
        assert now.cc == []

    @pytest.mark.parametrize("field", ["parent_id", "duplicate_of_id"])
    async def test_two_issue_cycle_is_refused(self, model: v1.ModelStub, field: str) -> None:
        comp = await make_component(model)
        top = await make_issue(model, comp.id)
        child = await make_issue(model, comp.id, **kw(field, top.id))
        await expect_error(
            change(model, top, delta(**kw(field, child.id))),
            Status.FAILED_PRECONDITION,
            field,
        )
        assert getattr(await get_issue(model, top.id), field) == 0
        assert len(await history(model, top.id)) == 1

    @pytest.mark.parametrize("field", ["parent_id", "duplicate_of_id"])
    async def test_long_cycle_is_refused_naming_both_issues(
        self, model: v1.ModelStub, field: str
    ) -> None:
        comp = await make_component(model)
        chain = [await make_issue(model, comp.id)]
        for _ in range(3):
            chain.append(await make_issue(model, comp.id, **kw(field, chain[-1].id)))
        top, bottom = chain[0], chain[-1]
        error = await expect_error(
            change(model, top, delta(**kw(field, bottom.id))), Status.FAILED_PRECONDITION, field
        )
        assert str(top.id) in (error.message or "")
        assert str(bottom.id) in (error.message or "")
        assert getattr(await get_issue(model, top.id), field) == 0

    async def test_reparenting_without_a_cycle_is_allowed(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        a, b, c = [await make_issue(model, comp.id) for _ in range(3)]
        await change(model, b, delta(parent_id=a.id))
        result = await change(model, c, delta(parent_id=b.id))
        assert result.issue.parent_id == b.id
        moved = await change(model, await get_issue(model, b.id), delta(parent_id=0))
        assert moved.issue.parent_id == 0
        again = await change(model, await get_issue(model, a.id), delta(parent_id=c.id))
        assert again.issue.parent_id == c.id

    # ---- moving between components ----

    async def test_move_needs_editor_on_target(self, model: v1.ModelStub) -> None:
        source = await make_component(model, acl=[user_entry("bob", v1.Role.EDITOR)])
        target = await make_component(model, acl=[user_entry("bob", v1.Role.VIEWER)])
        issue = await make_issue(model, source.id, caller=BOB)
        await expect_error(
            change(model, issue, delta(component_id=target.id), caller=BOB),
            Status.PERMISSION_DENIED,
            "editor",
        )
        assert (await get_issue(model, issue.id)).component_id == source.id

    async def test_move_into_an_archived_component_is_refused_and_writes_nothing(
        self, model: v1.ModelStub
    ) -> None:
        source = await make_component(model)
        archived = await make_component(model)
        resident = await make_issue(model, archived.id, caller=BOB)
        await update_component(model, v1.Component(id=archived.id, archived=True), "archived")
        issue = await make_issue(model, source.id, caller=BOB)
        await expect_error(
            change(model, issue, delta(component_id=archived.id), caller=BOB),
            Status.FAILED_PRECONDITION,
            "archived",
        )
        unchanged = await get_issue(model, issue.id)
        assert (unchanged.component_id, unchanged.version) == (source.id, 1)
        # An issue already in the archived component stays changeable there.
        kept = await change(model, resident, delta(title="still editable"), caller=BOB)
        assert (kept.issue.title, kept.issue.component_id) == ("still editable", archived.id)

    async def test_move_to_invisible_component_is_not_found(self, model: v1.ModelStub) -> None:
        source = await make_component(model)
        hidden = await make_component(model, acl=[user_entry("carol", v1.Role.ADMIN)])
        issue = await make_issue(model, source.id, caller=BOB)
        await expect_error(
            change(model, issue, delta(component_id=hidden.id), caller=BOB), Status.NOT_FOUND
        )
        assert (await get_issue(model, issue.id)).version == 1
