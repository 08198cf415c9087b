"""The SQL floor of :mod:`bench.search`: hand-written statements giving a summary page's answer.

The floor is what a careful person writing SQL by hand for one query would
send: the same answer as the Model's summary page (the columns, the caller's
visible hotlists, the star, the custom fields' names, whether other issues
name each as parent or canonical) in the shape PostgreSQL runs best at
1,000,000 issues:

* **ids first, columns joined back** (:func:`ids_first_floor`): the page's
  ids (and the sort keys) in a ``LIMIT`` subquery, then one primary-key
  probe per row for the columns. A page that selected every column at once
  made PostgreSQL walk ``issues_pkey`` backwards for ``assignee:X is:open``,
  filtering 17,132 rows (26 ms), where the narrow page reads the
  ``issues_assignee_status`` index alone (bench/JOURNAL.md, "Floors in the
  Model's shape");
* **one pass for a text query** (:func:`text_floor`): a GIN index returns
  matches in no order and a phrase is rechecked on every row, so the
  matches (up to the count cap) are read once and give both the count and
  the page, instead of a page statement and a count statement reading the
  same rows twice.

Before these floors answered less than the Model (no star, no names, no
relation flags) and two of them took worse plans than the Model, so the
ratios to them flattered the Model in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from bench import _dataset as data
from bugless_core import limits

PAGE_SIZE = 50
CALLER = data.BENCH_CALLER
#: The caller's principals as the Model stores them on ACL rows (hand-written, like
#: the rest of the floor).
PRINCIPALS = [f"user:{CALLER.user_id}", *(f"group:{g}" for g in CALLER.groups)]

#: What a summary page carries (description and cc left out, as the Model's
#: summary projection does), for the issue ``i``; ``$1`` is the caller's id.
ANSWER = """
    i.id, i.title, i.status, i.priority, i.severity, i.type, i.component_id,
    i.reporter, i.assignee, i.verifier, i.blocking_ids, i.blocked_by_ids,
    i.parent_id, i.duplicate_of_id, i.created_at, i.modified_at,
    i.closed_at, i.version, i.comment_count, i.custom_fields, i.external_id, i.star_count,
    ARRAY(SELECT hi.hotlist_id FROM hotlist_items hi JOIN hotlists h ON h.id = hi.hotlist_id
           WHERE hi.issue_id = i.id AND (NOT h.private OR h.owner = $1 OR $1 = ANY (h.editors))
           ORDER BY hi.hotlist_id) AS hotlist_ids,
    EXISTS (SELECT 1 FROM issue_stars st WHERE st.issue_id = i.id AND st.user_id = $1) AS starred,
    (SELECT jsonb_object_agg(f.id::text, jsonb_build_array(f.name, f.type)) FROM custom_fields f
      WHERE f.id IN (SELECT k::bigint FROM jsonb_object_keys(i.custom_fields) AS k))
      AS custom_field_names,
    EXISTS (SELECT 1 FROM issues n WHERE n.parent_id = i.id AND n.parent_id <> 0) AS has_children,
    EXISTS (SELECT 1 FROM issues n WHERE n.duplicate_of_id = i.id AND n.duplicate_of_id <> 0)
      AS has_duplicates
"""
_VISIBLE = "(c.viewers = '{{}}' OR c.viewers && {principals}::text[])"


@dataclass(frozen=True)
class FloorSql:
    """Hand-written statements for one query.

    ``page`` takes (user, principals, *params, limit[, *position]), or
    (user, principals, *params, limit, cap) when ``one_pass``: then its rows
    carry ``total`` (the capped count) and no count statement runs.
    ``count`` takes (principals, *params, cap).
    """

    page: str
    count: str
    params: list[Any]
    one_pass: bool = False


def _count(where: str, n: int) -> str:
    count_p = [f"${k + 2}" for k in range(n)]
    count_where = _VISIBLE.format(principals="$1") + " AND " + where.format(p=count_p)
    return (
        "SELECT count(*) FROM (SELECT 1 FROM issues i JOIN components c ON c.id = i.component_id "
        f"WHERE {count_where} LIMIT ${n + 2}) AS m"
    )


def ids_first_floor(where: str, order: str, params: list[Any], keyset: str = "") -> FloorSql:
    """The page's ids in page order, then the answer's columns joined back.

    ``where``/``keyset`` name parameters as ``{p[0]}``..; positions follow
    the limit (``{p[n + 1]}``..); ``order`` is on ``i``.
    """
    n = len(params)
    page_p = [f"${k + 3}" for k in range(n + 3)]
    page_where = _VISIBLE.format(principals="$2") + " AND " + where.format(p=page_p)
    page = (
        "SELECT i.id FROM issues i JOIN components c ON c.id = i.component_id "
        f"WHERE {page_where} {keyset.format(p=page_p)} ORDER BY {order} LIMIT ${n + 3}"
    )
    return FloorSql(
        f"SELECT {ANSWER} FROM ({page}) AS p JOIN issues i ON i.id = p.id ORDER BY {order}",
        _count(where, n),
        params,
    )


def text_floor(where: str, params: list[Any]) -> FloorSql:
    """A first page by ``i.id DESC`` and its capped count from one read of the matches.

    Visibility is the list of components hidden from the caller (a
    multi-word tsquery is estimated at one row, so a join to ``components``
    became a primary-key probe per match). Valid while the matches are
    fewer than the cap (:func:`floor_call` checks).
    """
    n = len(params)
    p = [f"${k + 3}" for k in range(n)]
    limit, cap = f"${n + 3}", f"${n + 4}"
    hidden = (
        "ARRAY(SELECT c.id FROM components c WHERE "
        + _VISIBLE.format(principals="$2")
        + " IS NOT TRUE)"
    )
    page = (
        f"WITH hits AS (SELECT i.id FROM issues i WHERE i.component_id <> ALL ({hidden}) "
        f"AND {where.format(p=p)} LIMIT {cap}), "
        f"p AS (SELECT hits.id FROM hits ORDER BY hits.id DESC LIMIT {limit}) "
        f"SELECT (SELECT count(*) FROM hits) AS total, {ANSWER} "
        "FROM p JOIN issues i ON i.id = p.id ORDER BY i.id DESC"
    )
    return FloorSql(page, _count(where, n), params, one_pass=True)


async def floor_call(
    pool: asyncpg.Pool, floor: FloorSql, position: list[Any] | None, *, count: bool | None = None
) -> tuple[list[int], int | None]:
    """The hand-written page, and its capped count when the Model counts too.

    A later page's token carries the first page's total, so the Model does
    not count there (29ef341); the floor leaves it out as well, or the ratio
    would credit the Model with work it no longer does. ``count`` forces it.
    """
    if count is None:
        count = position is None
    total = None
    cap = limits.SEARCH_COUNT_CAP + 1
    async with pool.acquire() as conn:
        head = [CALLER.user_id, PRINCIPALS, *floor.params, PAGE_SIZE + 1]
        if floor.one_pass:
            if position is not None:
                msg = "a one-pass text floor has first pages only"
                raise ValueError(msg)
            rows = await conn.fetch(floor.page, *head, cap)
            total = rows[0]["total"] if rows else 0
            if total >= cap:
                msg = "a one-pass text floor is valid below the count cap only"
                raise RuntimeError(msg)
        else:
            rows = await conn.fetch(floor.page, *head, *(position or []))
            if count:
                total = await conn.fetchval(floor.count, PRINCIPALS, *floor.params, cap)
    return [r["id"] for r in rows[:PAGE_SIZE]], total
