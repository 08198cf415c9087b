"""One search page in one statement: the page's issues, their columns and the capped count.

A page used to take five round trips in a read-only REPEATABLE READ
transaction (BEGIN, the page's ids, the count, the issues' columns, the
custom field names, COMMIT). A single statement reads one snapshot by itself,
so the same answer comes from one round trip: the count is a one-row
subquery, the page (:attr:`CompiledSearch.page_keys`, planned on its own as
before: a CTE with a LIMIT, its ids and its component's ACL) is joined back
to ``issues`` for the columns the response carries, and each issue's
custom field names ride along as a ``jsonb`` column. On a 1,000,000-issue
database this is most of what stood between a page through the Model and
the hand-written SQL floor (bench/README.md, "Search at 1,000,000 issues").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from bugless_model_postgres._convert import caller_role, issue_from_row
from bugless_model_postgres._custom_search import CATALOG_FINGERPRINT, CatalogKey, CustomCatalog
from bugless_model_postgres._custom_values import load_values, value_messages
from bugless_model_postgres._issue_projection import projection
from bugless_model_postgres._search import CompiledSearch
from bugless_model_postgres._search_refs import QueryReferences, seen_column
from bugless_proto import v1

T = TypeVar("T")


def page_statement(
    compiled: CompiledSearch,
    *,
    summary: bool,
    fields: frozenset[str] = frozenset(),
    counted: bool = True,
    from_matches: bool | None = None,
    guarded: bool = False,
    checked: QueryReferences | None = None,
) -> tuple[str, int]:
    """The statement of one page and the number of parameters it takes before its own three.

    Its own parameters follow :attr:`CompiledSearch.page_params`: the page
    size plus one, the count cap plus one, the caller's user id (hotlists
    and stars are the caller's). Rows come in page order, each with
    ``total`` (the capped count, the same on every row); a page without
    issues is one row with ``total`` and NULL everywhere else.

    On a first page that is not full, the page holds every match, so its
    own row count is the total and the count statement does not run (a
    ``CASE`` branch not taken; PostgreSQL evaluates the uncorrelated count
    only when asked for its value). Selective queries, whose count cost as
    much as their page, are most of those. A query with a full-text term
    reads its matches once for both instead (:func:`_page_from_matches`).

    ``fields`` (a request's read mask; empty: every field) leaves the other
    columns unread and skips the per-row subqueries of the fields it does not
    name, as every masked read does (:func:`._issue_projection.projection`).

    ``counted=False`` leaves the count out (``total`` is NULL): a later page
    whose token carries the total its first page counted reports that one
    (bench/JOURNAL.md, "Carrying the total"). On 1,000,000 issues the capped
    count of ``is:open`` read 10,001 index rows on every page, two thirds of
    the hand-written floor's work. A page taken from the count's matches
    (:func:`_page_from_matches`) counts anyway: its page needs them.

    ``from_matches`` (default: whenever the query allows it,
    :attr:`CompiledSearch.share_matches`) takes the page from the count's
    matches; such a statement holds no page when they reach the cap (its
    ``total`` is then above the cap), and the caller runs the page on its
    own: the same query with ``from_matches=False`` and ``counted=False``.

    ``guarded``: the query was compiled from a cached catalog of custom
    field definitions (:class:`._custom_search.CatalogCache`); the rows
    carry ``catalog_fresh``, whether the definitions are still those, read
    in the statement's own snapshot. It takes three parameters more (see
    :func:`page_arguments`).

    ``checked``: the components and hotlists a first page's query names; the
    rows carry ``refs_seen``, those the caller may see
    (:func:`._search_refs.seen_column`), a parameter more per kind of
    reference after the others (:func:`._search_refs.seen_arguments`).
    """
    n = len(compiled.page_params)
    # compiled.page_sql binds the page size plus one at $n+1 already.
    limit, cap, user = f"${n + 1}::bigint", f"${n + 2}", f"${n + 3}::text"
    admin = compiled.admin
    keys = ", ".join(f"p.k{k}" for k in range(len(compiled.sort)))
    order = ", ".join(
        f"r.k{k} {'DESC' if c.descending else 'ASC'}" for k, c in enumerate(compiled.sort)
    )
    selected = projection(fields, summary=summary)
    count = f"(SELECT count(*) FROM (SELECT 1 {compiled.base} LIMIT {cap}) AS matches)"
    # The page carries its component's ACL (its scan joins components for
    # visibility anyway): only issues are joined back for the columns. A
    # text query's scan does not join components (see _search._text_visibility).
    page, hits = f"SELECT i.id, c.effective_acl, {compiled.page_keys}", ""
    acl, components = "p.effective_acl", ""
    if compiled.share_matches:
        page = f"SELECT i.id, {compiled.page_keys}"
        acl, components = "c.effective_acl", "JOIN components c ON c.id = i.component_id"
    if compiled.share_matches if from_matches is None else from_matches:
        hits, page, count = _page_from_matches(compiled, limit, cap)
    elif not counted:
        # Still names the cap parameter: a statement must use all it is given.
        count = f"(CASE WHEN false THEN {cap}::bigint END)"
    elif compiled.first_page:
        on_page = "(SELECT count(*) FROM p)"
        count = f"CASE WHEN {on_page} < {limit} THEN {on_page} ELSE {count} END"
    fresh = ""
    if guarded:
        fingerprint = CATALOG_FINGERPRINT.format(ids=f"${n + 4}", names=f"${n + 5}")
        fresh = f"({fingerprint} IS NOT DISTINCT FROM ${n + 6}::text) AS catalog_fresh, "
    if checked:
        seen = seen_column(admin, compiled.viewers, user, n + (7 if guarded else 4), checked)
        fresh += f"{seen} AS refs_seen, "
    shared = ", ".join(c for c in (compiled.ctes, hits) if c)
    shared += ", " if shared else ""
    sql = f"""
WITH {shared}p AS ({page})
SELECT m.total, {fresh}r.* FROM (SELECT {count} AS total) AS m LEFT JOIN (
    SELECT {keys}, {selected.columns}, {acl} AS effective_acl,
           {selected.hotlists.format(admin=admin, user=user)} AS visible_hotlist_ids,
           {selected.starred.format(user=user)} AS starred,
           {selected.muted.format(user=user)} AS muted,
           {selected.names.format()} AS custom_field_names,
           {selected.has_children} AS has_children, {selected.has_duplicates} AS has_duplicates
      FROM p
      JOIN issues i ON i.id = p.id
      {components}
) AS r ON TRUE
ORDER BY {order}
"""
    return sql, n


def _page_from_matches(compiled: CompiledSearch, limit: str, cap: str) -> tuple[str, str, str]:
    """The CTEs, page and count of a page taken from the capped count's matches.

    For queries with a full-text term. GIN returns matches in no order, so
    the page was a top-N over every match, read apart from the count's read
    of the same rows; and a phrase (``<->``) is rechecked on each row (GIN
    keeps no positions), reading the row's ``text_tsv``, often out of line.
    On 1,000,000 issues ``"connection reset by peer"`` rechecked 2,904 rows
    twice per page, most of the statement's time (bench/JOURNAL.md, "Phrase
    search at 1M"). Here the count's matches (``hits``, up to the cap plus
    one, with their sort keys) are read once; when they are all the matches
    (fewer than the cap plus one), the page is their first rows after the
    position, in page order.
    Otherwise the statement holds no page, and the caller runs it on its own
    (:func:`page_statement`). It used to be a ``UNION ALL`` branch here, run
    only then (a one-time filter), but planned on every page: ~0.4-0.6 ms of
    each text page's planning at 1,000,000 issues, most text pages being
    below the cap (bench/JOURNAL.md, "Text pages without the fallback
    branch"). Returns the CTEs (``hits``, ``found``), the page and the count
    expression.
    """
    keys = ", ".join(f"{c.expression} AS k{k}" for k, c in enumerate(compiled.sort))
    hit_keys = ", ".join(f"hits.k{k}" for k in range(len(compiled.sort)))
    order = ", ".join(
        f"hits.k{k} {'DESC' if c.descending else 'ASC'}" for k, c in enumerate(compiled.sort)
    )
    after = f" AND {compiled.keyset}" if compiled.keyset else ""
    every = "(SELECT found.n FROM found)"
    ctes = (
        f"hits AS (SELECT i.id, {keys} {compiled.base} LIMIT {cap}), "
        "found AS (SELECT count(*) AS n FROM hits)"
    )
    page = (
        f"SELECT hits.id, {hit_keys} FROM hits WHERE {every} < {cap}::bigint{after} "
        f"ORDER BY {order} LIMIT {limit}"
    )
    return ctes, page, every


def page_arguments(
    compiled: CompiledSearch,
    size: int,
    cap: int,
    user_id: str,
    guard: tuple[CatalogKey, CustomCatalog] | None = None,
) -> list[Any]:
    """The arguments of :func:`page_statement`'s statement (``guard``: a guarded one's).

    A checked one's take :func:`._search_refs.seen_arguments` after them.
    """
    args = [*compiled.page_params, size + 1, cap + 1, user_id]
    if guard is not None:
        (ids, names), catalog = guard
        args += [list(ids), list(names), catalog.fingerprint]
    return args


def page_issues(
    caller: v1.Caller, rows: Sequence[asyncpg.Record], size: int
) -> tuple[list[v1.Issue], int | None, bool]:
    """The page's issues the caller may view, the capped count's raw value, and whether more follow.

    The count is None when the statement left it out (``counted=False``).

    The statement already filters by visibility; the role check on each
    row's effective ACL is the one every issue read makes (as
    :func:`bugless_model_postgres._context.fetch_issue_rows` does).
    """
    total: int | None = rows[0]["total"]
    if rows[0]["id"] is None:
        return [], total, False
    roles: dict[Any, v1.Role | None] = {}
    issues: list[v1.Issue] = []
    # A page's issues mostly hold the same few custom values and field names
    # (a custom-field query's, all of them): each distinct JSON text is
    # parsed once per page. The parsed dicts are only read.
    stored_by_text: dict[str, dict[str, Any]] = {}
    known_by_text: dict[str, Mapping[int, tuple[str, int]]] = {}
    for row in rows[:size]:
        acl = row["effective_acl"]
        key = acl if isinstance(acl, str) else json.dumps(acl, sort_keys=True)
        if key not in roles:
            roles[key] = caller_role(caller, acl)
        if roles[key] is None:
            continue
        issue = issue_from_row(row, row["visible_hotlist_ids"])
        names = row["custom_field_names"]
        if names is not None:
            stored = _parsed(stored_by_text, row["custom_fields"], load_values)
            if stored:
                issue.custom_fields = value_messages(stored, _parsed(known_by_text, names, _known))
        issues.append(issue)
    return issues, total, len(rows) > size


def _parsed(seen: dict[str, T], raw: Any, parse: Callable[[Any], T]) -> T:
    """``parse(raw)``, once per distinct text ``raw`` (a decoded value: every time)."""
    if not isinstance(raw, str):
        return parse(raw)
    found = seen.get(raw)
    if found is None:
        found = seen[raw] = parse(raw)
    return found


def _known(raw: str | Mapping[str, Any]) -> dict[int, tuple[str, int]]:
    names = json.loads(raw) if isinstance(raw, str) else raw
    return {int(k): (v[0], v[1]) for k, v in names.items()}
