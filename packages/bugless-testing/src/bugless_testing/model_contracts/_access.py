"""Contract: who may see and change what."""

from __future__ import annotations

import pytest
from grpclib.const import Status

from bugless_core.search.build import any_of, negate, term
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    UNKNOWN_ID,
    change,
    delta,
    eq,
    expect_error,
    fresh_caller,
    get_component,
    get_issue,
    group_entry,
    history,
    hotlist_items,
    make_component,
    make_hotlist,
    make_issue,
    search_all,
    search_ids,
    search_page,
    unique,
    update_component,
    user_entry,
    within,
)


class AccessContract:
    """Component ACLs decide visibility and edit rights; invisible means NOT_FOUND.

    Pins down: effective ACL = own entries plus every ancestor's; the highest role
    of any principal (user or group) wins; an empty effective ACL makes everyone
    an editor; global admins are admin everywhere; something invisible is
    reported exactly like something absent (never PERMISSION_DENIED, never a
    different message); viewers get PERMISSION_DENIED naming the editor role;
    and no read path (get, batch get, search and its count, history, hotlist
    items, Issue.hotlist_ids) ever shows an invisible issue.
    """

    async def test_open_component_lets_any_caller_view_and_edit(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        stranger = v1.Caller(user_id=unique("stranger"))
        issue = await make_issue(model, comp.id, caller=stranger)
        result = await change(model, issue, delta(title="edited"), caller=BOB)
        assert result.issue.title == "edited"
        assert (await get_component(model, comp.id, caller=stranger)).caller_role == (
            v1.Role.EDITOR
        )

    async def test_acl_is_inherited_by_subcomponents(self, model: v1.ModelStub) -> None:
        root = await make_component(
            model, acl=[user_entry("bob", v1.Role.VIEWER), user_entry("alice", v1.Role.ADMIN)]
        )
        child = await make_component(model, parent_id=root.id)
        grandchild = await make_component(model, parent_id=child.id)
        issue = await make_issue(model, grandchild.id, caller=ALICE)
        assert (await get_issue(model, issue.id, caller=BOB)).id == issue.id
        assert (await get_component(model, grandchild.id, caller=BOB)).caller_role == (
            v1.Role.VIEWER
        )
        assert (await get_component(model, grandchild.id, caller=ALICE)).caller_role == (
            v1.Role.ADMIN
        )
        await expect_error(
            change(model, issue, comment="hi", caller=BOB), Status.PERMISSION_DENIED, "editor"
        )

    async def test_restricted_ancestor_hides_open_looking_subcomponent(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        child = await make_component(model, parent_id=root.id)
        issue = await make_issue(model, child.id, caller=ALICE)
        await expect_error(get_issue(model, issue.id, caller=BOB), Status.NOT_FOUND)
        await expect_error(get_component(model, child.id, caller=BOB), Status.NOT_FOUND)

    async def test_subcomponent_entry_widens_access_below_only(self, model: v1.ModelStub) -> None:
        root = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        child = await make_component(
            model, parent_id=root.id, acl=[user_entry("bob", v1.Role.EDITOR)]
        )
        top_issue = await make_issue(model, root.id, caller=ALICE)
        child_issue = await make_issue(model, child.id, caller=BOB)
        assert child_issue.reporter == BOB.user_id
        await expect_error(get_issue(model, top_issue.id, caller=BOB), Status.NOT_FOUND)
        ids = await search_ids(model, within(root.id), caller=BOB)
        assert ids == [child_issue.id]

    async def test_group_principal_grants_its_role(self, model: v1.ModelStub) -> None:
        group = unique("eng")
        comp = await make_component(
            model, acl=[group_entry(group, v1.Role.EDITOR), user_entry("alice", v1.Role.ADMIN)]
        )
        member = v1.Caller(user_id=unique("member"), groups=["other", group])
        issue = await make_issue(model, comp.id, caller=member)
        assert (await change(model, issue, comment="ok", caller=member)).issue.version == 2
        outsider = v1.Caller(user_id=unique("outsider"), groups=["other"])
        await expect_error(get_issue(model, issue.id, caller=outsider), Status.NOT_FOUND)

    async def test_highest_role_of_any_principal_wins(self, model: v1.ModelStub) -> None:
        group = unique("leads")
        user = unique("lead")
        parent = await make_component(
            model, acl=[user_entry(user, v1.Role.VIEWER), user_entry("alice", v1.Role.ADMIN)]
        )
        comp = await make_component(
            model, parent_id=parent.id, acl=[group_entry(group, v1.Role.ADMIN)]
        )
        caller = v1.Caller(user_id=user, groups=[group])
        assert (await get_component(model, comp.id, caller=caller)).caller_role == v1.Role.ADMIN
        assert (await get_component(model, parent.id, caller=caller)).caller_role == (
            v1.Role.VIEWER
        )
        sub = await make_component(model, parent_id=comp.id, caller=caller)
        assert sub.caller_role == v1.Role.ADMIN

    async def test_global_admin_sees_and_edits_everything(self, model: v1.ModelStub) -> None:
        comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        issue = await make_issue(model, comp.id, caller=ALICE)
        admin = v1.Caller(user_id=unique("ops"), admin=True)
        assert (await get_component(model, comp.id, caller=admin)).caller_role == v1.Role.ADMIN
        result = await change(model, issue, delta(priority=v1.Priority.P0), caller=admin)
        assert result.entry.author == admin.user_id
        assert issue.id in await search_ids(model, within(comp.id), caller=admin)

    async def test_invisible_issue_is_reported_exactly_like_a_missing_one(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        issue = await make_issue(model, comp.id, caller=ALICE)
        hidden = await expect_error(get_issue(model, issue.id, caller=BOB), Status.NOT_FOUND)
        missing = await expect_error(get_issue(model, UNKNOWN_ID, caller=BOB), Status.NOT_FOUND)
        assert hidden.message == (missing.message or "").replace(str(UNKNOWN_ID), str(issue.id))
        assert hidden.message == f"issue {issue.id} not found"

    async def test_changing_an_invisible_issue_is_not_found_not_denied(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        issue = await make_issue(model, comp.id, caller=ALICE)
        await expect_error(
            change(model, issue, comment="peek", caller=BOB),
            Status.NOT_FOUND,
            f"issue {issue.id} not found",
        )
        assert (await get_issue(model, issue.id)).version == 1

    async def test_invisible_component_is_reported_like_a_missing_one(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        hidden = await expect_error(get_component(model, comp.id, caller=BOB), Status.NOT_FOUND)
        missing = await expect_error(get_component(model, UNKNOWN_ID, caller=BOB), Status.NOT_FOUND)
        assert hidden.message == (missing.message or "").replace(str(UNKNOWN_ID), str(comp.id))
        by_path = await expect_error(
            model.get_component(v1.GetComponentRequest(caller=BOB, path=comp.path)),
            Status.NOT_FOUND,
        )
        nowhere = "No>Such>Component"
        by_missing_path = await expect_error(
            model.get_component(v1.GetComponentRequest(caller=BOB, path=nowhere)),
            Status.NOT_FOUND,
        )
        # Same words as for a path that does not exist: nothing (its id included)
        # tells the two apart. (Looking for the id's digits in the message would
        # also find them inside the random hex of the component's name.)
        assert by_path.message == (by_missing_path.message or "").replace(nowhere, comp.path)

    @pytest.mark.parametrize(
        "make_delta",
        [
            pytest.param(lambda: delta(title="nope"), id="title"),
            pytest.param(lambda: delta(cc_add=["me"]), id="cc"),
            pytest.param(lambda: None, id="comment-only"),
        ],
    )
    async def test_viewer_change_is_permission_denied_naming_editor_role(
        self, model: v1.ModelStub, make_delta: object
    ) -> None:
        comp = await make_component(
            model, acl=[user_entry("bob", v1.Role.VIEWER), user_entry("alice", v1.Role.ADMIN)]
        )
        issue = await make_issue(model, comp.id, caller=ALICE)
        assert callable(make_delta)
        await expect_error(
            change(model, issue, make_delta(), comment="c", caller=BOB),
            Status.PERMISSION_DENIED,
            "editor",
        )
        assert len(await history(model, issue.id)) == 1

    async def test_permission_denied_names_role_and_component_path(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(
            model, acl=[user_entry("bob", v1.Role.VIEWER), user_entry("alice", v1.Role.ADMIN)]
        )
        leaf = await make_component(model, parent_id=root.id, name="Storage")
        issue = await make_issue(model, leaf.id, caller=ALICE)
        await expect_error(
            change(model, issue, comment="c", caller=BOB),
            Status.PERMISSION_DENIED,
            "editor role",
            f"{root.name}>Storage",
        )

    async def test_viewer_may_put_a_visible_issue_on_own_hotlist(self, model: v1.ModelStub) -> None:
        comp = await make_component(
            model, acl=[user_entry("bob", v1.Role.VIEWER), user_entry("alice", v1.Role.ADMIN)]
        )
        issue = await make_issue(model, comp.id, caller=ALICE)
        hot = await make_hotlist(model, caller=BOB)
        await model.add_hotlist_items(
            v1.AddHotlistItemsRequest(caller=BOB, hotlist_id=hot.id, issue_ids=[issue.id])
        )
        after = await get_issue(model, issue.id, caller=BOB)
        assert after.hotlist_ids == [hot.id]
        assert after.version == 2
        assert (await history(model, issue.id))[-1].author == BOB.user_id

    async def test_viewer_cannot_create_issues(self, model: v1.ModelStub) -> None:
        comp = await make_component(
            model, acl=[user_entry("bob", v1.Role.VIEWER), user_entry("alice", v1.Role.ADMIN)]
        )
        await expect_error(
            make_issue(model, comp.id, caller=BOB), Status.PERMISSION_DENIED, "editor"
        )
        assert (await search_page(model, within(comp.id))).total_count == 0

    async def test_stranger_cannot_create_issues_in_invisible_component(
        self, model: v1.ModelStub
    ) -> None:
        comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        await expect_error(make_issue(model, comp.id, caller=BOB), Status.NOT_FOUND)
        assert (await search_page(model, within(comp.id))).total_count == 0

    async def test_batch_get_lists_invisible_issues_as_missing(self, model: v1.ModelStub) -> None:
        open_comp = await make_component(model)
        closed_comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        visible = await make_issue(model, open_comp.id)
        secret = await make_issue(model, closed_comp.id, caller=ALICE)
        got = await model.batch_get_issues(
            v1.BatchGetIssuesRequest(caller=BOB, issue_ids=[secret.id, visible.id])
        )
        assert [i.id for i in got.issues] == [visible.id]
        assert got.missing_ids == [secret.id]

    async def test_search_never_returns_or_counts_invisible_issues(
        self, model: v1.ModelStub
    ) -> None:
        root = await make_component(model)
        secret_comp = await make_component(
            model, parent_id=root.id, acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        visible = await make_issue(model, root.id, title="needle visible")
        secret = await make_issue(model, secret_comp.id, caller=ALICE, title="needle secret")
        page = await search_page(model, within(root.id), caller=BOB)
        assert [i.id for i in page.issues] == [visible.id]
        assert page.total_count == 1
        by_id = await search_page(model, eq(v1.SearchField.ID, secret.id), caller=BOB)
        assert by_id.issues == []
        assert by_id.total_count == 0
        text = await search_page(
            model, within(root.id, eq(v1.SearchField.TEXT, "needle")), caller=BOB
        )
        assert [i.id for i in text.issues] == [visible.id]
        assert sorted(await search_ids(model, within(root.id), caller=ALICE)) == sorted(
            [visible.id, secret.id]
        )

    async def test_full_text_search_shows_and_counts_only_what_each_caller_may_view(
        self, model: v1.ModelStub
    ) -> None:
        # Text queries check visibility apart from other queries (a list of the
        # components hidden from the caller instead of a join): the same rules,
        # for words, a phrase, text under OR and NOT, and pages of one issue.
        group = unique("readers")
        reader = fresh_caller("reader", groups=[group])
        outsider = fresh_caller("outsider")
        root = await make_component(model)
        comps = {
            "open": root,
            "open child": await make_component(model, parent_id=root.id),
            "group": await make_component(
                model,
                parent_id=root.id,
                acl=[group_entry(group, v1.Role.VIEWER), user_entry("alice", v1.Role.ADMIN)],
            ),
            "secret": await make_component(
                model, parent_id=root.id, acl=[user_entry("alice", v1.Role.ADMIN)]
            ),
        }
        secret_id = comps["secret"].id
        comps["below secret"] = await make_component(model, parent_id=secret_id)
        comps["widened"] = await make_component(
            model, parent_id=secret_id, acl=[user_entry(outsider.user_id, v1.Role.VIEWER)]
        )
        hit, other = {}, {}
        for name, comp in comps.items():
            hit[name] = (await make_issue(model, comp.id, title="needle in the haystack")).id
            other[name] = (await make_issue(model, comp.id, title="plain straw")).id
        sees = {
            "admin": (ADMIN, list(comps)),
            "alice": (ALICE, list(comps)),
            "bob": (BOB, ["open", "open child"]),
            "reader": (reader, ["open", "open child", "group"]),
            "outsider": (outsider, ["open", "open child", "widened"]),
        }
        queries = {
            "words": (eq(v1.SearchField.TEXT, "haystack needle"), [hit]),
            "phrase": (
                term(
                    v1.SearchField.TEXT, v1.SearchOperator.EQ, "needle in the haystack", phrase=True
                ),
                [hit],
            ),
            "text or id": (
                any_of(
                    eq(v1.SearchField.TITLE, "haystack"),
                    eq(v1.SearchField.ID, *other.values()),
                ),
                [hit, other],
            ),
            "not text": (negate(eq(v1.SearchField.TEXT, "absentword")), [hit, other]),
        }
        for who, (caller, visible) in sees.items():
            for label, (node, sets) in queries.items():
                expected = sorted(s[n] for s in sets for n in visible)
                found = await search_all(model, within(root.id, node), caller=caller, page_size=1)
                assert sorted(i.id for i in found) == expected, (who, label)
                page = await search_page(model, within(root.id, node), caller=caller)
                assert page.total_count == len(expected), (who, label)

    async def test_hotlist_items_omit_invisible_issues(self, model: v1.ModelStub) -> None:
        open_comp = await make_component(model)
        closed_comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        visible = await make_issue(model, open_comp.id)
        secret = await make_issue(model, closed_comp.id, caller=ALICE)
        hot = await make_hotlist(model, caller=ALICE)
        await model.add_hotlist_items(
            v1.AddHotlistItemsRequest(
                caller=ALICE, hotlist_id=hot.id, issue_ids=[secret.id, visible.id], position=-1
            )
        )
        mine = await hotlist_items(model, hot.id, caller=ALICE)
        assert [i.issue_id for i in mine.items] == [secret.id, visible.id]
        theirs = await hotlist_items(model, hot.id, caller=BOB)
        assert [i.issue_id for i in theirs.items] == [visible.id]
        assert [i.id for i in theirs.issues] == [visible.id]

    async def test_issue_lists_only_hotlists_the_caller_may_view(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        public = await make_hotlist(model, caller=ALICE)
        private = await make_hotlist(model, caller=ALICE, private=True)
        issue = await make_issue(model, comp.id, caller=ALICE, hotlist_ids=[public.id, private.id])
        assert issue.hotlist_ids == sorted([public.id, private.id])
        assert (await get_issue(model, issue.id, caller=BOB)).hotlist_ids == [public.id]
        assert (await get_issue(model, issue.id, caller=ADMIN)).hotlist_ids == sorted(
            [public.id, private.id]
        )

    async def test_adding_an_invisible_issue_to_a_hotlist_is_not_found(
        self, model: v1.ModelStub
    ) -> None:
        closed_comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        secret = await make_issue(model, closed_comp.id, caller=ALICE)
        hot = await make_hotlist(model, caller=BOB)
        await expect_error(
            model.add_hotlist_items(
                v1.AddHotlistItemsRequest(
                    caller=BOB, hotlist_id=hot.id, issue_ids=[secret.id], position=-1
                )
            ),
            Status.NOT_FOUND,
            f"issue {secret.id} not found",
        )
        assert (await get_issue(model, secret.id)).version == 1

    async def test_relation_to_invisible_issue_is_not_found_like_a_missing_one(
        self, model: v1.ModelStub
    ) -> None:
        open_comp = await make_component(model)
        closed_comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        issue = await make_issue(model, open_comp.id, caller=BOB)
        secret = await make_issue(model, closed_comp.id, caller=ALICE)
        hidden = await expect_error(
            change(model, issue, delta(blocking_add=[secret.id]), caller=BOB),
            Status.NOT_FOUND,
            f"blocking_add: issue {secret.id} not found",
        )
        missing = await expect_error(
            change(model, issue, delta(blocking_add=[UNKNOWN_ID]), caller=BOB),
            Status.NOT_FOUND,
        )
        assert hidden.message == (missing.message or "").replace(str(UNKNOWN_ID), str(secret.id))
        assert (await get_issue(model, secret.id)).version == 1

    async def test_acl_change_takes_effect_immediately(self, model: v1.ModelStub) -> None:
        comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        issue = await make_issue(model, comp.id, caller=ALICE)
        await expect_error(get_issue(model, issue.id, caller=BOB), Status.NOT_FOUND)
        await update_component(
            model,
            v1.Component(
                id=comp.id,
                acl=[user_entry("alice", v1.Role.ADMIN), user_entry("bob", v1.Role.VIEWER)],
            ),
            "acl",
            caller=ALICE,
        )
        assert (await get_issue(model, issue.id, caller=BOB)).id == issue.id
        await update_component(model, v1.Component(id=comp.id, acl=[]), "acl", caller=ALICE)
        assert (await get_component(model, comp.id, caller=BOB)).caller_role == v1.Role.EDITOR

    async def test_a_write_that_ends_the_callers_own_access_answers_what_it_wrote(
        self, model: v1.ModelStub
    ) -> None:
        """The write is committed, so its reply is not a NOT_FOUND that reads as a failure."""
        comp = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        handed = await update_component(
            model,
            v1.Component(id=comp.id, acl=[user_entry("bob", v1.Role.ADMIN)]),
            "acl",
            caller=ALICE,
        )
        assert handed.caller_role == v1.Role.UNSPECIFIED
        assert [e.principal.user for e in handed.acl if e.principal] == ["bob"]
        assert handed.version == comp.version + 1
        await expect_error(get_component(model, comp.id, caller=ALICE), Status.NOT_FOUND)
        assert (await get_component(model, comp.id, caller=BOB)).caller_role == v1.Role.ADMIN

        made = await model.create_component(
            v1.CreateComponentRequest(
                caller=ALICE, name=unique("Not mine"), acl=[user_entry("bob", v1.Role.ADMIN)]
            )
        )
        assert made.caller_role == v1.Role.UNSPECIFIED
        await expect_error(get_component(model, made.id, caller=ALICE), Status.NOT_FOUND)

        private = await make_hotlist(model, caller=ALICE, private=True)
        given = await model.update_hotlist(
            v1.UpdateHotlistRequest(
                caller=ALICE,
                hotlist=v1.Hotlist(id=private.id, owner="bob"),
                update_mask=FieldMask(paths=["owner"]),
                expected_version=private.version,
            )
        )
        assert (given.owner, given.version) == ("bob", private.version + 1)
        await expect_error(
            model.get_hotlist(v1.GetHotlistRequest(caller=ALICE, hotlist_id=private.id)),
            Status.NOT_FOUND,
        )
