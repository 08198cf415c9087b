"""Contract: the component tree."""

from __future__ import annotations

from grpclib.const import Status

from bugless_proto import v1
from bugless_testing.model_contracts._support import (
    ADMIN,
    ALICE,
    BOB,
    UNKNOWN_ID,
    component_by_path,
    component_children,
    expect_error,
    expect_stale_version,
    get_component,
    make_component,
    make_issue,
    search_ids,
    unique,
    update_component,
    user_entry,
    within,
)


class ComponentContract:
    """Components: a tree with paths, ACLs, renames, moves and archiving.

    Pins down: paths are names joined by ``>`` and follow renames and moves;
    lookup by id and by path (in any case); children listed in path order;
    sibling names unique by Unicode case folding (ALREADY_EXISTS) on create, rename and move; a
    move under its own descendant is FAILED_PRECONDITION; creating below or
    updating a component needs ADMIN on it (and on the new parent); archived
    components keep their issues but accept no new ones; versions as
    preconditions.
    """

    async def test_top_level_component_has_its_name_as_path(self, model: v1.ModelStub) -> None:
        name = unique("Platform")
        comp = await make_component(model, name=name, caller=BOB, description="infra")
        assert comp.id > 0
        assert comp.parent_id == 0
        assert comp.name == name
        assert comp.path == name
        assert comp.description == "infra"
        assert comp.archived is False
        assert comp.version >= 1
        assert comp.created_at is not None
        assert comp.caller_role == v1.Role.EDITOR  # open: every caller is an editor

    async def test_nested_paths_join_names_with_gt(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        mid = await make_component(model, parent_id=top.id, name="Storage")
        leaf = await make_component(model, parent_id=mid.id, name="Disk")
        assert mid.parent_id == top.id
        assert leaf.path == f"{top.name}>Storage>Disk"
        assert (await get_component(model, leaf.id)).path == leaf.path

    async def test_get_by_path_finds_the_component(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        leaf = await make_component(model, parent_id=top.id, name="Disk")
        got = await component_by_path(model, f"{top.name}>Disk", caller=ALICE)
        assert got.id == leaf.id
        assert got == await get_component(model, leaf.id, caller=ALICE)

    async def test_unknown_path_and_id_are_not_found(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        await expect_error(component_by_path(model, f"{top.name}>Nope"), Status.NOT_FOUND, "Nope")
        await expect_error(get_component(model, UNKNOWN_ID), Status.NOT_FOUND, str(UNKNOWN_ID))

    async def test_own_acl_and_template_are_returned(self, model: v1.ModelStub) -> None:
        template = v1.IssueTemplate(
            title="Crash: ",
            description="Steps:",
            priority=v1.Priority.P1,
            severity=v1.Severity.S1,
            type=v1.IssueType.BUG,
            assignee="alice",
        )
        top = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        child = await model.create_component(
            v1.CreateComponentRequest(
                caller=ALICE,
                parent_id=top.id,
                name=unique("c"),
                acl=[user_entry("bob", v1.Role.VIEWER)],
                template=template,
            )
        )
        got = await get_component(model, child.id, caller=ALICE)
        assert got.acl == [user_entry("bob", v1.Role.VIEWER)], "only its own entries"
        assert got.template == template

    async def test_children_are_listed_in_path_order(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        for name in ("Beta", "Alpha", "Gamma"):
            await make_component(model, parent_id=top.id, name=name)
        kids = await component_children(model, top.id)
        assert [c.name for c in kids] == ["Alpha", "Beta", "Gamma"]

    async def test_whole_tree_listing_includes_descendants_in_path_order(
        self, model: v1.ModelStub
    ) -> None:
        top = await make_component(model, name=unique("Tree"))
        a = await make_component(model, parent_id=top.id, name="A")
        await make_component(model, parent_id=a.id, name="Deep")
        await make_component(model, parent_id=top.id, name="B")
        tree = await component_children(model, 0)
        ours = [c.path for c in tree if c.path == top.name or c.path.startswith(top.name + ">")]
        assert ours == [top.name, f"{top.name}>A", f"{top.name}>A>Deep", f"{top.name}>B"]

    async def test_listing_omits_invisible_components(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        await make_component(
            model, parent_id=top.id, name="Secret", acl=[user_entry("alice", v1.Role.ADMIN)]
        )
        await make_component(model, parent_id=top.id, name="Public")
        assert [c.name for c in await component_children(model, top.id, caller=BOB)] == ["Public"]
        assert [c.name for c in await component_children(model, top.id, caller=ALICE)] == [
            "Public",
            "Secret",
        ]

    async def test_rename_changes_paths_of_the_subtree(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        mid = await make_component(model, parent_id=top.id, name="Old")
        leaf = await make_component(model, parent_id=mid.id, name="Leaf")
        renamed = await update_component(model, v1.Component(id=mid.id, name="New"), "name")
        assert renamed.name == "New"
        assert renamed.path == f"{top.name}>New"
        assert renamed.version == mid.version + 1
        assert (await get_component(model, leaf.id)).path == f"{top.name}>New>Leaf"
        assert (await component_by_path(model, f"{top.name}>New>Leaf")).id == leaf.id
        await expect_error(component_by_path(model, f"{top.name}>Old>Leaf"), Status.NOT_FOUND)

    async def test_move_changes_parent_and_paths(self, model: v1.ModelStub) -> None:
        first = await make_component(model)
        second = await make_component(model)
        mid = await make_component(model, parent_id=first.id, name="Mid")
        leaf = await make_component(model, parent_id=mid.id, name="Leaf")
        issue = await make_issue(model, leaf.id)
        moved = await update_component(
            model, v1.Component(id=mid.id, parent_id=second.id), "parent_id"
        )
        assert moved.parent_id == second.id
        assert moved.path == f"{second.name}>Mid"
        assert (await get_component(model, leaf.id)).path == f"{second.name}>Mid>Leaf"
        assert await search_ids(model, within(second.id)) == [issue.id]
        assert await search_ids(model, within(first.id)) == []

    async def test_move_to_top_level(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        mid = await make_component(model, parent_id=top.id, name=unique("Mid"))
        moved = await update_component(model, v1.Component(id=mid.id, parent_id=0), "parent_id")
        assert moved.parent_id == 0
        assert moved.path == mid.name

    async def test_move_under_own_descendant_is_refused(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        mid = await make_component(model, parent_id=top.id)
        leaf = await make_component(model, parent_id=mid.id)
        for new_parent in (leaf.id, mid.id):
            await expect_error(
                update_component(model, v1.Component(id=mid.id, parent_id=new_parent), "parent_id"),
                Status.FAILED_PRECONDITION,
            )
        now = await get_component(model, mid.id)
        assert now.parent_id == top.id
        assert now.version == mid.version

    async def test_sibling_names_clash_case_insensitively(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        await make_component(model, parent_id=top.id, name="Storage")
        await expect_error(
            make_component(model, parent_id=top.id, name="storage"),
            Status.ALREADY_EXISTS,
            "storage",
        )
        assert [c.name for c in await component_children(model, top.id)] == ["Storage"]

    async def test_names_compare_by_case_folding(self, model: v1.ModelStub) -> None:
        """Sibling names and paths compare by Unicode case folding, before and after a rename.

        "Äpfel" is found as "ÄPFEL" and "äpfel" and refuses a sibling "äpfel"
        (SQL's ``lower()`` under the C locale leaves "Ä" as it is); "Straße"
        is "STRASSE"; "ΟΔΟΣ" is "οδος" (final sigma). Renaming the parent
        recomputes the subtree's keys by the same rule.
        """
        top = await make_component(model)
        apples = await make_component(model, parent_id=top.id, name="Äpfel")
        street = await make_component(model, parent_id=top.id, name="Straße")
        road = await make_component(model, parent_id=top.id, name="ΟΔΟΣ")
        renamed = unique("Renamed")
        for _ in range(2):
            for name, expected in (
                ("Äpfel", apples.id), ("ÄPFEL", apples.id), ("äpfel", apples.id),
                ("STRASSE", street.id), ("strasse", street.id), ("οδος", road.id),
            ):  # fmt: skip
                assert (await component_by_path(model, f"{top.name}>{name}")).id == expected, name
            for clash in ("äpfel", "STRASSE", "οδοσ"):
                await expect_error(
                    make_component(model, parent_id=top.id, name=clash),
                    Status.ALREADY_EXISTS,
                    clash,
                )
            await update_component(model, v1.Component(id=top.id, name=renamed), "name")
            top = await get_component(model, top.id)
        assert sorted(c.name for c in await component_children(model, top.id)) == sorted(
            ["Äpfel", "Straße", "ΟΔΟΣ"]
        )
        await expect_error(
            update_component(model, v1.Component(id=street.id, name="ÄPFEL"), "name"),
            Status.ALREADY_EXISTS,
        )
        assert (await get_component(model, street.id)).name == "Straße"

    async def test_same_name_under_different_parents_is_fine(self, model: v1.ModelStub) -> None:
        one = await make_component(model)
        two = await make_component(model)
        a = await make_component(model, parent_id=one.id, name="Storage")
        b = await make_component(model, parent_id=two.id, name="Storage")
        assert a.id != b.id

    async def test_top_level_names_clash_too(self, model: v1.ModelStub) -> None:
        name = unique("Top")
        await make_component(model, name=name)
        await expect_error(make_component(model, name=name.upper()), Status.ALREADY_EXISTS)

    async def test_rename_into_a_sibling_name_is_refused(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        await make_component(model, parent_id=top.id, name="Taken")
        other = await make_component(model, parent_id=top.id, name="Free")
        await expect_error(
            update_component(model, v1.Component(id=other.id, name="TAKEN"), "name"),
            Status.ALREADY_EXISTS,
        )
        assert (await get_component(model, other.id)).name == "Free"

    async def test_move_into_a_name_clash_is_refused(self, model: v1.ModelStub) -> None:
        one = await make_component(model)
        two = await make_component(model)
        await make_component(model, parent_id=two.id, name="Same")
        mover = await make_component(model, parent_id=one.id, name="same")
        await expect_error(
            update_component(model, v1.Component(id=mover.id, parent_id=two.id), "parent_id"),
            Status.ALREADY_EXISTS,
        )
        assert (await get_component(model, mover.id)).parent_id == one.id

    async def test_subcomponent_needs_admin_on_parent(self, model: v1.ModelStub) -> None:
        top = await make_component(
            model,
            acl=[user_entry("alice", v1.Role.ADMIN), user_entry("bob", v1.Role.EDITOR)],
        )
        await expect_error(
            make_component(model, parent_id=top.id, caller=BOB), Status.PERMISSION_DENIED, "admin"
        )
        made = await make_component(model, parent_id=top.id, caller=ALICE)
        assert made.parent_id == top.id
        assert [c.id for c in await component_children(model, top.id)] == [made.id]

    async def test_open_component_needs_an_admin_for_subcomponents(
        self, model: v1.ModelStub
    ) -> None:
        top = await make_component(model, caller=BOB)
        await expect_error(
            make_component(model, parent_id=top.id, caller=BOB), Status.PERMISSION_DENIED
        )

    async def test_subcomponent_of_invisible_parent_is_not_found(self, model: v1.ModelStub) -> None:
        top = await make_component(model, acl=[user_entry("alice", v1.Role.ADMIN)])
        await expect_error(make_component(model, parent_id=top.id, caller=BOB), Status.NOT_FOUND)

    async def test_update_needs_admin(self, model: v1.ModelStub) -> None:
        top = await make_component(
            model,
            acl=[user_entry("alice", v1.Role.ADMIN), user_entry("bob", v1.Role.EDITOR)],
        )
        for paths, component in [
            (("name",), v1.Component(id=top.id, name="Hijack")),
            (("acl",), v1.Component(id=top.id, acl=[user_entry("bob", v1.Role.ADMIN)])),
            (("archived",), v1.Component(id=top.id, archived=True)),
        ]:
            await expect_error(
                update_component(model, component, *paths, caller=BOB), Status.PERMISSION_DENIED
            )
        assert (await get_component(model, top.id)).version == top.version

    async def test_move_needs_admin_on_the_new_parent(self, model: v1.ModelStub) -> None:
        mine = await make_component(model, acl=[user_entry("bob", v1.Role.ADMIN)])
        theirs = await make_component(
            model,
            acl=[user_entry("alice", v1.Role.ADMIN), user_entry("bob", v1.Role.EDITOR)],
        )
        child = await make_component(model, parent_id=mine.id, caller=BOB)
        await expect_error(
            update_component(
                model, v1.Component(id=child.id, parent_id=theirs.id), "parent_id", caller=BOB
            ),
            Status.PERMISSION_DENIED,
        )
        assert (await get_component(model, child.id)).parent_id == mine.id

    async def test_description_and_template_update(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        template = v1.IssueTemplate(title="T", priority=v1.Priority.P3)
        updated = await update_component(
            model,
            v1.Component(id=comp.id, description="new words", template=template, name="ignored"),
            "description",
            "template",
        )
        assert updated.description == "new words"
        assert updated.template == template
        assert updated.name == comp.name, "fields outside the mask do not change"

    async def test_stale_component_version_is_aborted(self, model: v1.ModelStub) -> None:
        comp = await make_component(model)
        once = await update_component(
            model,
            v1.Component(id=comp.id, description="1"),
            "description",
            expected_version=comp.version,
        )
        await expect_stale_version(
            update_component(
                model,
                v1.Component(id=comp.id, description="2"),
                "description",
                expected_version=comp.version,
            ),
            once.version,
        )
        assert (await get_component(model, comp.id)).description == "1"
        assert (await get_component(model, comp.id)).version == once.version

    async def test_archived_component_keeps_searchable_issues_but_refuses_new_ones(
        self, model: v1.ModelStub
    ) -> None:
        top = await make_component(model)
        issue = await make_issue(model, top.id)
        archived = await update_component(model, v1.Component(id=top.id, archived=True), "archived")
        assert archived.archived is True
        assert await search_ids(model, within(top.id)) == [issue.id]
        await expect_error(make_issue(model, top.id), Status.FAILED_PRECONDITION)
        assert await search_ids(model, within(top.id)) == [issue.id]
        assert (await get_component(model, top.id)).archived is True

    async def test_archived_children_are_listed_only_on_request(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        old = await make_component(model, parent_id=top.id, name="Old")
        await make_component(model, parent_id=top.id, name="New")
        await update_component(model, v1.Component(id=old.id, archived=True), "archived")
        assert [c.name for c in await component_children(model, top.id)] == ["New"]
        assert [c.name for c in await component_children(model, top.id, archived=True)] == [
            "New",
            "Old",
        ]
        unarchived = await update_component(
            model, v1.Component(id=old.id, archived=False), "archived"
        )
        assert unarchived.archived is False
        assert len(await component_children(model, top.id)) == 2

    async def test_component_pages_cover_every_child_once(self, model: v1.ModelStub) -> None:
        top = await make_component(model)
        names = [f"N{i:02d}" for i in range(7)]
        for name in names:
            await make_component(model, parent_id=top.id, name=name)
        seen: list[str] = []
        token = ""
        for _ in range(20):
            page = await model.list_components(
                v1.ListComponentsRequest(
                    caller=ADMIN,
                    parent_id=top.id,
                    page=v1.PageRequest(page_size=3, page_token=token),
                )
            )
            assert len(page.components) <= 3
            seen.extend(c.name for c in page.components)
            token = page.next_page_token
            if not token:
                break
        assert seen == names
