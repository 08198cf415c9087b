"""Contract: creating and reading issues."""

from __future__ import annotations

import asyncio

import pytest
from grpclib.const import Status

from bugless_core.model.backend import Capability
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    UNKNOWN_ID,
    change,
    changes_by_field,
    delta,
    expect_error,
    get_issue,
    history,
    make_component,
    make_hotlist,
    make_issue,
    search_page,
    unique,
    update_component,
    user_entry,
    within,
)
from bugless_testing.plugin import requires_capability


class IssueContract:
    """Creating issues (defaults, creation entry, idempotency) and reading them back.

    Pins down: required fields, defaults (NEW/ASSIGNED, P2, S2, BUG), the reporter,
    version 1 and history entry 1, relations and hotlists given at creation,
    archived components, GetIssue and BatchGetIssues (order, missing ids, read
    masks), and idempotency keys, also under concurrent retries.
    """

    async def test_create_returns_issue_with_version_one_and_caller_as_reporter(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, title="Disk is full", caller=ALICE)
        assert issue.id > 0
        assert issue.title == "Disk is full"
        assert issue.component_id == comp.id
        assert issue.reporter == ALICE.user_id
        assert issue.version == 1
        assert issue.created_at is not None
        assert issue.modified_at is not None
        assert issue.closed_at is None

    async def test_create_without_enums_takes_defaults(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        assert issue.status == v1.Status.NEW
        assert issue.priority == v1.Priority.P2
        assert issue.severity == v1.Severity.S2
        assert issue.type == v1.IssueType.BUG
        assert issue.assignee == ""
        assert issue.verifier == ""
        assert issue.cc == []
        assert issue.parent_id == 0
        assert issue.duplicate_of_id == 0

    async def test_create_with_assignee_defaults_status_to_assigned(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, assignee="bob")
        assert issue.status == v1.Status.ASSIGNED
        assert issue.assignee == "bob"

    async def test_explicit_status_wins_over_assignee_default(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, assignee="bob", status=v1.Status.ACCEPTED)
        assert issue.status == v1.Status.ACCEPTED

    async def test_created_closed_has_closed_at_equal_to_created_at(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        closed = await make_issue(model, comp.id, status=v1.Status.WONT_FIX_OBSOLETE)
        assert closed.closed_at is not None
        assert closed.closed_at == closed.created_at
        assert await get_issue(model, closed.id) == closed
        still_open = await make_issue(model, comp.id, status=v1.Status.ACCEPTED)
        assert still_open.closed_at is None

    @pytest.mark.parametrize("priority", [p for p in v1.Priority if p.value])
    async def test_create_keeps_explicit_priority(
        self, model: v1.ModelStub, priority: v1.Priority
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, priority=priority)
        assert issue.priority == priority

    @pytest.mark.parametrize("severity", [s for s in v1.Severity if s.value])
    async def test_create_keeps_explicit_severity(
        self, model: v1.ModelStub, severity: v1.Severity
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, severity=severity)
        assert issue.severity == severity

    @pytest.mark.parametrize("issue_type", [t for t in v1.IssueType if t.value])
    async def test_create_keeps_explicit_type(
        self, model: v1.ModelStub, issue_type: v1.IssueType
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, issue_type=issue_type)
        assert issue.type == issue_type

    async def test_create_keeps_verifier_parent_and_duplicate(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        parent = await make_issue(model, comp.id)
        canonical = await make_issue(model, comp.id)
        issue = await make_issue(
            model,
            comp.id,
            verifier="carol",
            parent_id=parent.id,
            duplicate_of_id=canonical.id,
            status=v1.Status.DUPLICATE,
        )
        assert issue.verifier == "carol"
        assert issue.parent_id == parent.id
        assert issue.duplicate_of_id == canonical.id

    async def test_cc_is_returned_sorted(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, cc=["zoe", "adam", "mia"])
        assert issue.cc == ["adam", "mia", "zoe"]

    async def test_description_is_the_creation_comment_and_counts(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, description="It broke **again**.")
        assert issue.description == "It broke **again**."
        assert issue.comment_count == 1
        entry = (await history(model, issue.id))[0]
        assert entry.comment == "It broke **again**."

    async def test_issue_without_description_has_no_comment(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        assert issue.description == ""
        assert issue.comment_count == 0

    async def test_creation_is_entry_one_listing_every_non_empty_field(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        parent = await make_issue(model, comp.id)
        issue = await make_issue(
            model,
            comp.id,
            caller=BOB,
            title="Full entry",
            priority=v1.Priority.P1,
            severity=v1.Severity.S0,
            issue_type=v1.IssueType.FEATURE_REQUEST,
            assignee="alice",
            verifier="carol",
            parent_id=parent.id,
            cc=["dave", "erin"],
        )
        entries = await history(model, issue.id)
        assert len(entries) == 1
        entry = entries[0]
        assert entry.issue_id == issue.id
        assert entry.version == 1
        assert entry.author == BOB.user_id
        assert entry.caused_by_issue_id == 0
        got = changes_by_field(entry)
        expected_scalars = {
            "title": "Full entry",
            "status": "ASSIGNED",
            "priority": "P1",
            "severity": "S0",
            "type": "FEATURE_REQUEST",
            "component_id": str(comp.id),
            "assignee": "alice",
            "verifier": "carol",
            "parent_id": str(parent.id),
        }
        for field, new_value in expected_scalars.items():
            assert field in got, f"creation entry lacks {field}"
            assert got[field].old_value == ""
            assert got[field].new_value == new_value
        assert sorted(got["cc"].added) == ["dave", "erin"]
        assert got["cc"].removed == []
        assert set(got) == {*expected_scalars, "cc"}, "only non-empty fields are listed"

    async def test_creation_entry_omits_empty_fields(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id, title="Minimal")
        got = changes_by_field((await history(model, issue.id))[0])
        assert set(got) == {"title", "status", "priority", "severity", "type", "component_id"}
        assert got["priority"].new_value == "P2"
        assert got["status"].new_value == "NEW"

    async def test_blocking_at_creation_gives_the_other_side_an_entry(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        blocked = await make_issue(model, comp.id)
        blocker = await make_issue(model, comp.id, blocking_ids=[blocked.id], caller=BOB)
        assert blocker.blocking_ids == [blocked.id]
        after = await get_issue(model, blocked.id)
        assert after.blocked_by_ids == [blocker.id]
        assert after.version == 2
        entries = await history(model, blocked.id)
        assert [e.version for e in entries] == [1, 2]
        other = entries[1]
        assert other.caused_by_issue_id == blocker.id
        assert other.author == BOB.user_id
        assert other.comment == ""
        change = changes_by_field(other)["blocked_by_ids"]
        assert change.added == [str(blocker.id)]
        own = changes_by_field((await history(model, blocker.id))[0])
        assert own["blocking_ids"].added == [str(blocked.id)]

    async def test_blocked_by_at_creation_gives_the_other_side_an_entry(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        blocker = await make_issue(model, comp.id)
        blocked = await make_issue(model, comp.id, blocked_by_ids=[blocker.id])
        assert blocked.blocked_by_ids == [blocker.id]
        after = await get_issue(model, blocker.id)
        assert after.blocking_ids == [blocked.id]
        assert after.version == 2
        entry = (await history(model, blocker.id))[1]
        assert entry.caused_by_issue_id == blocked.id
        assert changes_by_field(entry)["blocking_ids"].added == [str(blocked.id)]

    async def test_hotlists_at_creation_are_memberships(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        hot = await make_hotlist(model, caller=ALICE)
        issue = await make_issue(model, comp.id, hotlist_ids=[hot.id], caller=ALICE)
        assert issue.hotlist_ids == [hot.id]
        items = await model.list_hotlist_items(
            v1.ListHotlistItemsRequest(caller=ALICE, hotlist_id=hot.id)
        )
        assert [i.issue_id for i in items.items] == [issue.id]
        got = changes_by_field((await history(model, issue.id))[0])
        assert got["hotlist_ids"].added == [str(hot.id)]

    async def test_ids_grow_with_creation_order(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        ids = [(await make_issue(model, comp.id)).id for _ in range(5)]
        assert ids == sorted(ids)
        assert len(set(ids)) == 5

    async def test_archived_component_refuses_new_issues_and_writes_nothing(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        await update_component(model, v1.Component(id=comp.id, archived=True), "archived")
        await expect_error(make_issue(model, comp.id), Status.FAILED_PRECONDITION)
        page = await search_page(model, within(comp.id))
        assert page.total_count == 0

    async def test_create_in_unknown_component_is_not_found(self, model: v1.ModelStub) -> None:
        await expect_error(make_issue(model, UNKNOWN_ID), Status.NOT_FOUND, str(UNKNOWN_ID))

    # ---- reading ----

    async def test_get_returns_what_create_returned(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        created = await make_issue(model, comp.id, description="d", cc=["x"], assignee="bob")
        got = await get_issue(model, created.id, caller=ALICE)
        assert got == created

    @requires_capability(Capability.RELATION_FLAGS)
    async def test_reads_tell_whether_other_issues_name_it_as_parent_or_canonical(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        hidden = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        parent = await make_issue(model, comp.id)
        canonical = await make_issue(model, comp.id)
        child = await make_issue(model, comp.id, parent_id=parent.id)
        # Named from where bob may not look: still counted (bob sees the ids
        # of blockers he may not open too).
        await make_issue(model, hidden.id, duplicate_of_id=canonical.id)
        flags = {
            i.id: (i.has_children, i.has_duplicates)
            for i in [await get_issue(model, n.id, caller=BOB) for n in (parent, canonical, child)]
        }
        assert flags == {
            parent.id: (True, False),
            canonical.id: (False, True),
            child.id: (False, False),
        }
        batch = await model.batch_get_issues(
            v1.BatchGetIssuesRequest(caller=BOB, issue_ids=[parent.id, canonical.id, child.id])
        )
        assert {i.id: (i.has_children, i.has_duplicates) for i in batch.issues} == flags
        # Unlinking is seen at once.
        await change(model, child, delta(parent_id=0))
        assert not (await get_issue(model, parent.id)).has_children

    async def test_get_unknown_issue_is_not_found_naming_it(self, model: v1.ModelStub) -> None:
        await expect_error(
            get_issue(model, UNKNOWN_ID), Status.NOT_FOUND, f"issue {UNKNOWN_ID} not found"
        )

    async def test_batch_get_returns_request_order_and_lists_missing(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        a, b, c = [await make_issue(model, comp.id) for _ in range(3)]
        got = await model.batch_get_issues(
            v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=[c.id, UNKNOWN_ID, a.id, b.id])
        )
        assert [i.id for i in got.issues] == [c.id, a.id, b.id]
        assert got.missing_ids == [UNKNOWN_ID]
        assert got.issues[1] == a

    async def test_batch_get_accepts_the_stated_maximum_of_500_ids(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        issue = await make_issue(model, comp.id)
        ids = [issue.id, *range(UNKNOWN_ID, UNKNOWN_ID + 499)]
        got = await model.batch_get_issues(v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=ids))
        assert [i.id for i in got.issues] == [issue.id]
        assert sorted(got.missing_ids) == sorted(ids[1:])

    async def test_batch_get_with_a_read_mask_brings_the_named_fields(
        self, model: v1.ModelStub
    ) -> None:
        """The named fields are the whole read's; the others may be left at their defaults."""
        comp = await make_component(model)
        hot = await make_hotlist(model)
        text = await model.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN,
                component_id=comp.id,
                name=unique("Found in"),
                type=v1.CustomFieldType.TEXT,
            )
        )
        other = await make_issue(model, comp.id)
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=ALICE,
                fields=v1.IssueFields(
                    title=unique("Masked"), component_id=comp.id, assignee=BOB.user_id
                ),
                description="a long description nobody listing issues reads",
                cc=[BOB.user_id],
                hotlist_ids=[hot.id],
                blocking_ids=[other.id],
                custom_fields=[v1.CustomFieldValue(field_id=text.id, values=["1.2"])],
            )
        )
        await make_issue(model, comp.id, parent_id=issue.id)
        ids = [issue.id, UNKNOWN_ID, other.id]
        whole = await model.batch_get_issues(v1.BatchGetIssuesRequest(caller=ALICE, issue_ids=ids))
        for paths in (["title", "status"], ["custom_fields", "hotlist_ids", "has_children"]):
            masked = await model.batch_get_issues(
                v1.BatchGetIssuesRequest(
                    caller=ALICE, issue_ids=ids, read_mask=FieldMask(paths=paths)
                )
            )
            assert [i.id for i in masked.issues] == [issue.id, other.id]
            assert masked.missing_ids == [UNKNOWN_ID]
            for got, full in zip(masked.issues, whole.issues, strict=True):
                for name in v1.Issue.DESCRIPTOR.fields_by_name:
                    value, expected = getattr(got, name), getattr(full, name)
                    if name in paths:
                        assert value == expected, name
                    else:
                        assert value in (expected, getattr(v1.Issue(), name)), name
        assert whole.issues[0].custom_fields[0].values == ["1.2"]

    async def test_batch_get_with_a_read_mask_keeps_visibility(self, model: v1.ModelStub) -> None:
        open_comp = await make_component(model)
        closed_comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        visible = await make_issue(model, open_comp.id)
        secret = await make_issue(model, closed_comp.id, caller=ALICE)
        got = await model.batch_get_issues(
            v1.BatchGetIssuesRequest(
                caller=BOB, issue_ids=[secret.id, visible.id], read_mask=FieldMask(paths=["title"])
            )
        )
        assert [(i.id, i.title) for i in got.issues] == [(visible.id, visible.title)]
        assert got.missing_ids == [secret.id]

    # ---- idempotency ----

    async def test_repeated_create_with_same_key_returns_first_issue(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        key = unique("key")
        first = await make_issue(model, comp.id, idempotency_key=key, title="once")
        again = await make_issue(model, comp.id, idempotency_key=key, title="once")
        assert again.id == first.id
        assert again.version == 1
        page = await search_page(model, within(comp.id))
        assert page.total_count == 1
        assert len(await history(model, first.id)) == 1

    async def test_repeat_with_same_key_but_other_fields_returns_first_issue(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        key = unique("key")
        first = await make_issue(model, comp.id, idempotency_key=key, title="first")
        again = await make_issue(model, comp.id, idempotency_key=key, title="second")
        assert again.id == first.id
        assert again.title == "first"
        assert (await search_page(model, within(comp.id))).total_count == 1

    async def test_same_key_of_different_callers_never_collides(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        key = unique("key")
        mine = await make_issue(model, comp.id, idempotency_key=key, caller=ALICE)
        theirs = await make_issue(model, comp.id, idempotency_key=key, caller=BOB)
        assert mine.id != theirs.id
        assert theirs.reporter == BOB.user_id
        assert (await search_page(model, within(comp.id))).total_count == 2

    async def test_empty_key_means_no_idempotency(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        a = await make_issue(model, comp.id, title="same")
        b = await make_issue(model, comp.id, title="same")
        assert a.id != b.id

    async def test_concurrent_retries_with_one_key_create_one_issue(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        key = unique("key")
        created = await asyncio.gather(
            *(make_issue(model, comp.id, idempotency_key=key, title="race") for _ in range(12))
        )
        assert len({i.id for i in created}) == 1
        page = await search_page(model, within(comp.id))
        assert page.total_count == 1
        assert len(await history(model, created[0].id)) == 1

    async def test_concurrent_creates_with_distinct_keys_create_distinct_issues(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model)
        created = await asyncio.gather(
            *(make_issue(model, comp.id, idempotency_key=unique("k")) for _ in range(10))
        )
        assert len({i.id for i in created}) == 10
        assert (await search_page(model, within(comp.id), caller=ADMIN)).total_count == 10
