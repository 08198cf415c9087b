"""Migration 0029: own access lists naming one principal twice are merged, the higher role kept.

Releases before 9eaca465 stored such a list as sent. The test writes one
the way they did (through the backend itself, under the servicer's check that
refuses it now), runs 0029's statement and checks that each principal is
listed once, with the role the Model enforced all along, where it was first
listed; that access is unchanged; that the list can be saved back as read;
and that a component without duplicates is left alone.
"""

from __future__ import annotations

import asyncpg
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.migrations import quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    expect_error,
    fresh_caller,
    get_component,
    group_entry,
    make_component,
    unique,
    user_entry,
)

R = v1.Role


async def test_duplicate_entries_merge_keeping_the_higher_role_and_access(
    model_settings: ModelSettings, bugless_model_backend: PostgresBackend, model: v1.ModelStub
) -> None:
    bob, carol, dora = fresh_caller("bob"), fresh_caller("carol"), fresh_caller("dora")
    group = unique("team")
    member = fresh_caller("member", groups=[group])
    doubled = [
        user_entry(bob.user_id, R.ADMIN),
        user_entry(carol.user_id, R.VIEWER),
        group_entry(group, R.VIEWER),
        user_entry(bob.user_id, R.VIEWER),  # a "demotion" the Model never applied
        user_entry(carol.user_id, R.EDITOR),
        group_entry(group, R.EDITOR),
        user_entry(dora.user_id, R.VIEWER),
    ]
    # The old way: the backend stores what it is given (the servicer's check
    # is what refuses a principal named twice now).
    old = await bugless_model_backend.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=unique("twice"), acl=doubled)
    )
    untouched = await make_component(model, acl=[user_entry(bob.user_id, R.EDITOR)])
    stored = await get_component(model, old.id)
    assert len(stored.acl) == len(doubled)
    # The list as read cannot be saved back: the Model refuses it now.
    await expect_error(
        _save_acl(model, stored, list(stored.acl)), Status.INVALID_ARGUMENT, "acl[3].principal"
    )
    roles_before = {c.user_id: await _role(model, c, old.id) for c in (bob, carol, dora, member)}
    assert roles_before == {
        bob.user_id: R.ADMIN,
        carol.user_id: R.EDITOR,
        dora.user_id: R.VIEWER,
        member.user_id: R.EDITOR,
    }

    conn = await asyncpg.connect(model_settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(model_settings.schema)}")
        (sql,) = [
            m.sql for m in PostgresBackend.migrations() if m.name == "acl_one_entry_per_principal"
        ]
        await conn.execute(sql)
    finally:
        await conn.close()

    merged = await get_component(model, old.id)
    assert [(e.principal, e.role) for e in merged.acl] == [
        (v1.Principal(user=bob.user_id), R.ADMIN),
        (v1.Principal(user=carol.user_id), R.EDITOR),
        (v1.Principal(group=group), R.EDITOR),
        (v1.Principal(user=dora.user_id), R.VIEWER),
    ]
    assert merged.version == stored.version + 1
    assert {c.user_id: await _role(model, c, old.id) for c in (bob, carol, dora, member)} == (
        roles_before
    )
    assert await _role(model, fresh_caller("stranger"), old.id) is None
    same = await get_component(model, untouched.id)
    assert (same.version, list(same.acl)) == (untouched.version, list(untouched.acl))
    # Saved back as read, now accepted, and still the same access.
    saved = await _save_acl(model, merged, list(merged.acl))
    assert list(saved.acl) == list(merged.acl)


async def _role(model: v1.ModelStub, caller: v1.Caller, component_id: int) -> v1.Role | None:
    """``caller``'s role on the component (None: it is not visible to them)."""
    try:
        found = await model.get_component(
            v1.GetComponentRequest(caller=caller, component_id=component_id)
        )
    except GRPCError as exc:
        if exc.status is not Status.NOT_FOUND:
            raise
        return None
    return found.caller_role


async def _save_acl(
    model: v1.ModelStub, component: v1.Component, acl: list[v1.AclEntry]
) -> v1.Component:
    return await model.update_component(
        v1.UpdateComponentRequest(
            caller=ADMIN,
            component=v1.Component(id=component.id, acl=acl),
            update_mask=FieldMask(paths=["acl"]),
            expected_version=component.version,
        )
    )
