"""The visibility rule's SQL and Python forms agree, judged on a real PostgreSQL.

Statements filter by ``_visibility.COMPONENT_VISIBLE`` and
``HOTLIST_VISIBLE``; a row in hand is judged in Python
(``_convert.caller_role``, ``_context.hotlist_visible``, through
``_visibility.component_visible`` and ``hotlist_visible``). Were they to
differ, a component or hotlist would be found by id and missing from a
search (or the reverse), telling a caller that something hidden exists.
These tests evaluate both forms over every kind of grant and fail on any
case where they disagree.
"""

from __future__ import annotations

import itertools
import uuid

from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._context import hotlist_visible
from bugless_model_postgres._convert import caller_role, principals_of
from bugless_model_postgres._visibility import (
    COMPONENT_VISIBLE,
    HOTLIST_VISIBLE,
    component_visible,
)
from bugless_proto import v1


def _entry(principal: str, role: v1.Role) -> v1.AclEntry:
    kind, _, name = principal.partition(":")
    who = v1.Principal(group=name) if kind == "group" else v1.Principal(user=name)
    return v1.AclEntry(principal=who, role=role)


async def test_the_component_rule_agrees_with_caller_role_on_every_kind_of_grant(
    bugless_model_backend: PostgresBackend,
) -> None:
    """For components the Model wrote (so ``viewers`` as its statement computes it), per caller.

    Open, by user, by group, each role, inherited from a parent, an own
    entry below a parent the caller may not view; callers: admin, the user,
    a member of the group, both, a stranger.
    """
    tag = uuid.uuid4().hex[:8]
    user, group, other = f"vu-{tag}", f"vg-{tag}", f"vo-{tag}"
    root = v1.Caller(user_id="root", admin=True)

    async def make(acl: list[v1.AclEntry], parent_id: int = 0) -> int:
        request = v1.CreateComponentRequest(
            caller=root, parent_id=parent_id, name=f"rule-{uuid.uuid4().hex[:10]}", acl=acl
        )
        return (await bugless_model_backend.create_component(request)).id

    grants: list[list[v1.AclEntry]] = [[]] + [
        [_entry(p, role)]
        for p, role in itertools.product(
            (f"user:{user}", f"group:{group}", f"user:{other}"),
            (v1.Role.VIEWER, v1.Role.EDITOR, v1.Role.ADMIN),
        )
    ]
    ids = [await make(acl) for acl in grants]
    closed = await make([_entry(f"user:{other}", v1.Role.ADMIN)])
    ids += [
        closed,
        await make([], parent_id=closed),
        await make([_entry(f"group:{group}", v1.Role.VIEWER)], parent_id=closed),
    ]
    callers = [
        root,
        v1.Caller(user_id=user),
        v1.Caller(user_id=f"member-{tag}", groups=[group]),
        v1.Caller(user_id=user, groups=[group]),
        v1.Caller(user_id=f"stranger-{tag}", groups=[f"nobody-{tag}"]),
    ]
    statement = (
        "SELECT c.id, c.viewers, c.effective_acl, "
        + COMPONENT_VISIBLE.format(admin="$2::boolean", principals="$3::text[]", c="c")
        + " AS visible FROM components c WHERE c.id = ANY ($1::bigint[])"
    )
    outcomes: list[bool] = []
    async with bugless_model_backend._pool.acquire() as conn:
        for caller in callers:
            rows = await conn.fetch(statement, ids, caller.admin, principals_of(caller))
            assert len(rows) == len(ids)
            for row in rows:
                by_python = caller_role(caller, row["effective_acl"]) is not None
                on_viewers = component_visible(caller.admin, row["viewers"], principals_of(caller))
                assert (row["visible"], on_viewers) == (by_python, by_python), (
                    caller,
                    dict(row),
                )
                outcomes.append(by_python)
    assert len(outcomes) == len(ids) * len(callers)
    # The cases are not all one answer: callers see some and not others.
    assert 0 < outcomes.count(False) < len(outcomes) - len(ids)


async def test_the_hotlist_rule_agrees_in_sql_and_python_on_every_case(
    bugless_model_backend: PostgresBackend,
) -> None:
    """Private or shared, admin or not, the caller its owner, an editor or neither."""
    statement = (
        "SELECT "
        + HOTLIST_VISIBLE.format(h="h", admin="$4::boolean", user="$5::text")
        + (" FROM (SELECT $1::boolean AS private, $2::text AS owner, $3::text[] AS editors) h")
    )
    outcomes = set()
    async with bugless_model_backend._pool.acquire() as conn:
        for private, admin, owner, editors in itertools.product(
            (False, True), (False, True), ("me", "someone"), ([], ["me"], ["someone", "x"])
        ):
            by_sql = await conn.fetchval(statement, private, owner, editors, admin, "me")
            row = {"private": private, "owner": owner, "editors": editors}
            by_python = hotlist_visible(v1.Caller(user_id="me", admin=admin), row)
            assert by_sql is by_python, (private, admin, owner, editors)
            outcomes.add(by_python)
    assert outcomes == {True, False}
