"""Access lists stored before 9eaca465 with one principal named twice: the form, and 0029.

The Model refuses such a list now; a release before it stored it as sent.
These tests write one the way it did (behind the Model's back, with the
effective ACL it computed) and check what the component page does with it,
and that the Model's migration 0029 merges it, keeping the higher role, so
the page shows one row per principal and saves unchanged.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient
from web_support import World, create_component, sign_in, version_of

from bugless_core.clients import call
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1


def _schema(world: World) -> str:
    return world.stack.env.get("BUGLESS_DATABASE_SCHEMA", "bugless")


async def _store_acl(world: World, component_id: int, entries: list[tuple[str, v1.Role]]) -> None:
    """Write a component's own entries as a release before 9eaca465 could (one principal twice).

    The Model refuses such a list now, so it is written to its table; the
    effective ACL gets each principal's highest role, as the Model computes it.
    """
    own = [{"p": principal, "r": int(role)} for principal, role in entries]
    effective: dict[str, int] = {}
    for principal, role in entries:
        effective[principal] = max(effective.get(principal, 0), int(role))
    conn = await asyncpg.connect(
        world.stack.model_database_url, server_settings={"search_path": _schema(world)}
    )
    try:
        await conn.execute(
            "UPDATE components SET acl = $2::jsonb, effective_acl = $3::jsonb WHERE id = $1",
            component_id,
            json.dumps(own),
            json.dumps(effective),
        )
    finally:
        await conn.close()


async def test_a_list_naming_a_user_twice_is_edited_to_one_entry_never_silently(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    """A list from before the Model refused a principal named twice: both rows shown, one kept.

    Before, the form kept the last of the two rows: saving the list unchanged
    (or adding someone) turned bob, an admin by his first entry, into a viewer
    with a 303 "Saved". Now two kept rows with two roles are the form's 400
    naming bob and both roles, nothing saved, each row as sent; removing one
    saves the other.
    """
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Twice {secrets.token_hex(3)}")
    dora_id, bob_id = world.users["dora"], world.users["bob"]
    await _store_acl(
        world,
        component_id,
        [
            (f"user:{dora_id}", v1.Role.ADMIN),
            (f"user:{bob_id}", v1.Role.ADMIN),
            (f"user:{bob_id}", v1.Role.VIEWER),
        ],
    )
    page = (await client.get(f"/components/{component_id}")).text
    bob_row = f"userid:{bob_id}"
    assert page.count(f'value="{bob_row}">') == 2
    version = version_of(page)
    rows = [f"userid:{dora_id}", bob_row, bob_row]
    unchanged = await client.post(
        f"/components/{component_id}/acl",
        data={"_csrf": token, "version": version, "principal": rows}
        | {"role": ["admin", "admin", "viewer"], "new_name": "carol", "new_role": "viewer"},
        follow_redirects=False,
    )
    assert unchanged.status_code == 400, unchanged.text
    assert (
        "Nothing was saved: acl: &#39;bob&#39; has two entries here, as admin and as viewer;"
        " set one of them to Remove"
    ) in unchanged.text
    first, second = unchanged.text.split(f'value="{bob_row}">')[1:3]
    assert '<option value="admin" selected>' in first.split("</select>", 1)[0]
    assert '<option value="viewer" selected>' in second.split("</select>", 1)[0]
    stored = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.admin, component_id=component_id),
    )
    assert [e.role for e in stored.acl] == [v1.Role.ADMIN, v1.Role.ADMIN, v1.Role.VIEWER]
    demoted = await client.post(
        f"/components/{component_id}/acl",
        data={"_csrf": token, "version": version, "principal": rows}
        | {"role": ["admin", "remove", "viewer"]},
        follow_redirects=False,
    )
    assert demoted.status_code == 303, demoted.text
    stored = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.admin, component_id=component_id),
    )
    assert [(e.principal.user if e.principal else "", e.role) for e in stored.acl] == [
        (dora_id, v1.Role.ADMIN),
        (bob_id, v1.Role.VIEWER),
    ]
    assert stored.caller_role == v1.Role.ADMIN
    bob = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.caller("bob"), component_id=component_id),
    )
    assert bob.caller_role == v1.Role.VIEWER


async def _migrate_0029(world: World) -> None:
    """Run the Model's migration 0029 on the stack's database, as ``model migrate`` would."""
    (sql,) = [
        m.sql for m in PostgresBackend.migrations() if m.name == "acl_one_entry_per_principal"
    ]
    conn = await asyncpg.connect(
        world.stack.model_database_url, server_settings={"search_path": _schema(world)}
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_after_0029_the_page_lists_each_principal_once_with_the_higher_role(
    client: AsyncTestClient[Any], dora: str, world: World, model: v1.ModelStub
) -> None:
    """Bob, admin by his first entry and viewer by his second, is one admin row after 0029.

    Before the migration the page shows both rows and an unchanged save is
    refused (:func:`test_a_list_naming_a_user_twice_is_edited_to_one_entry_never_silently`);
    after it, one row each, bob still an admin (as the Model enforced all
    along), carol's two entries one editor row, and the list saves as shown.
    """
    token = await sign_in(client, dora)
    component_id = await create_component(client, token, f"Merged {secrets.token_hex(3)}")
    dora_id, bob_id, carol_id = world.users["dora"], world.users["bob"], world.users["carol"]
    await _store_acl(
        world,
        component_id,
        [
            (f"user:{dora_id}", v1.Role.ADMIN),
            (f"user:{bob_id}", v1.Role.ADMIN),
            (f"user:{carol_id}", v1.Role.VIEWER),
            (f"user:{bob_id}", v1.Role.VIEWER),
            (f"user:{carol_id}", v1.Role.EDITOR),
        ],
    )
    before = (await client.get(f"/components/{component_id}")).text
    assert before.count(f'value="userid:{bob_id}">') == 2

    async def role_of(username: str) -> v1.Role:
        found = await call(
            model.get_component,
            v1.GetComponentRequest(caller=world.caller(username), component_id=component_id),
        )
        return found.caller_role

    roles = {u: await role_of(u) for u in ("bob", "carol")}
    assert roles == {"bob": v1.Role.ADMIN, "carol": v1.Role.EDITOR}

    await _migrate_0029(world)

    page = (await client.get(f"/components/{component_id}")).text
    rows = [f"userid:{dora_id}", f"userid:{bob_id}", f"userid:{carol_id}"]
    for row, role in zip(rows, ("admin", "admin", "editor"), strict=True):
        assert page.count(f'value="{row}">') == 1, row
        picker = page.split(f'value="{row}">', 1)[1].split("</select>", 1)[0]
        assert f'<option value="{role}" selected>' in picker, row
    assert {u: await role_of(u) for u in ("bob", "carol")} == roles
    saved = await client.post(
        f"/components/{component_id}/acl",
        data={"_csrf": token, "version": version_of(page), "principal": rows}
        | {"role": ["admin", "admin", "editor"]},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    stored = await call(
        model.get_component,
        v1.GetComponentRequest(caller=world.admin, component_id=component_id),
    )
    assert [(e.principal.user if e.principal else "", e.role) for e in stored.acl] == [
        (dora_id, v1.Role.ADMIN),
        (bob_id, v1.Role.ADMIN),
        (carol_id, v1.Role.EDITOR),
    ]
