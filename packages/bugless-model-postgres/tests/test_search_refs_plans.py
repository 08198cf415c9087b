"""A component named in a query is looked up through an index, by name or by path.

``component:Rocket`` compares each component's own name (the last segment of
its ``path_key``), ``component:Rocket>Engine`` its whole ``path_key``
(:data:`bugless_model_postgres._search_refs.NAMED`): the search's own term
and the check of the names its first page (or a watch) makes. Each arm must
be one an index can serve, per name: ``components_own_name_key`` (migration
0032) and ``components_path_key``. With scans of the table discouraged, the
plans read both indexes; were the expression to drift from the index's (a
CASE over the key, as it was), the planner could not use them and would
scan every component per name.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

from bugless_core.model.backend import ModelSettings
from bugless_core.search.build import all_of, any_of, term
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._search import compile_search
from bugless_model_postgres._search_refs import (
    references_of,
    seen_arguments,
    seen_statement,
)
from bugless_proto import v1

F = v1.SearchField
CALLER = v1.Caller(user_id="viewer", groups=["a-team"])


def _named(*names: str) -> v1.SearchNode:
    """A COMPONENT term naming ``names`` (with the components below them)."""
    return any_of(
        *(
            v1.SearchNode(
                term=v1.SearchTerm(
                    field=F.COMPONENT,
                    op=v1.SearchOperator.EQ,
                    values=[v1.SearchValue(text=name)],
                    include_subtree=subtree,
                )
            )
            for name in names
            for subtree in (False, True)
        )
    )


async def _indexes(backend: PostgresBackend, sql: str, *args: object) -> set[str]:
    """The index names of ``sql``'s plan, with sequential scans discouraged."""
    async with backend._pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    return _index_names(json.loads(plan) if isinstance(plan, str) else plan)


async def test_a_searched_component_name_and_path_are_read_through_indexes(
    bugless_model_backend: PostgresBackend,
) -> None:
    query = v1.StructuredQuery(filter=_named("Rocket", "Rocket>Engine"))
    compiled = compile_search(query, CALLER, ["user:viewer", "group:a-team"], None)
    indexes = await _indexes(bugless_model_backend, compiled.page_sql, *compiled.page_params, 50)
    assert {"components_own_name_key", "components_path_key"} <= indexes


async def test_the_names_a_first_page_checks_are_read_through_indexes(
    bugless_model_backend: PostgresBackend,
) -> None:
    refs = references_of(v1.StructuredQuery(filter=_named("Rocket", "Rocket>Engine")))
    indexes = await _indexes(
        bugless_model_backend,
        seen_statement(refs),
        False,
        ["user:viewer"],
        "viewer",
        *seen_arguments(refs),
    )
    assert {"components_own_name_key", "components_path_key"} <= indexes


def _term(field: v1.SearchField, value: v1.SearchValue, *, subtree: bool = False) -> v1.SearchNode:
    return v1.SearchNode(
        term=v1.SearchTerm(
            field=field, op=v1.SearchOperator.EQ, values=[value], include_subtree=subtree
        )
    )


async def test_a_first_page_checks_only_the_kinds_of_reference_its_query_holds(
    bugless_model_backend: PostgresBackend,
) -> None:
    """``c:12+`` reads no hotlist and no name; ``hotlistid:7`` no component.

    A first page is planned each time it runs, and each arm of ``refs_seen``
    (five subqueries under the visibility rule) is planned with it: with all
    five for every checked page, ``c:12+`` paid ~0.2-0.3 ms of planning a
    first page for the four it has no use for (bench/JOURNAL.md, "perf41").
    """
    cases = {
        "subtree": (_term(F.COMPONENT, v1.SearchValue(integer=12), subtree=True), 1, False),
        "hotlist": (_term(F.HOTLIST, v1.SearchValue(integer=7)), 1, True),
        "names": (_named("Rocket"), 2, False),
        "all": (
            any_of(
                _term(F.COMPONENT, v1.SearchValue(integer=12)),
                _term(F.HOTLIST, v1.SearchValue(integer=7)),
                _named("Rocket"),
            ),
            4,
            True,
        ),
    }
    for name, (node, arms, hotlists) in cases.items():
        refs = references_of(v1.StructuredQuery(filter=node))
        seen = seen_statement(refs)
        plan = await _plan(
            bugless_model_backend,
            seen,
            False,
            ["user:viewer"],
            "viewer",
            *seen_arguments(refs),
        )
        read = _found(plan, "Relation Name")
        assert ("hotlists" in read) is hotlists, (name, read)
        assert ("components" in read) is (name != "hotlist"), (name, read)
        assert plan_arms(seen) == len(seen_arguments(refs)) == arms, name


async def test_a_checked_named_first_page_is_served_by_a_generic_plan(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The same ``component:Name+`` first page, asked again, stops being planned each time.

    The Model runs a page as a prepared statement (asyncpg's statement
    cache), and PostgreSQL keeps a prepared statement on custom plans,
    planned at every run, while its generic plan looks dearer. The
    ``refs_seen`` arm of the names, an ``unnest`` of an array of unknown
    length, made it look so: the checked named first page planned ~1.3 ms
    at every run at 100,000 issues, where a generic plan serves it in ~1.2
    ms all told (bench/JOURNAL.md, "plan41"). Counted on the one connection
    of a Model's pool, not timed.
    """
    del bugless_model_backend  # only its migration
    one = dataclasses.replace(model_settings, pool_min_size=1, pool_max_size=1)
    backend = await PostgresBackend.open(one)
    try:
        admin = v1.Caller(user_id="admin", admin=True)
        name = f"Generic{uuid.uuid4().hex[:8]}"
        top = await backend.create_component(v1.CreateComponentRequest(caller=admin, name=name))
        below = await backend.create_component(
            v1.CreateComponentRequest(caller=admin, name="Below", parent_id=top.id)
        )
        for n in range(3):
            await backend.create_issue(
                v1.CreateIssueRequest(
                    caller=admin, fields=v1.IssueFields(title=f"plan {n}", component_id=below.id)
                )
            )
        query = v1.StructuredQuery(
            filter=all_of(
                term(F.STATUS_CLASS, v1.SearchOperator.EQ, "open"),
                term(F.COMPONENT, v1.SearchOperator.EQ, name, include_subtree=True),
            )
        )
        request = v1.SearchIssuesRequest(
            caller=CALLER, query=query, page=v1.PageRequest(page_size=50)
        )
        for _ in range(10):
            assert len((await backend.search_issues(request)).issues) == 3
        async with backend._pool.acquire() as conn:
            plans = await conn.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE '%refs_seen%' AND statement NOT LIKE '%pg_prepared%'"
            )
        assert len(plans) == 1, plans
        assert plans[0]["generic_plans"] > 0, dict(plans[0])
    finally:
        await backend.close()


def plan_arms(sql: str) -> int:
    """The arms of a ``refs_seen`` expression: one ``ARRAY(SELECT`` each."""
    return sql.count("ARRAY(SELECT '")


async def _plan(backend: PostgresBackend, sql: str, *args: object) -> object:
    """``sql``'s plan, EXPLAIN (FORMAT JSON)."""
    async with backend._pool.acquire() as conn:
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    return json.loads(plan) if isinstance(plan, str) else plan


def _found(node: object, key: str) -> set[str]:
    """Every value of ``key`` in a JSON plan."""
    if isinstance(node, dict):
        found = {node[key]} if key in node else set()
        for value in node.values():
            found |= _found(value, key)
        return found
    if isinstance(node, list):
        return set().union(*(_found(item, key) for item in node)) if node else set()
    return set()


def _index_names(node: object) -> set[str]:
    """Every ``Index Name`` of an EXPLAIN (FORMAT JSON) plan."""
    if isinstance(node, dict):
        found = {node["Index Name"]} if "Index Name" in node else set()
        for value in node.values():
            found |= _index_names(value)
        return found
    if isinstance(node, list):
        return set().union(*(_index_names(item) for item in node)) if node else set()
    return set()
