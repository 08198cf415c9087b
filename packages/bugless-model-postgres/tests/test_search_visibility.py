"""Visibility of full-text searches on both sides of ``HIDDEN_LIST_MAX``, on a real PostgreSQL.

A text query lists the components hidden from the caller and tests each
candidate against the list; past ``HIDDEN_LIST_MAX`` hidden components it
probes each candidate's component instead. Which branch a caller takes
depends on how many components the whole database hides from them, so this
runs on a database of its own where that number is known.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from write_support import migrated

from bugless_core.model.backend import ModelSettings
from bugless_core.search.build import all_of, any_of, negate, term
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._search import HIDDEN_LIST_MAX, compile_search
from bugless_proto import v1
from bugless_testing.postgres import ThrowawayPostgres

F = v1.SearchField
Op = v1.SearchOperator
ADMIN = v1.Caller(user_id="root", admin=True)
OWNER = v1.Caller(user_id="owner")
#: Members of ``many`` see the many components, members of ``few`` the few.
MANY = v1.Caller(user_id="m", groups=["many"])
FEW = v1.Caller(user_id="f", groups=["few"])
STRANGER = v1.Caller(user_id="stranger", groups=["other"])
SECRET = "test-page-token-secret-0123456789"


def _acl(group: str) -> list[v1.AclEntry]:
    return [
        v1.AclEntry(principal=v1.Principal(user=OWNER.user_id), role=v1.Role.ADMIN),
        v1.AclEntry(principal=v1.Principal(group=group), role=v1.Role.VIEWER),
    ]


@pytest.fixture(scope="module")
async def world(
    postgres_server: ThrowawayPostgres,
) -> AsyncIterator[tuple[PostgresBackend, dict[str, list[int]]]]:
    """One open component, ``HIDDEN_LIST_MAX + 1`` for group ``many``, 3 for ``few``."""
    settings = ModelSettings(
        database_url=await postgres_server.acreate_database("search_visibility"),
        page_token_secret=SECRET,
    )
    async with migrated(settings) as backend:
        yield backend, await _world(backend)


async def _world(backend: PostgresBackend) -> dict[str, list[int]]:
    """The components of :func:`world` and two issues in each of the first two of a kind."""

    async def component(name: str, acl: list[v1.AclEntry]) -> int:
        request = v1.CreateComponentRequest(caller=ADMIN, name=name, acl=acl)
        return (await backend.create_component(request)).id

    async def issue(component_id: int, title: str) -> int:
        fields = v1.IssueFields(title=title, component_id=component_id)
        return (await backend.create_issue(v1.CreateIssueRequest(caller=ADMIN, fields=fields))).id

    open_ = await component("open", [])
    many = [await component(f"many{n}", _acl("many")) for n in range(HIDDEN_LIST_MAX + 1)]
    few = [await component(f"few{n}", _acl("few")) for n in range(3)]
    found: dict[str, list[int]] = {}
    for name, comps in (("open", [open_]), ("many", many[:2]), ("few", few[:2])):
        for comp in comps:
            found.setdefault(name, []).append(await issue(comp, "connection reset by peer"))
            found.setdefault(f"{name} other", []).append(await issue(comp, "peer review"))
    return found


async def _ids(backend: PostgresBackend, caller: v1.Caller, node: v1.SearchNode) -> list[int]:
    """Every match, walked one issue per page; each page's total is the number of matches."""
    found: list[int] = []
    token, totals = "", set()
    while True:
        page = await backend.search_issues(
            v1.SearchIssuesRequest(
                caller=caller,
                query=v1.StructuredQuery(filter=node),
                page=v1.PageRequest(page_size=1, page_token=token),
            )
        )
        found += [i.id for i in page.issues]
        totals.add(page.total_count)
        token = page.next_page_token
        if not token:
            assert totals <= {len(found)}
            return sorted(found)


@pytest.mark.parametrize(
    ("caller", "sees", "hidden"),
    [
        (ADMIN, ("open", "many", "few"), 0),
        (OWNER, ("open", "many", "few"), 0),
        (MANY, ("open", "many"), 3),
        (FEW, ("open", "few"), HIDDEN_LIST_MAX + 1),
        (STRANGER, ("open",), HIDDEN_LIST_MAX + 4),
    ],
    ids=["admin", "owner", "list", "probe", "probe-stranger"],
)
async def test_text_queries_show_only_what_the_caller_may_view(
    world: tuple[PostgresBackend, dict[str, list[int]]],
    caller: v1.Caller,
    sees: tuple[str, ...],
    hidden: int,
) -> None:
    backend, hits = world
    principals = [f"user:{caller.user_id}", *(f"group:{g}" for g in caller.groups)]
    compiled = compile_search(
        v1.StructuredQuery(filter=term(F.TEXT, Op.EQ, "peer")), caller, principals, None
    )
    async with backend._pool.acquire() as conn:
        listed = f"WITH {compiled.ctes} SELECT cardinality(ids) FROM s0"
        assert await conn.fetchval(listed, caller.admin, principals) == hidden
    expected = sorted(i for name in sees for i in hits[name])
    others = sorted(i for name in sees for i in hits[f"{name} other"])
    everyone = [i for ids in hits.values() for i in ids]
    phrase = term(F.TEXT, Op.EQ, "connection reset by peer", phrase=True)
    assert await _ids(backend, caller, phrase) == expected
    assert await _ids(backend, caller, all_of(term(F.TITLE, Op.EQ, "reset peer"))) == expected
    assert await _ids(backend, caller, negate(phrase)) == others
    either = any_of(phrase, term(F.ID, Op.EQ, *everyone))
    assert await _ids(backend, caller, either) == sorted(expected + others)
