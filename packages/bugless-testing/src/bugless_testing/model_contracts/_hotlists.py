"""Contract: hotlists, their ranked items, and membership in issue history."""

from __future__ import annotations

import pytest
from grpclib.const import Status

from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    CAROL,
    changes_by_field,
    expect_error,
    expect_stale_version,
    fresh_caller,
    get_issue,
    history,
    hotlist_items,
    make_component,
    make_hotlist,
    make_issue,
)
from bugless_testing.model_contracts._support import change as change_issue


async def _issues(model: v1.ModelStub, count: int) -> list[v1.Issue]:
    comp = await make_component(model)
    return [await make_issue(model, comp.id) for _ in range(count)]


async def _add(
    model: v1.ModelStub,
    hotlist_id: int,
    issue_ids: list[int],
    *,
    position: int = -1,
    note: str = "",
    caller: v1.Caller = ALICE,
) -> v1.Hotlist:
    return await model.add_hotlist_items(
        v1.AddHotlistItemsRequest(
            caller=caller, hotlist_id=hotlist_id, issue_ids=issue_ids, position=position, note=note
        )
    )


async def _order(model: v1.ModelStub, hotlist_id: int) -> list[int]:
    items = (await hotlist_items(model, hotlist_id)).items
    assert [i.rank for i in items] == list(range(len(items))), "ranks are 0..n-1 in order"
    return [i.issue_id for i in items]


async def _update(
    model: v1.ModelStub, hotlist: v1.Hotlist, *paths: str, caller: v1.Caller = ALICE
) -> v1.Hotlist:
    return await model.update_hotlist(
        v1.UpdateHotlistRequest(
            caller=caller, hotlist=hotlist, update_mask=FieldMask(paths=list(paths))
        )
    )


class HotlistContract:
    """Hotlists: ranked issue lists with notes, owners, editors and privacy.

    Pins down: create/get/update/delete and who may do each, positions on add
    (insert, append, past the end, existing items keep their place), rank moves,
    notes and adders, private visibility, member listings, version
    preconditions, and that membership changes are issue history entries.
    """

    async def test_create_makes_caller_owner_of_an_empty_hotlist(self, model: v1.ModelStub) -> None:
        hot = await model.create_hotlist(
            v1.CreateHotlistRequest(
                caller=ALICE, name="Launch blockers", description="P0s", editors=["bob"]
            )
        )
        assert hot.id > 0
        assert hot.owner == ALICE.user_id
        assert hot.name == "Launch blockers"
        assert hot.description == "P0s"
        assert hot.editors == ["bob"]
        assert hot.private is False
        assert hot.item_count == 0
        got = await model.get_hotlist(v1.GetHotlistRequest(caller=BOB, hotlist_id=hot.id))
        assert got == hot

    async def test_add_appends_in_request_order(self, model: v1.ModelStub) -> None:
        a, b, c = await _issues(model, 3)
        hot = await make_hotlist(model)
        updated = await _add(model, hot.id, [a.id, b.id, c.id])
        assert updated.item_count == 3
        assert await _order(model, hot.id) == [a.id, b.id, c.id]

    @pytest.mark.parametrize(
        ("position", "expected"),
        [(0, "dabc"), (1, "adbc"), (2, "abdc"), (3, "abcd"), (-1, "abcd"), (99, "abcd")],
    )
    async def test_add_inserts_at_position(
        self, model: v1.ModelStub, position: int, expected: str
    ) -> None:
        issues = await _issues(model, 4)
        by_letter = dict(zip("abcd", issues, strict=True))
        hot = await make_hotlist(model)
        await _add(model, hot.id, [by_letter[x].id for x in "abc"])
        await _add(model, hot.id, [by_letter["d"].id], position=position)
        assert await _order(model, hot.id) == [by_letter[x].id for x in expected]

    async def test_several_inserted_at_a_position_keep_their_order(
        self, model: v1.ModelStub
    ) -> None:
        a, b, c, d = await _issues(model, 4)
        hot = await make_hotlist(model)
        await _add(model, hot.id, [a.id, b.id])
        await _add(model, hot.id, [c.id, d.id], position=1)
        assert await _order(model, hot.id) == [a.id, c.id, d.id, b.id]

    async def test_readding_an_item_keeps_its_place(self, model: v1.ModelStub) -> None:
        a, b, c = await _issues(model, 3)
        hot = await make_hotlist(model)
        await _add(model, hot.id, [a.id, b.id])
        updated = await _add(model, hot.id, [a.id, c.id], position=-1)
        assert updated.item_count == 3
        assert await _order(model, hot.id) == [a.id, b.id, c.id]
        assert (await get_issue(model, a.id)).version == 2, "no second membership entry"

    @pytest.mark.parametrize(
        ("moved", "position", "expected"),
        [("c", 0, "cabd"), ("a", 3, "bcda"), ("a", 99, "bcda"), ("b", 2, "acbd"), ("b", 1, "abcd")],
    )
    async def test_rank_moves_one_item_and_keeps_the_others_in_order(
        self, model: v1.ModelStub, moved: str, position: int, expected: str
    ) -> None:
        issues = await _issues(model, 4)
        by_letter = dict(zip("abcd", issues, strict=True))
        hot = await make_hotlist(model)
        await _add(model, hot.id, [i.id for i in issues])
        await model.rank_hotlist_item(
            v1.RankHotlistItemRequest(
                caller=ALICE, hotlist_id=hot.id, issue_id=by_letter[moved].id, position=position
            )
        )
        assert await _order(model, hot.id) == [by_letter[x].id for x in expected]

    @pytest.mark.parametrize(
        ("moved", "position", "expected"),
        [("a", -1, "bcda"), ("d", -2, "abdc"), ("d", -4, "dabc"), ("c", -3, "acbd")],
    )
    async def test_a_negative_rank_position_counts_from_the_end(
        self, model: v1.ModelStub, moved: str, position: int, expected: str
    ) -> None:
        issues = await _issues(model, 4)
        by_letter = dict(zip("abcd", issues, strict=True))
        hot = await make_hotlist(model)
        await _add(model, hot.id, [i.id for i in issues])
        await model.rank_hotlist_item(
            v1.RankHotlistItemRequest(
                caller=ALICE, hotlist_id=hot.id, issue_id=by_letter[moved].id, position=position
            )
        )
        assert await _order(model, hot.id) == [by_letter[x].id for x in expected]

    async def test_a_rank_position_before_the_first_place_is_refused_and_moves_nothing(
        self, model: v1.ModelStub
    ) -> None:
        issues = await _issues(model, 3)
        hot = await make_hotlist(model)
        await _add(model, hot.id, [i.id for i in issues])
        await expect_error(
            model.rank_hotlist_item(
                v1.RankHotlistItemRequest(
                    caller=ALICE, hotlist_id=hot.id, issue_id=issues[2].id, position=-4
                )
            ),
            Status.INVALID_ARGUMENT,
            "position: -4",
            "hotlist of 3 items",
        )
        assert await _order(model, hot.id) == [i.id for i in issues]

    async def test_ranking_an_issue_not_on_the_hotlist_is_not_found(
        self, model: v1.ModelStub
    ) -> None:
        a, b = await _issues(model, 2)
        hot = await make_hotlist(model)
        await _add(model, hot.id, [a.id])
        await expect_error(
            model.rank_hotlist_item(
                v1.RankHotlistItemRequest(caller=ALICE, hotlist_id=hot.id, issue_id=b.id)
            ),
            Status.NOT_FOUND,
        )

    async def test_notes_and_adder_are_kept_per_item(self, model: v1.ModelStub) -> None:
        a, b = await _issues(model, 2)
        hot = await make_hotlist(model, editors=["bob"])
        await _add(model, hot.id, [a.id], note="first!")
        await _add(model, hot.id, [b.id], caller=BOB)
        item = await model.set_hotlist_item_note(
            v1.SetHotlistItemNoteRequest(
                caller=BOB, hotlist_id=hot.id, issue_id=b.id, note="from bob"
            )
        )
        assert item.note == "from bob"
        assert item.issue_id == b.id
        assert item.rank == 1
        items = (await hotlist_items(model, hot.id)).items
        assert [(i.note, i.adder) for i in items] == [("first!", "alice"), ("from bob", "bob")]
        assert all(i.added_at is not None for i in items)

    async def test_item_listing_pairs_items_with_issues_and_pages(
        self, model: v1.ModelStub
    ) -> None:
        issues = await _issues(model, 5)
        hot = await make_hotlist(model)
        await _add(model, hot.id, [i.id for i in issues])
        seen: list[int] = []
        token = ""
        for _ in range(10):
            page = await model.list_hotlist_items(
                v1.ListHotlistItemsRequest(
                    caller=ALICE,
                    hotlist_id=hot.id,
                    page=v1.PageRequest(page_size=2, page_token=token),
                )
            )
            assert [i.issue_id for i in page.items] == [i.id for i in page.issues]
            seen.extend(i.issue_id for i in page.items)
            token = page.next_page_token
            if not token:
                break
        assert seen == [i.id for i in issues]

    async def test_remove_takes_items_out_and_closes_gaps(self, model: v1.ModelStub) -> None:
        a, b, c = await _issues(model, 3)
        hot = await make_hotlist(model)
        await _add(model, hot.id, [a.id, b.id, c.id])
        updated = await model.remove_hotlist_items(
            v1.RemoveHotlistItemsRequest(caller=ALICE, hotlist_id=hot.id, issue_ids=[b.id])
        )
        assert updated.item_count == 2
        assert await _order(model, hot.id) == [a.id, c.id]
        assert (await get_issue(model, b.id)).hotlist_ids == []

    async def test_membership_changes_are_issue_history_entries(self, model: v1.ModelStub) -> None:
        (issue,) = await _issues(model, 1)
        hot = await make_hotlist(model, editors=["bob"])
        await _add(model, hot.id, [issue.id], caller=BOB)
        added = await get_issue(model, issue.id)
        assert added.hotlist_ids == [hot.id]
        assert added.version == 2
        entry = (await history(model, issue.id))[-1]
        assert entry.author == BOB.user_id
        assert changes_by_field(entry)["hotlist_ids"].added == [str(hot.id)]
        await model.remove_hotlist_items(
            v1.RemoveHotlistItemsRequest(caller=ALICE, hotlist_id=hot.id, issue_ids=[issue.id])
        )
        removed = await get_issue(model, issue.id)
        assert removed.hotlist_ids == []
        assert removed.version == 3
        last = (await history(model, issue.id))[-1]
        assert changes_by_field(last)["hotlist_ids"].removed == [str(hot.id)]

    async def test_history_names_no_hotlist_its_reader_may_not_view(
        self, model: v1.ModelStub
    ) -> None:
        (issue,) = await _issues(model, 1)
        owner = fresh_caller("owner")
        private = await make_hotlist(model, caller=owner, private=True)
        public = await make_hotlist(model, caller=owner)
        await _add(model, private.id, [issue.id], caller=owner)
        await change_issue(
            model,
            await get_issue(model, issue.id),
            v1.IssueDelta(
                hotlist_add=[public.id],
                hotlist_remove=[private.id],
            ),
            comment="moved",
            caller=owner,
        )
        await _add(model, private.id, [issue.id], caller=owner)
        for reader in (owner, ADMIN):
            seen = await history(model, issue.id, reader)
            assert [e.version for e in seen] == [1, 2, 3, 4]
            assert changes_by_field(seen[2])["hotlist_ids"].removed == [str(private.id)]
        seen = await history(model, issue.id, BOB)
        assert [e.version for e in seen] == [1, 3], "an entry showing nothing is left out"
        moved = changes_by_field(seen[1])["hotlist_ids"]
        assert (moved.added, moved.removed) == ([str(public.id)], [])
        assert seen[1].comment == "moved"

    async def test_rank_and_note_changes_are_not_issue_changes(self, model: v1.ModelStub) -> None:
        a, b = await _issues(model, 2)
        hot = await make_hotlist(model)
        await _add(model, hot.id, [a.id, b.id])
        await model.rank_hotlist_item(
            v1.RankHotlistItemRequest(caller=ALICE, hotlist_id=hot.id, issue_id=b.id, position=0)
        )
        await model.set_hotlist_item_note(
            v1.SetHotlistItemNoteRequest(caller=ALICE, hotlist_id=hot.id, issue_id=a.id, note="n")
        )
        assert (await get_issue(model, a.id)).version == 2
        assert (await get_issue(model, b.id)).version == 2

    async def test_item_changes_move_the_hotlist_version_and_last_change(
        self, model: v1.ModelStub
    ) -> None:
        """Its order and notes are its content: each change is one of the hotlist.

        Adding, re-ranking, noting and removing each move ``version`` by one
        and ``modified_at`` forward (what "last changed" shows, and what a
        rename's or a delete's ``expected_version`` compares); a call that
        changes nothing (a move to its own place, the same note, an issue
        already on it, one not on it) moves neither.
        """
        a, b = await _issues(model, 2)
        hot = await make_hotlist(model)

        async def now() -> v1.Hotlist:
            return await model.get_hotlist(v1.GetHotlistRequest(caller=ALICE, hotlist_id=hot.id))

        def rank(issue: v1.Issue, position: int) -> v1.RankHotlistItemRequest:
            return v1.RankHotlistItemRequest(
                caller=ALICE, hotlist_id=hot.id, issue_id=issue.id, position=position
            )

        def note(text: str) -> v1.SetHotlistItemNoteRequest:
            return v1.SetHotlistItemNoteRequest(
                caller=ALICE, hotlist_id=hot.id, issue_id=a.id, note=text
            )

        before = await now()
        for changing in (
            lambda: _add(model, hot.id, [a.id, b.id]),
            lambda: model.rank_hotlist_item(rank(b, 0)),
            lambda: model.set_hotlist_item_note(note("first")),
            lambda: model.remove_hotlist_items(
                v1.RemoveHotlistItemsRequest(caller=ALICE, hotlist_id=hot.id, issue_ids=[b.id])
            ),
        ):
            await changing()
            after = await now()
            assert after.version == before.version + 1
            assert after.modified_at is not None
            assert before.modified_at is not None
            assert after.modified_at > before.modified_at
            before = after
        for unchanging in (
            lambda: _add(model, hot.id, [a.id]),
            lambda: model.rank_hotlist_item(rank(a, 0)),
            lambda: model.set_hotlist_item_note(note("first")),
            lambda: model.remove_hotlist_items(
                v1.RemoveHotlistItemsRequest(caller=ALICE, hotlist_id=hot.id, issue_ids=[b.id])
            ),
        ):
            await unchanging()
            assert (await now()).version == before.version
        await expect_stale_version(
            model.delete_hotlist(
                v1.DeleteHotlistRequest(
                    caller=ALICE, hotlist_id=hot.id, expected_version=hot.version
                )
            ),
            before.version,
        )

    async def test_an_issue_joining_or_leaving_by_its_own_change_moves_the_hotlist_version(
        self, model: v1.ModelStub
    ) -> None:
        """An issue created on a hotlist, or changed onto or off it, changes the hotlist too.

        The hotlist's items are its content whichever call changes them: a
        create with ``hotlist_ids`` or a ChangeIssue's ``hotlist_add`` and
        ``hotlist_remove`` (the issue page's, the CLI's, a bulk edit's) move
        ``version`` and ``modified_at`` as AddHotlistItems and
        RemoveHotlistItems do, so a delete confirmed against the issues it
        showed is refused after them, and the web's rows, whose ``ETag`` is
        the version, are drawn again.
        """
        comp = await make_component(model)
        hot = await make_hotlist(model)

        async def now() -> v1.Hotlist:
            return await model.get_hotlist(v1.GetHotlistRequest(caller=ALICE, hotlist_id=hot.id))

        async def moved(before: v1.Hotlist) -> v1.Hotlist:
            after = await now()
            assert after.version == before.version + 1
            assert after.modified_at is not None
            assert before.modified_at is not None
            assert after.modified_at > before.modified_at
            return after

        first = await now()
        created = await make_issue(model, comp.id, hotlist_ids=[hot.id])
        joined = await moved(first)
        other = await make_issue(model, comp.id)
        await change_issue(model, other, v1.IssueDelta(hotlist_add=[hot.id]))
        before = await moved(joined)
        await change_issue(model, created, v1.IssueDelta(hotlist_remove=[hot.id]), comment="off")
        after = await moved(before)
        assert after.item_count == 1
        await expect_stale_version(
            model.delete_hotlist(
                v1.DeleteHotlistRequest(
                    caller=ALICE, hotlist_id=hot.id, expected_version=before.version
                )
            ),
            after.version,
        )

    async def test_strangers_may_not_change_items(self, model: v1.ModelStub) -> None:
        (issue,) = await _issues(model, 1)
        hot = await make_hotlist(model)
        await expect_error(_add(model, hot.id, [issue.id], caller=CAROL), Status.PERMISSION_DENIED)
        assert (await hotlist_items(model, hot.id)).items == []
        assert (await get_issue(model, issue.id)).version == 1

    async def test_editor_may_change_items_but_not_membership_or_privacy(
        self, model: v1.ModelStub
    ) -> None:
        (issue,) = await _issues(model, 1)
        hot = await make_hotlist(model, editors=["bob"])
        await _add(model, hot.id, [issue.id], caller=BOB)
        renamed = await _update(model, v1.Hotlist(id=hot.id, name="by bob"), "name", caller=BOB)
        assert renamed.name == "by bob"
        for paths, change in [
            (("owner",), v1.Hotlist(id=hot.id, owner="bob")),
            (("editors",), v1.Hotlist(id=hot.id, editors=["bob", "carol"])),
            (("private",), v1.Hotlist(id=hot.id, private=True)),
        ]:
            await expect_error(_update(model, change, *paths, caller=BOB), Status.PERMISSION_DENIED)
        await expect_error(
            model.delete_hotlist(v1.DeleteHotlistRequest(caller=BOB, hotlist_id=hot.id)),
            Status.PERMISSION_DENIED,
        )
        now = await model.get_hotlist(v1.GetHotlistRequest(caller=ALICE, hotlist_id=hot.id))
        assert (now.owner, now.editors, now.private) == ("alice", ["bob"], False)

    async def test_owner_may_hand_over_the_hotlist(self, model: v1.ModelStub) -> None:
        hot = await make_hotlist(model)
        handed = await _update(model, v1.Hotlist(id=hot.id, owner="carol"), "owner")
        assert handed.owner == "carol"
        assert handed.version == hot.version + 1
        await expect_error(
            _update(model, v1.Hotlist(id=hot.id, name="mine again"), "name"),
            Status.PERMISSION_DENIED,
        )

    async def test_stale_hotlist_version_is_aborted(self, model: v1.ModelStub) -> None:
        hot = await make_hotlist(model)
        once = await _update(model, v1.Hotlist(id=hot.id, name="once"), "name")
        await expect_stale_version(
            model.update_hotlist(
                v1.UpdateHotlistRequest(
                    caller=ALICE,
                    hotlist=v1.Hotlist(id=hot.id, name="twice"),
                    update_mask=FieldMask(paths=["name"]),
                    expected_version=hot.version,
                )
            ),
            once.version,
        )
        await expect_stale_version(
            model.delete_hotlist(
                v1.DeleteHotlistRequest(
                    caller=ALICE, hotlist_id=hot.id, expected_version=hot.version
                )
            ),
            once.version,
        )
        got = await model.get_hotlist(v1.GetHotlistRequest(caller=ALICE, hotlist_id=hot.id))
        assert got.name == "once"

    async def test_delete_removes_hotlist_and_memberships(self, model: v1.ModelStub) -> None:
        (issue,) = await _issues(model, 1)
        hot = await make_hotlist(model)
        await _add(model, hot.id, [issue.id])
        await model.delete_hotlist(v1.DeleteHotlistRequest(caller=ALICE, hotlist_id=hot.id))
        await expect_error(
            model.get_hotlist(v1.GetHotlistRequest(caller=ALICE, hotlist_id=hot.id)),
            Status.NOT_FOUND,
            str(hot.id),
        )
        assert (await get_issue(model, issue.id)).hotlist_ids == []

    async def test_admin_may_change_privacy_of_any_hotlist(self, model: v1.ModelStub) -> None:
        hot = await make_hotlist(model)
        updated = await _update(model, v1.Hotlist(id=hot.id, private=True), "private", caller=ADMIN)
        assert updated.private is True
        await expect_error(
            model.get_hotlist(v1.GetHotlistRequest(caller=BOB, hotlist_id=hot.id)),
            Status.NOT_FOUND,
        )

    async def test_admin_may_delete_any_hotlist(self, model: v1.ModelStub) -> None:
        hot = await make_hotlist(model, private=True)
        await model.delete_hotlist(v1.DeleteHotlistRequest(caller=ADMIN, hotlist_id=hot.id))
        await expect_error(
            model.get_hotlist(v1.GetHotlistRequest(caller=ALICE, hotlist_id=hot.id)),
            Status.NOT_FOUND,
        )

    async def test_private_hotlist_is_invisible_to_others(self, model: v1.ModelStub) -> None:
        owner = fresh_caller("owner")
        editor = fresh_caller("editor")
        hot = await make_hotlist(model, caller=owner, editors=[editor.user_id], private=True)
        assert (
            await model.get_hotlist(v1.GetHotlistRequest(caller=editor, hotlist_id=hot.id))
        ).id == hot.id
        assert (
            await model.get_hotlist(v1.GetHotlistRequest(caller=ADMIN, hotlist_id=hot.id))
        ).id == hot.id
        await expect_error(
            model.get_hotlist(v1.GetHotlistRequest(caller=BOB, hotlist_id=hot.id)),
            Status.NOT_FOUND,
        )
        await expect_error(
            model.list_hotlist_items(v1.ListHotlistItemsRequest(caller=BOB, hotlist_id=hot.id)),
            Status.NOT_FOUND,
        )
        listed = await model.list_hotlists(v1.ListHotlistsRequest(caller=BOB, member=owner.user_id))
        assert listed.hotlists == []

    async def test_member_listing_shows_owned_and_edited_hotlists(
        self, model: v1.ModelStub
    ) -> None:
        member = fresh_caller("member")
        other = fresh_caller("other")
        owned = await make_hotlist(model, caller=member)
        edited = await make_hotlist(model, caller=other, editors=[member.user_id])
        await make_hotlist(model, caller=other)
        listed = await model.list_hotlists(
            v1.ListHotlistsRequest(caller=member, member=member.user_id)
        )
        assert sorted(h.id for h in listed.hotlists) == sorted([owned.id, edited.id])

    async def test_unknown_hotlist_is_not_found(self, model: v1.ModelStub) -> None:
        await expect_error(
            model.get_hotlist(v1.GetHotlistRequest(caller=ALICE, hotlist_id=8_999_999_999_999)),
            Status.NOT_FOUND,
            "8999999999999",
        )
