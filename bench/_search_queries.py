"""The queries of :mod:`bench.search`: their text, requests, floors and facts.

Each query is written in the search language and translated as a frontend
would (``parse_query``, ``to_structured``), with the hand-written SQL floor
(:mod:`bench._search_floor`) that gives the same answer; the word and the
subtree are picked from the seeded data by counting. :mod:`bench.web_search`
measures the web's search page on the same queries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench import _dataset as data
from bench import _seed_sql as seed_sql
from bench._search_floor import CALLER, PRINCIPALS, FloorSql, ids_first_floor, text_floor
from bugless_core import limits
from bugless_core.issue_fields import OPEN_STATUSES
from bugless_core.search import parse_query, to_structured
from bugless_proto import v1

#: The open statuses as the database stores them (their enum numbers).
OPEN = sorted(int(s) for s in OPEN_STATUSES)


@dataclass
class BenchQuery:
    """One benchmark query: its text, its request and its floor."""

    name: str
    text: str
    page: int
    floor: FloorSql
    structured: v1.StructuredQuery
    token: str = ""
    position: list[Any] | None = None
    #: The measured page's token from the served Model (its own token secret).
    served_token: str = ""
    #: The measured page's ids and total, as every mode must answer.
    expected: tuple[list[int], int] = ([], 0)


async def _pick_word(conn: asyncpg.Connection, issues: int) -> tuple[str, int]:
    """The vocabulary word whose issue count is nearest 1% of ``issues``."""
    best: tuple[float, str, int] | None = None
    for rank in (150, 200, 250, 300, 350, 400, 450, 500, 600, 700):
        word = await conn.fetchval(
            f"SELECT word FROM {seed_sql.BENCH_SCHEMA}.vocabulary WHERE rank = $1", rank
        )
        n = await conn.fetchval(
            "SELECT count(*) FROM issues WHERE text_tsv @@ plainto_tsquery('english', $1)", word
        )
        score = abs(n / issues - 0.01)
        if best is None or score < best[0]:
            best = (score, word, n)
    assert best is not None
    return best[1], best[2]


def _structured(text: str) -> v1.StructuredQuery:
    users = {data.BENCH_ASSIGNEE: data.BENCH_ASSIGNEE}
    return to_structured(parse_query(text), me=CALLER.user_id, users=users, today=data.END.date())


async def build_queries(conn: asyncpg.Connection) -> tuple[list[BenchQuery], dict[str, Any]]:
    """The benchmark queries and what the data says about them."""
    info = {
        r["key"]: json.loads(r["value"])
        for r in await conn.fetch(f"SELECT key, value FROM {seed_sql.BENCH_SCHEMA}.seed_info")
    }
    issues = int(info["issues"])
    subtree = int(info["components"][data.TEN_PERCENT_SUBTREE])
    word, word_issues = await _pick_word(conn, issues)
    subtree_issues = await conn.fetchval(
        "SELECT count(*) FROM issues i JOIN components c ON c.id = i.component_id "
        "WHERE c.path_ids @> ARRAY[$1::bigint]",
        subtree,
    )
    facts = {
        "issues": issues,
        "word": word,
        "word_share": word_issues / issues,
        "subtree_id": subtree,
        "subtree_share": subtree_issues / issues,
    }
    phrase = data.PHRASES[0]
    queries = [
        BenchQuery(
            "compound",
            f"is:open c:{subtree}+ p<=p1 {word}",
            1,
            text_floor(
                # The subtree as a list of component ids, as the Model writes it: a
                # condition on the joined row (``c.path_ids @> ...``) made PostgreSQL
                # loop over the subtree's components, re-reading the word's whole
                # GIN posting list for each (~100 ms a page at 1,000,000 issues).
                "i.status = ANY ({p[0]}::smallint[]) AND i.component_id = ANY (ARRAY("
                "SELECT sc.id FROM components sc WHERE sc.path_ids @> ARRAY[{p[1]}::bigint])) "
                "AND i.priority <= 2 AND i.text_tsv @@ plainto_tsquery('english', {p[2]})",
                [OPEN, subtree, word],
            ),
            _structured(f"is:open c:{subtree}+ p<=p1 {word}"),
        ),
        BenchQuery(
            "assignee",
            f"assignee:{data.BENCH_ASSIGNEE} is:open",
            1,
            ids_first_floor(
                "i.assignee = {p[0]} AND i.status = ANY ({p[1]}::smallint[])",
                "i.id DESC",
                [data.BENCH_ASSIGNEE, OPEN],
            ),
            _structured(f"assignee:{data.BENCH_ASSIGNEE} is:open"),
        ),
        BenchQuery(
            "phrase",
            f'"{phrase}"',
            1,
            text_floor("i.text_tsv @@ phraseto_tsquery('english', {p[0]})", [phrase]),
            _structured(f'"{phrase}"'),
        ),
        BenchQuery(
            "modified-p3",
            "is:open sort:-modified",
            3,
            ids_first_floor(
                "i.status = ANY ({p[0]}::smallint[])",
                "i.modified_at DESC, i.id DESC",
                [OPEN],
                keyset="AND (i.modified_at, i.id) < ({p[2]}::timestamptz, {p[3]}::bigint)",
            ),
            _structured("is:open sort:-modified"),
        ),
    ]
    # The compound query with the subtree named, not numbered: the Model looks
    # the name up (component:Name, ae811eaf; through migration 0032's index).
    named_text = f"is:open component:{data.TEN_PERCENT_SUBTREE}+ p<=p1 {word}"
    queries.append(BenchQuery("named", named_text, 1, queries[0].floor, _structured(named_text)))
    custom_field = info.get("custom_fields", {}).get(data.TEN_PERCENT_SUBTREE)
    if custom_field is not None:
        custom_text = f'"{data.CUSTOM_FIELD_NAME}":{data.BENCH_CUSTOM_VALUE} is:open c:{subtree}+'
        queries.append(
            BenchQuery(
                "custom",
                custom_text,
                1,
                ids_first_floor(
                    "i.id = ANY (ARRAY(SELECT v.issue_id FROM issue_custom_values v "
                    "WHERE v.field_id = {p[0]}::bigint AND v.value = {p[1]}::text "
                    "AND v.status = ANY ({p[2]}::smallint[]) AND v.component_id = ANY (ARRAY("
                    "SELECT sc.id FROM components sc WHERE sc.path_ids @> ARRAY[{p[3]}::bigint]"
                    ")))) AND i.status = ANY ({p[2]}::smallint[]) "
                    "AND c.path_ids @> ARRAY[{p[3]}::bigint]",
                    "i.id DESC",
                    [custom_field, data.BENCH_CUSTOM_VALUE, OPEN, subtree],
                ),
                _structured(custom_text),
            )
        )
    for q in queries:
        facts[f"{q.name}_matches"] = await conn.fetchval(
            q.floor.count, PRINCIPALS, *q.floor.params, limits.SEARCH_COUNT_CAP + 1
        )
    return queries, facts
