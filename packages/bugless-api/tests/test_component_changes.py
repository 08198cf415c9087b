"""UpdateComponent through the API: ACLs and templates by username, admins only."""

from __future__ import annotations

import secrets

import pytest
from api_support import ConnectAs, signed_in

from bugless_api.client import BuglessClient
from bugless_core.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    IssueVersionConflict,
    NotFound,
    PermissionDenied,
)
from bugless_proto import v1


def _user(username: str, role: v1.Role) -> v1.AclEntry:
    return v1.AclEntry(principal=v1.Principal(user=username), role=role)


def _group(name: str, role: v1.Role) -> v1.AclEntry:
    return v1.AclEntry(principal=v1.Principal(group=name), role=role)


def _acl(component: v1.Component) -> list[tuple[str, v1.Role]]:
    """The ACL as (``user:<name>`` or ``group:<name>``, role) pairs."""
    pairs = []
    for entry in component.acl:
        assert entry.principal is not None
        who = entry.principal.user
        pairs.append(
            (f"user:{who}" if who is not None else f"group:{entry.principal.group}", entry.role)
        )
    return pairs


async def _update(
    client: BuglessClient, component: v1.Component, *paths: str, expected_version: int = 0
) -> v1.Component:
    return await client.update_component(component, paths, expected_version=expected_version)


async def test_an_admin_changes_acl_and_template_by_username(connect_as: ConnectAs) -> None:
    """People in the ACL and template go in and come out as usernames; roles take effect."""
    boss, robot, viewer = await signed_in(connect_as, "boss", "robot", "viewer")
    component = await boss.create_component(
        f"Shared-{secrets.token_hex(3)}", acl=[_user("boss", v1.Role.ADMIN)]
    )
    with pytest.raises(NotFound):
        await robot.get_component(component.id)

    updated = await _update(
        boss,
        v1.Component(
            id=component.id,
            name="ignored: not in the mask",
            description="now shared",
            acl=[
                _user("boss", v1.Role.ADMIN),
                _user("robot", v1.Role.EDITOR),
                _group("secret-viewers", v1.Role.VIEWER),
            ],
            template=v1.IssueTemplate(title="Bug: ", priority=v1.Priority.P1, assignee="robot"),
        ),
        "description",
        "acl",
        "template",
        expected_version=component.version,
    )

    assert (updated.name, updated.description) == (component.name, "now shared")
    assert updated.version == component.version + 1
    expected_acl = [
        ("user:boss", v1.Role.ADMIN),
        ("user:robot", v1.Role.EDITOR),
        ("group:secret-viewers", v1.Role.VIEWER),
    ]
    assert sorted(_acl(updated)) == sorted(expected_acl)
    assert updated.template is not None
    assert (updated.template.assignee, updated.template.priority) == ("robot", v1.Priority.P1)

    seen = await robot.get_component(component.id)
    assert seen.caller_role is v1.Role.EDITOR
    assert sorted(_acl(seen)) == sorted(expected_acl)
    assert seen.template is not None
    assert seen.template.assignee == "robot"
    assert (await viewer.get_component(component.id)).caller_role is v1.Role.VIEWER
    made = await robot.create_issue("editors may file here now", component.id)
    assert made.reporter == "robot"


async def test_unknown_people_in_an_update_are_invalid_and_change_nothing(
    connect_as: ConnectAs,
) -> None:
    """The message names the field as the caller wrote it; the component keeps its version."""
    (boss,) = await signed_in(connect_as, "boss")
    component = await boss.create_component(f"Typo-{secrets.token_hex(3)}")

    with pytest.raises(
        InvalidArgument, match=r"component\.acl\[1\]\.principal\.user: no bugless user is named"
    ):
        await _update(
            boss,
            v1.Component(
                id=component.id,
                acl=[_user("boss", v1.Role.ADMIN), _user("ghost", v1.Role.EDITOR)],
            ),
            "acl",
        )
    with pytest.raises(InvalidArgument, match=r"component\.template\.assignee: .*'ghost'"):
        await _update(
            boss,
            v1.Component(id=component.id, template=v1.IssueTemplate(assignee="ghost")),
            "template",
        )

    now = await boss.get_component(component.id)
    assert (now.version, now.acl) == (component.version, [])


async def test_stale_clashing_and_cyclic_updates_are_refused(connect_as: ConnectAs) -> None:
    """ABORTED with the current version, ALREADY_EXISTS, FAILED_PRECONDITION; nothing written."""
    (boss,) = await signed_in(connect_as, "boss")
    parent = await boss.create_component(f"Tree-{secrets.token_hex(3)}")
    await boss.create_component("Taken", parent_id=parent.id)
    free = await boss.create_component("Free", parent_id=parent.id)
    once = await _update(
        boss,
        v1.Component(id=free.id, description="first"),
        "description",
        expected_version=free.version,
    )

    with pytest.raises(Conflict, match=f"component {free.id} is at version") as stale:
        await _update(
            boss,
            v1.Component(id=free.id, description="second"),
            "description",
            expected_version=free.version,
        )
    assert not isinstance(stale.value, IssueVersionConflict)
    assert stale.value.metadata["current_version"] == str(once.version)
    with pytest.raises(AlreadyExists, match=r"(?i)taken"):
        await _update(boss, v1.Component(id=free.id, name="TAKEN"), "name")
    with pytest.raises(FailedPrecondition):
        await _update(boss, v1.Component(id=parent.id, parent_id=free.id), "parent_id")

    now = await boss.get_component(free.id)
    assert (now.name, now.description, now.version) == ("Free", "first", once.version)
    assert (await boss.get_component(parent.id)).parent_id == 0


async def test_updates_need_admin_and_invisible_components_are_not_found(
    connect_as: ConnectAs,
) -> None:
    """An editor is PERMISSION_DENIED naming the admin role; an outsider learns nothing."""
    boss, robot, outsider = await signed_in(connect_as, "boss", "robot", "outsider")
    component = await boss.create_component(
        f"Guarded-{secrets.token_hex(3)}",
        acl=[_user("boss", v1.Role.ADMIN), _user("robot", v1.Role.EDITOR)],
    )

    with pytest.raises(PermissionDenied, match="admin"):
        await _update(robot, v1.Component(id=component.id, name="Hijacked"), "name")
    with pytest.raises(PermissionDenied, match="admin"):
        await _update(
            robot,
            v1.Component(id=component.id, acl=[_user("robot", v1.Role.ADMIN)]),
            "acl",
        )
    with pytest.raises(NotFound, match=f"component {component.id}"):
        await _update(outsider, v1.Component(id=component.id, archived=True), "archived")

    now = await boss.get_component(component.id)
    assert (now.name, now.archived, now.version) == (component.name, False, component.version)
    assert sorted(_acl(now)) == [("user:boss", v1.Role.ADMIN), ("user:robot", v1.Role.EDITOR)]
