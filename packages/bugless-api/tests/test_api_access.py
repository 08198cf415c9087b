"""Authorisation: component ACLs through the Model, global permissions through the Authenticator."""

from __future__ import annotations

import secrets

import pytest
from api_support import ConnectAs
from api_support import acl as _acl

from bugless_core.errors import InvalidArgument, NotFound, PermissionDenied
from bugless_proto import v1


async def test_restricted_component_denies_changes_and_hides_issues(
    connect_as: ConnectAs,
) -> None:
    boss, viewer, outsider = connect_as("boss"), connect_as("viewer"), connect_as("outsider")
    marker = f"secret{secrets.token_hex(4)}"
    component = await boss.create_component(
        f"Secret-{marker}",
        acl=[
            _acl(v1.Principal(user="boss"), v1.Role.ADMIN),
            _acl(v1.Principal(group="secret-viewers"), v1.Role.VIEWER),
        ],
    )
    assert component.acl[0].principal is not None
    assert component.acl[0].principal.user == "boss"
    issue = await boss.create_issue(f"{marker} launch codes", component.id)

    seen = await viewer.get_issue(issue.id)
    assert seen.reporter == "boss"
    with pytest.raises(PermissionDenied, match="editor"):
        await viewer.update_issue(issue.id, priority="P0")

    assert (await outsider.search_issues(marker)).issues == []
    # Naming the component is refused as naming none would be (it matched nothing before).
    with pytest.raises(InvalidArgument, match=f"no component {component.id} that you may view"):
        await outsider.search_issues(f"c:{component.id}")
    with pytest.raises(NotFound):
        await outsider.get_issue(issue.id)
    assert [i.id for i in (await boss.search_issues(marker)).issues] == [issue.id]


async def test_top_level_components_need_the_create_component_permission(
    connect_as: ConnectAs,
) -> None:
    with pytest.raises(PermissionDenied, match="create_component"):
        await connect_as("outsider").create_component(f"Nope-{secrets.token_hex(3)}")

    made = await connect_as("robot").create_component(f"Yes-{secrets.token_hex(3)}")
    assert made.caller_role is v1.Role.ADMIN or made.caller_role is v1.Role.EDITOR


async def test_hotlists_rank_and_list_items(connect_as: ConnectAs) -> None:
    robot = connect_as("robot")
    component = await robot.create_component(f"Hot-{secrets.token_hex(3)}")
    issues = [await robot.create_issue(f"hot {n}", component.id) for n in range(3)]
    hotlist = await robot.create_hotlist(f"triage-{secrets.token_hex(3)}", editors=["boss"])
    assert hotlist.owner == "robot"
    assert hotlist.editors == ["boss"]

    await robot.add_to_hotlist(hotlist.id, [i.id for i in issues])
    ranked = await robot.rank_hotlist_item(hotlist.id, issues[2].id, 0)
    assert ranked.item_count == 3

    items, visible = await robot.list_hotlist_items(hotlist.id)
    assert [item.issue_id for item in items] == [issues[2].id, issues[0].id, issues[1].id]
    assert {item.adder for item in items} == {"robot"}
    assert [i.id for i in visible] == [item.issue_id for item in items]

    mine = await robot.list_hotlists(member="boss")
    assert hotlist.id in {h.id for h in mine}
    found = await robot.search_issues(f"hotlistid:{hotlist.id}")
    assert found.total_count == 3

    await robot.remove_from_hotlist(hotlist.id, [issues[0].id])
    assert (await robot.get_hotlist(hotlist.id)).item_count == 2


async def test_components_are_listed_and_fetched_by_path(connect_as: ConnectAs) -> None:
    # Subcomponents need ADMIN on the parent; an open component gives callers
    # only EDITOR, so the tree is made by a global admin.
    robot = connect_as("boss")
    parent = await robot.create_component(f"Tree-{secrets.token_hex(3)}")
    child = await robot.create_component("Leaf", parent_id=parent.id)

    assert (await robot.get_component(f"{parent.name}>Leaf")).id == child.id
    children = await robot.list_components(parent_id=parent.id)
    assert [c.id for c in children] == [child.id]


async def test_saved_searches_are_checked_and_kept(connect_as: ConnectAs) -> None:
    robot = connect_as("robot")

    with pytest.raises(InvalidArgument, match="query: at column"):
        await robot.create_saved_search("bad", "status:")
    saved = await robot.create_saved_search(
        f"mine-{secrets.token_hex(3)}", "assignee:me is:open", readers=[v1.Principal(user="boss")]
    )
    assert saved.owner == "robot"
    assert saved.readers[0].user == "boss"
