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

import json

from bugless_core.search.build import any_of
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._search import compile_search
from bugless_model_postgres._search_refs import (
    references_of,
    seen_arguments,
    seen_column,
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
    seen = seen_column("$1::boolean", "$2::text[]", "$3::text", 4)
    indexes = await _indexes(
        bugless_model_backend,
        f"SELECT {seen} AS refs_seen",
        False,
        ["user:viewer"],
        "viewer",
        *seen_arguments(refs),
    )
    assert {"components_own_name_key", "components_path_key"} <= indexes


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
