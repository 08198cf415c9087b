"""Hotlist updates, deletes and items through the API: usernames, roles, preconditions."""

from __future__ import annotations

import secrets

import pytest
from api_support import ConnectAs, signed_in

from bugless_api.client import BuglessClient
from bugless_core.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from bugless_proto import v1


async def _update(
    client: BuglessClient, hotlist: v1.Hotlist, *paths: str, expected_version: int = 0
) -> v1.Hotlist:
    return await client.update_hotlist(hotlist, paths, expected_version=expected_version)


async def _note(client: BuglessClient, hotlist_id: int, issue_id: int, note: str) -> v1.HotlistItem:
    return await client.set_hotlist_item_note(hotlist_id, issue_id, note)


async def _issues(client: BuglessClient, count: int) -> list[v1.Issue]:
    component = await client.create_component(f"HotItems-{secrets.token_hex(3)}")
    return [await client.create_issue(f"item {n}", component.id) for n in range(count)]


def _name() -> str:
    return f"hot-{secrets.token_hex(4)}"


async def test_the_owner_changes_editors_and_hands_over_by_username(
    connect_as: ConnectAs,
) -> None:
    """Editors and owner go in and come out as usernames; the old owner loses its rights."""
    robot, viewer, _ = await signed_in(connect_as, "robot", "viewer", "outsider")
    hotlist = await robot.create_hotlist(_name(), editors=["viewer"])

    updated = await _update(
        robot,
        v1.Hotlist(
            id=hotlist.id,
            name="ignored: not in the mask",
            description="triage queue",
            editors=["viewer", "outsider"],
        ),
        "description",
        "editors",
        expected_version=hotlist.version,
    )
    assert (updated.name, updated.description, updated.owner) == (
        hotlist.name,
        "triage queue",
        "robot",
    )
    assert sorted(updated.editors) == ["outsider", "viewer"]
    assert updated.version == hotlist.version + 1
    edited_by_outsider = await robot.list_hotlists(member="outsider")
    assert [(h.id, h.owner) for h in edited_by_outsider] == [(hotlist.id, "robot")]

    handed = await _update(robot, v1.Hotlist(id=hotlist.id, owner="viewer"), "owner")
    assert handed.owner == "viewer"
    assert (await robot.get_hotlist(hotlist.id)).owner == "viewer"
    with pytest.raises(PermissionDenied):
        await _update(robot, v1.Hotlist(id=hotlist.id, name="mine again"), "name")
    renamed = await _update(viewer, v1.Hotlist(id=hotlist.id, name="viewer's now"), "name")
    assert (renamed.name, renamed.owner) == ("viewer's now", "viewer")


async def test_an_editor_changes_items_but_not_membership(connect_as: ConnectAs) -> None:
    """Notes, removals and renames are an editor's; editors, privacy and delete are not."""
    robot, viewer, outsider = await signed_in(connect_as, "robot", "viewer", "outsider")
    first, second = await _issues(robot, 2)
    hotlist = await robot.create_hotlist(_name(), editors=["viewer"])
    await robot.add_to_hotlist(hotlist.id, [first.id, second.id])

    item = await _note(viewer, hotlist.id, second.id, "needs a repro")
    assert (item.hotlist_id, item.issue_id, item.rank, item.note) == (
        hotlist.id,
        second.id,
        1,
        "needs a repro",
    )
    assert item.adder == "robot"
    renamed = await _update(viewer, v1.Hotlist(id=hotlist.id, name="renamed"), "name")
    assert renamed.name == "renamed"
    for paths, change in [
        (("editors",), v1.Hotlist(id=hotlist.id, editors=["viewer", "outsider"])),
        (("private",), v1.Hotlist(id=hotlist.id, private=True)),
        (("owner",), v1.Hotlist(id=hotlist.id, owner="viewer")),
    ]:
        with pytest.raises(PermissionDenied):
            await _update(viewer, change, *paths)
    with pytest.raises(PermissionDenied):
        await viewer.delete_hotlist(hotlist.id)
    with pytest.raises(PermissionDenied, match="owner or editor"):
        await _note(outsider, hotlist.id, first.id, "drive-by")

    assert (await viewer.remove_from_hotlist(hotlist.id, [first.id])).item_count == 1
    removed = await robot.get_issue(first.id)
    assert removed.hotlist_ids == []
    entry = (await robot.list_history(first.id)).entries[-1]
    assert entry.author == "viewer"
    assert next(c for c in entry.changes if c.field == "hotlist_ids").removed == [str(hotlist.id)]

    items, issues = await robot.list_hotlist_items(hotlist.id)
    assert [(i.issue_id, i.rank, i.note, i.adder) for i in items] == [
        (second.id, 0, "needs a repro", "robot")
    ]
    assert [i.id for i in issues] == [second.id]
    now = await robot.get_hotlist(hotlist.id)
    assert (now.owner, now.editors, now.private) == ("robot", ["viewer"], False)


async def test_items_of_issues_the_caller_may_not_view_are_left_out(
    connect_as: ConnectAs,
) -> None:
    """ListHotlistItems omits restricted issues for outsiders; their adder is a username."""
    boss, robot, outsider = await signed_in(connect_as, "boss", "robot", "outsider")
    secret_component = await boss.create_component(
        f"HotSecret-{secrets.token_hex(3)}",
        acl=[v1.AclEntry(principal=v1.Principal(user="boss"), role=v1.Role.ADMIN)],
    )
    secret = await boss.create_issue("boss only", secret_component.id)
    (public,) = await _issues(robot, 1)
    hotlist = await boss.create_hotlist(_name())
    await boss.add_to_hotlist(hotlist.id, [secret.id, public.id], note="both")

    items, issues = await outsider.list_hotlist_items(hotlist.id)
    assert [(i.issue_id, i.adder, i.note) for i in items] == [(public.id, "boss", "both")]
    assert [(i.id, i.reporter) for i in issues] == [(public.id, "robot")]
    all_items, _ = await boss.list_hotlist_items(hotlist.id)
    assert [i.issue_id for i in all_items] == [secret.id, public.id]


async def test_a_private_hotlist_is_not_found_for_strangers(connect_as: ConnectAs) -> None:
    """Every call on it answers NOT_FOUND, exactly as for a hotlist that does not exist."""
    robot, outsider = await signed_in(connect_as, "robot", "outsider")
    (issue,) = await _issues(robot, 1)
    hotlist = await robot.create_hotlist(_name(), private=True)
    added = await robot.add_to_hotlist(hotlist.id, [issue.id])
    not_found = f"hotlist {hotlist.id} not found"

    with pytest.raises(NotFound, match=not_found):
        await outsider.get_hotlist(hotlist.id)
    with pytest.raises(NotFound, match=not_found):
        await outsider.list_hotlist_items(hotlist.id)
    with pytest.raises(NotFound, match=not_found):
        await _update(outsider, v1.Hotlist(id=hotlist.id, name="mine"), "name")
    with pytest.raises(NotFound, match=not_found):
        await outsider.remove_from_hotlist(hotlist.id, [issue.id])
    with pytest.raises(NotFound, match=not_found):
        await _note(outsider, hotlist.id, issue.id, "hello?")
    with pytest.raises(NotFound, match=not_found):
        await outsider.delete_hotlist(hotlist.id)
    assert hotlist.id not in {h.id for h in await outsider.list_hotlists(member="robot")}

    now = await robot.get_hotlist(hotlist.id)
    assert (now.name, now.item_count, now.version) == (hotlist.name, 1, added.version)


async def test_bad_hotlist_updates_are_refused_and_change_nothing(connect_as: ConnectAs) -> None:
    """Unknown people name their field; stale versions are ABORTED with the current one."""
    robot, _ = await signed_in(connect_as, "robot", "viewer")
    first, stray = await _issues(robot, 2)
    hotlist = await robot.create_hotlist(_name())
    await robot.add_to_hotlist(hotlist.id, [first.id])
    once = await _update(robot, v1.Hotlist(id=hotlist.id, name="once"), "name")

    with pytest.raises(InvalidArgument, match=r"hotlist\.editors\[1\]: no bugless user is named"):
        await _update(robot, v1.Hotlist(id=hotlist.id, editors=["viewer", "ghost"]), "editors")
    with pytest.raises(InvalidArgument, match=r"hotlist\.owner: .*'ghost'"):
        await _update(robot, v1.Hotlist(id=hotlist.id, owner="ghost"), "owner")
    with pytest.raises(Conflict, match=f"hotlist {hotlist.id} is at version") as stale:
        await _update(
            robot,
            v1.Hotlist(id=hotlist.id, name="twice"),
            "name",
            expected_version=hotlist.version,
        )
    assert stale.value.metadata["current_version"] == str(once.version)
    with pytest.raises(Conflict, match=f"hotlist {hotlist.id} is at version"):
        await robot.delete_hotlist(hotlist.id, expected_version=hotlist.version)
    with pytest.raises(NotFound):
        await _note(robot, hotlist.id, stray.id, "not on the hotlist")

    now = await robot.get_hotlist(hotlist.id)
    assert (now.name, now.editors, now.owner, now.version) == ("once", [], "robot", once.version)
    assert now.item_count == 1


async def test_deleting_a_hotlist_removes_it_and_its_memberships(connect_as: ConnectAs) -> None:
    """The owner deletes at the current version; a global admin deletes anyone's."""
    robot, boss = await signed_in(connect_as, "robot", "boss")
    (issue,) = await _issues(robot, 1)
    hotlist = await robot.create_hotlist(_name())
    added = await robot.add_to_hotlist(hotlist.id, [issue.id])
    assert (await robot.get_issue(issue.id)).hotlist_ids == [hotlist.id]

    await robot.delete_hotlist(hotlist.id, expected_version=added.version)

    with pytest.raises(NotFound, match=f"hotlist {hotlist.id} not found"):
        await robot.get_hotlist(hotlist.id)
    with pytest.raises(NotFound, match=f"hotlist {hotlist.id} not found"):
        await robot.list_hotlist_items(hotlist.id)
    assert (await robot.get_issue(issue.id)).hotlist_ids == []
    # A search naming it is told so (it matched nothing, silently, before).
    with pytest.raises(InvalidArgument, match=f"there is no hotlist {hotlist.id} "):
        await robot.search_issues(f"hotlistid:{hotlist.id}")

    someone_elses = await robot.create_hotlist(_name(), private=True)
    await boss.delete_hotlist(someone_elses.id)
    with pytest.raises(NotFound):
        await robot.get_hotlist(someone_elses.id)
