"""Compile a StructuredQuery into one parameterised SQL statement.

Values only ever travel as ``$n`` parameters; identifiers, operators and sort
expressions come from the fixed tables below, chosen by enum value. The
statement reads ``issues i JOIN components c`` (a query with a full-text
term: ``issues i`` and the list of components hidden from the caller, see
:func:`_text_visibility`) and always carries the visibility condition (the
caller's principals overlap the component's precomputed effective-ACL
principals, or the component is open), so nothing invisible is ever returned
or counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import betterproto2

from bugless_core.issue_fields import CLOSED_STATUSES, OPEN_STATUSES
from bugless_core.search.enum_values import search_value_member
from bugless_model_postgres._custom_search import CustomCatalog, custom_sort, custom_term_sql
from bugless_model_postgres._people_terms import PEOPLE_FIELDS, people_term
from bugless_model_postgres._search_refs import component_term
from bugless_model_postgres._side_terms import attachment_term, mention_term
from bugless_model_postgres._visibility import COMPONENT_VISIBLE, HOTLIST_VISIBLE
from bugless_proto import v1

F = v1.SearchField
Op = v1.SearchOperator

_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
_TSV = {F.TEXT: "i.text_tsv", F.TITLE: "i.title_tsv", F.COMMENT: "i.comments_tsv"}
_USER_COLUMNS = {F.ASSIGNEE: "i.assignee", F.REPORTER: "i.reporter", F.VERIFIER: "i.verifier"}
#: Integer scalar columns: comparisons work directly; 0 means none.
_ID_COLUMNS = {F.ID: "i.id", F.PARENT: "i.parent_id", F.CANONICAL: "i.duplicate_of_id"}
_ARRAY_COLUMNS = {F.BLOCKING: "i.blocking_ids", F.BLOCKED_BY: "i.blocked_by_ids"}
_LEVEL_COLUMNS = {F.PRIORITY: "i.priority", F.SEVERITY: "i.severity"}
_TIME_COLUMNS = {F.CREATED: "i.created_at", F.MODIFIED: "i.modified_at"}
#: Issues below the given parents ($ an array), at any depth.
_DESCENDANTS = (
    "i.id = ANY (ARRAY(WITH RECURSIVE d(id, depth) AS ("
    "SELECT ch.id, 1 FROM issues ch WHERE ch.parent_id = ANY ({parents}) "
    "UNION SELECT ch.id, d.depth + 1 FROM issues ch JOIN d ON ch.parent_id = d.id "
    "WHERE d.depth < 10000) SELECT id FROM d))"
)
_SORT = {
    v1.SortField.ID: ("i.id", "bigint"),
    v1.SortField.CREATED: ("i.created_at", "timestamptz"),
    v1.SortField.MODIFIED: ("i.modified_at", "timestamptz"),
    v1.SortField.PRIORITY: ("i.priority", "smallint"),
    v1.SortField.SEVERITY: ("i.severity", "smallint"),
    v1.SortField.STATUS: ("i.status", "smallint"),
    v1.SortField.TITLE: ("i.title", "text"),
    v1.SortField.STARS: ("i.star_count", "bigint"),
}
#: Issue ``i``'s hotlists as their items are, or as the row carries them (``row_state``).
_HOTLISTS_OF = {
    False: "hotlist_items hi JOIN hotlists h ON h.id = hi.hotlist_id WHERE hi.issue_id = i.id",
    True: "unnest(i.hotlist_ids) hi(hotlist_id) JOIN hotlists h ON h.id = hi.hotlist_id WHERE TRUE",
}


@dataclass
class Params:
    """Positional parameters of the statement being built."""

    values: list[Any] = field(default_factory=list)
    user_id: str = ""
    #: The placeholders of the caller's admin flag and principals (a
    #: component path names a component as the caller is shown it).
    admin: str = ""
    viewers: str = ""
    _user: str = ""
    #: Definitions of the custom fields the query names.
    catalog: CustomCatalog = field(default_factory=CustomCatalog)
    #: Common table expressions the conditions refer to (``s0 AS (...)``).
    shared: list[str] = field(default_factory=list)
    #: A full-text term: GIN yields its matches in no order (and a phrase's
    #: each rechecked against the row), so the page is a top-N over the rows
    #: the capped count reads anyway, and should be taken from them.
    text: bool = False
    #: Hotlist and custom terms read the rows' ``i.hotlist_ids`` and
    #: ``i.custom_rows``, attachment and people-history terms what was there
    #: at ``i.version`` (see ``compile_search``).
    row_state: bool = False

    def user(self) -> str:
        """The caller's user id, bound on first use (unused ones have no type)."""
        if not self._user:
            self._user = self.add(self.user_id, "text")
        return self._user

    def share(self, ids: str) -> str:
        """Name an uncorrelated ``bigint[]`` once for the statement; return a reference to it.

        The page and the count of one statement then compute it once between
        them (a CTE referenced twice is computed once). The cast keeps
        ``x = ANY (reference)`` an array comparison, not a subquery's.
        """
        name = f"s{len(self.shared)}"
        self.shared.append(f"{name} AS (SELECT {ids} AS ids)")
        return f"(SELECT {name}.ids FROM {name})::bigint[]"

    def add(self, value: Any, cast: str = "") -> str:
        """Bind ``value``; return its placeholder (with a cast when given)."""
        self.values.append(value)
        return f"${len(self.values)}" + (f"::{cast}" if cast else "")


@dataclass(frozen=True)
class SortColumn:
    """One ORDER BY expression (from the fixed table) and its direction."""

    expression: str
    sql_type: str
    descending: bool


@dataclass(frozen=True)
class CompiledSearch:
    """The statements of one search and how to read their rows.

    Attributes:
        page_sql: Selects ``id`` and ``k0..kn`` (the sort keys) of one page;
            the page size (plus one) is bound after ``page_params``. It and
            ``count_sql`` begin with ``WITH`` + ``ctes`` when there are any.
        page_params: Parameters of ``page_sql`` before the limit.
        count_sql: Counts matches up to a cap bound after ``count_params``.
        count_params: Parameters of ``count_sql`` before the cap.
        sort: The sort columns, the id tie-breaker last.
        base: ``FROM ... WHERE`` of every match (no keyset), parameters as
            ``count_params``.
        admin: The placeholder of the caller's admin flag.
        viewers: The placeholder of the caller's principals.
        first_page: No position was given (the page starts at the first match).
        ctes: The common table expressions ``base`` refers to, comma-separated
            (empty when none), for a statement that embeds ``page_body``.
        page_body: ``page_sql`` without its ``WITH``.
        share_matches: The count's matches should also give the page
            (:func:`bugless_model_postgres._search_page.page_statement`): the
            query has a full-text term, whose matches the page and the count
            would otherwise each read (and, for a phrase, recheck) in full.
        keyset: The position condition (empty on a first page) written over
            ``hits.k0..kn`` instead of the columns, for a page taken from
            the count's matches.
        page_keys: ``page_body`` after its ``SELECT i.id,``: the sort keys
            and the rest, for a page that selects more than the id.
    """

    page_sql: str
    page_params: list[Any]
    count_sql: str
    count_params: list[Any]
    sort: list[SortColumn]
    base: str = ""
    admin: str = "$1::boolean"
    viewers: str = "$2::text[]"
    first_page: bool = True
    ctes: str = ""
    page_body: str = ""
    share_matches: bool = False
    keyset: str = ""
    page_keys: str = ""


def sort_columns(
    order_by: list[v1.SortKey], catalog: CustomCatalog | None = None
) -> list[SortColumn]:
    """The sort columns of a query; id, in the last key's direction, ends them."""
    columns: list[SortColumn] = []
    for k in order_by:
        if k.field is v1.SortField.CUSTOM:
            columns += [SortColumn(*c) for c in custom_sort(k, catalog or CustomCatalog())]
        else:
            columns.append(SortColumn(*_SORT[k.field], k.descending))
    if not columns:
        return [SortColumn("i.id", "bigint", descending=True)]
    if columns[-1].expression != "i.id":
        columns.append(SortColumn("i.id", "bigint", columns[-1].descending))
    return columns


def _after(columns: list[SortColumn], bound: list[str]) -> str:
    """Keyset condition: rows strictly after the position bound at ``bound`` in the sort order.

    Written as row comparisons so that it is an index bound, not a filter:
    ``(k0, k1, id) < ($a, $b, $c)`` when every key runs the same way. Mixed
    directions are split into runs of one direction; each run but the last
    contributes ``run >= position`` (a bound on the leading run that an index
    can use) and ``run > position OR (the rest is after)``. Sort columns are
    NOT NULL, so ``>=`` and not ``>`` means equal.
    """
    runs: list[tuple[bool, list[str], list[str]]] = []
    for column, value in zip(columns, bound, strict=True):
        if runs and runs[-1][0] == column.descending:
            runs[-1][1].append(column.expression)
            runs[-1][2].append(value)
        else:
            runs.append((column.descending, [column.expression], [value]))
    condition = ""
    for descending, expressions, values in reversed(runs):
        keys, at = _row(expressions), _row(values)
        strict = f"{keys} {'<' if descending else '>'} {at}"
        if not condition:
            condition = strict
        else:
            condition = f"{keys} {'<=' if descending else '>='} {at} AND ({strict} OR {condition})"
    return f"({condition})"


def _row(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "(" + ", ".join(items) + ")"


def compile_search(
    query: v1.StructuredQuery | None,
    caller: v1.Caller,
    principals: list[str],
    position: list[Any] | None,
    catalog: CustomCatalog | None = None,
    *,
    issues_from: Callable[[Callable[[Any, str], str]], str] | None = None,
    row_state: bool = False,
) -> CompiledSearch:
    """Compile ``query`` for ``caller``, resuming after ``position`` if given.

    ``catalog`` holds the custom fields the query names (:func:`load_catalog`).
    ``issues_from(bind)`` writes a derived table of rows shaped as issues'
    to read as ``issues i`` (``bind(value, cast)`` binds its values), with
    ``row_state`` their ``hotlist_ids`` for hotlist terms and their
    ``custom_rows`` for custom terms (:data:`._custom_search.ROW_VALUES`),
    and the attachments and the history up to their ``version``: a Watch
    judges an issue as it was before and after a change so (``_watch_query``).
    """
    query = query or v1.StructuredQuery()
    params = Params(user_id=caller.user_id, catalog=catalog or CustomCatalog())
    params.row_state = row_state
    admin = params.admin = params.add(caller.admin, "boolean")
    viewers = params.viewers = params.add(principals, "text[]")
    where = _node(query.filter, params, admin) if query.filter is not None else "TRUE"
    columns = sort_columns(list(query.order_by), params.catalog)
    source = "issues" if issues_from is None else issues_from(params.add)
    if params.text:
        base = f"FROM {source} i WHERE {_text_visibility(params, admin, viewers)} AND {where}"
    else:
        visible = COMPONENT_VISIBLE.format(admin=admin, principals=viewers, c="c")
        joined = f"FROM {source} i JOIN components c ON c.id = i.component_id"
        base = f"{joined} WHERE {visible} AND {where}"
    count_params = list(params.values)
    ctes = ", ".join(params.shared)
    with_ = f"WITH {ctes} " if ctes else ""
    count_sql = (
        f"{with_}SELECT count(*) FROM (SELECT 1 {base} LIMIT ${len(count_params) + 1}) AS matches"
    )
    keyset = hits_keyset = ""
    if position is not None:
        values = _decode_position(columns, position)
        bound = [params.add(v, c.sql_type) for c, v in zip(columns, values, strict=True)]
        keyset = " AND " + _after(columns, bound)
        hits = [SortColumn(f"hits.k{n}", c.sql_type, c.descending) for n, c in enumerate(columns)]
        hits_keyset = _after(hits, bound)
    order = ", ".join(f"{c.expression} {'DESC' if c.descending else 'ASC'}" for c in columns)
    keys = ", ".join(f"{c.expression} AS k{n}" for n, c in enumerate(columns))
    page_keys = f"{keys} {base}{keyset} ORDER BY {order} LIMIT ${len(params.values) + 1}"
    page_body = f"SELECT i.id, {page_keys}"
    return CompiledSearch(
        with_ + page_body,
        params.values,
        count_sql,
        count_params,
        columns,
        base=base,
        admin=admin,
        viewers=viewers,
        first_page=position is None,
        ctes=ctes,
        page_body=page_body,
        share_matches=params.text,
        keyset=hits_keyset,
        page_keys=page_keys,
    )


#: Up to this many components hidden from the caller, a text query tests each
#: candidate's component against their list; beyond it, by a probe per row.
HIDDEN_LIST_MAX = 100


def _text_visibility(params: Params, admin: str, principals: str) -> str:
    """Visibility of a query with a full-text term, without joining ``components``.

    PostgreSQL estimates one row for any multi-word tsquery, so the join to
    ``components`` became a nested loop of a primary-key probe per candidate
    (2,904 for the phrase at 1,000,000 issues, ~2.5 ms of the page's ~20),
    where a hash join would cost nothing. Instead, the ids of the components
    the caller may *not* view are listed once per statement (none for an
    admin or where every component is open to the caller, the common case)
    and each candidate's ``component_id`` must be none of them: a scan of a
    short array, no probe. An issue's component always exists (foreign key),
    so this is the join's condition. Past :data:`HIDDEN_LIST_MAX` hidden
    components the scan would cost more than the probe, so the condition
    probes as before (a ``CASE`` decided once per statement, on the list's
    length). Other queries keep the join: the planner estimates their rows
    and hashes ``components`` when that pays (bench/JOURNAL.md, "Visibility
    of text queries").
    """
    visible = COMPONENT_VISIBLE.format(admin=admin, principals=principals, c="hc")
    hidden = params.share(f"ARRAY(SELECT hc.id FROM components hc WHERE {visible} IS NOT TRUE)")
    probe = COMPONENT_VISIBLE.format(admin=admin, principals=principals, c="vc")
    return (
        f"(CASE WHEN cardinality({hidden}) <= {HIDDEN_LIST_MAX} "
        f"THEN i.component_id <> ALL ({hidden}) "
        "ELSE EXISTS (SELECT 1 FROM components vc WHERE vc.id = i.component_id "
        f"AND {probe}) END)"
    )


def resumed(compiled: CompiledSearch, position: list[Any]) -> CompiledSearch:
    """``compiled`` (a search compiled with a position) resuming after ``position`` instead.

    A position is bound last, after every parameter of the count
    (``count_params``), and its statement names it only by placeholder, so
    the statement stays and only those values change: what
    :func:`compile_search` returns for ``position``, without compiling
    (``tests/test_search_plans.py`` compares the two).

    Raises:
        ValueError, TypeError: ``position`` does not fit the sort (as
            :func:`compile_search` raises for it).
    """
    if compiled.first_page:
        msg = "a first page's search has no position to replace"
        raise ValueError(msg)
    values = _decode_position(compiled.sort, position)
    return replace(compiled, page_params=[*compiled.count_params, *values])


def _decode_position(columns: list[SortColumn], position: list[Any]) -> list[Any]:
    values: list[Any] = []
    for column, raw in zip(columns, position, strict=True):
        values.append(datetime.fromisoformat(raw) if column.sql_type == "timestamptz" else raw)
    return values


def encode_position(columns: list[SortColumn], row: Any) -> list[Any]:
    """The keyset position of a page's last row, JSON-safe."""
    out: list[Any] = []
    for n in range(len(columns)):
        value = row[f"k{n}"]
        out.append(value.isoformat() if isinstance(value, datetime) else value)
    return out


def _node(
    node: v1.SearchNode,
    params: Params,
    admin: str,
    narrowing: tuple[v1.SearchTerm, ...] = (),
    required: bool = True,
) -> str:
    """SQL of ``node``; ``narrowing`` are the component and status terms of enclosing ANDs.

    Whatever the node below says, a matching issue satisfies those terms, so
    a custom-field subquery anywhere below may repeat them on its rows (see
    :func:`custom_term_sql`; under OR and NOT too: ``A AND f(X AND A)``
    equals ``A AND f(X)`` for any f). ``required``: every match satisfies
    ``node`` (it is under ANDs only).
    """
    kind, value = betterproto2.which_one_of(node, "kind")
    if kind == "all_of" and isinstance(value, v1.SearchNodeList):
        inner = narrowing + _narrowing_terms(value.nodes)
        parts = [_node(n, params, admin, inner, required) for n in value.nodes]
        return "(" + " AND ".join(parts) + ")" if parts else "TRUE"
    if kind == "any_of" and isinstance(value, v1.SearchNodeList):
        parts = [_node(n, params, admin, narrowing, required=False) for n in value.nodes]
        return "(" + " OR ".join(parts) + ")" if parts else "FALSE"
    if kind == "negate" and isinstance(value, v1.SearchNode):
        return f"(NOT {_node(value, params, admin, narrowing, required=False)})"
    if kind == "term" and isinstance(value, v1.SearchTerm):
        if value.field is F.CUSTOM:
            rows = "".join(
                " AND "
                + (
                    component_term(t, params.add, "v.component_id", params.admin, params.viewers)
                    if t.field is F.COMPONENT
                    else _status(t, params, "v.status")
                )
                for t in narrowing
            )
            return custom_term_sql(
                value,
                params.catalog,
                params.add,
                rows,
                required=required,
                share=params.share,
                row_values=params.row_state,
            )
        return _term(value, params, admin)
    return "TRUE"


def _narrowing_terms(nodes: list[v1.SearchNode]) -> tuple[v1.SearchTerm, ...]:
    """The component and status terms among ``nodes`` (each an equality)."""
    found: list[v1.SearchTerm] = []
    for node in nodes:
        kind, term = betterproto2.which_one_of(node, "kind")
        if (
            kind == "term"
            and isinstance(term, v1.SearchTerm)
            and term.op is Op.EQ
            and term.field in (F.COMPONENT, F.STATUS, F.STATUS_CLASS)
        ):
            found.append(term)
    return tuple(found)


def _status(term: v1.SearchTerm, params: Params, column: str) -> str:
    if term.field is F.STATUS:
        return f"{column} = ANY ({params.add(_stored(term), 'smallint[]')})"
    numbers = sorted(
        {int(s) for v in _values(term) for s in (OPEN_STATUSES if v == "open" else CLOSED_STATUSES)}
    )
    return f"{column} = ANY ({params.add(numbers, 'smallint[]')})"


def _values(term: v1.SearchTerm) -> list[Any]:
    return [betterproto2.which_one_of(v, "kind")[1] for v in term.values]


def _stored(term: v1.SearchTerm) -> list[int]:
    """An enum-valued term's members as the columns store them (the enum's number)."""
    return [int(search_value_member(term.field, v)) for v in term.values]


def _term(term: v1.SearchTerm, params: Params, admin: str) -> str:
    f, op = term.field, term.op
    values = _values(term)
    if f is F.ATTACHMENT:
        return attachment_term(op, values, params.add, row_state=params.row_state)
    if f is F.CLOSED:
        if op in (Op.ANY, Op.NONE):
            return "i.closed_at IS NOT NULL" if op is Op.ANY else "i.closed_at IS NULL"
        if op in _COMPARE:
            bound = params.add(values[0], "timestamptz")
            return f"coalesce(i.closed_at {_COMPARE[op]} {bound}, false)"
        return f"i.closed_at = ANY ({params.add(values, 'timestamptz[]')})"
    if f is F.MENTION:
        return mention_term(op, values, params.add)
    if f in PEOPLE_FIELDS:
        return people_term(f, op, values, params.add, row_state=params.row_state)
    if f is F.PARENT and term.include_subtree and op is Op.EQ:
        return _DESCENDANTS.format(parents=params.add(values, "bigint[]"))
    if f in _TSV:
        if op is Op.ANY:
            return "TRUE"
        if op is Op.NONE:
            return "FALSE"
        parser = "phraseto_tsquery" if term.phrase else "plainto_tsquery"
        params.text = True
        parts = [f"{_TSV[f]} @@ {parser}('english', {params.add(v, 'text')})" for v in values]
        return "(" + " OR ".join(parts) + ")"
    if f is F.EXTERNAL_ID:
        if op in (Op.ANY, Op.NONE):
            return "i.external_id <> ''" if op is Op.ANY else "i.external_id = ''"
        return f"i.external_id = ANY ({params.add(list(values), 'text[]')})"
    if f in (F.STATUS, F.TYPE, F.STATUS_CLASS):
        if op in (Op.ANY, Op.NONE):
            return "TRUE" if op is Op.ANY else "FALSE"
        if f is F.TYPE:
            return f"i.type = ANY ({params.add(_stored(term), 'smallint[]')})"
        return _status(term, params, "i.status")
    if f in _USER_COLUMNS:
        column = _USER_COLUMNS[f]
        if op is Op.ANY:
            return f"{column} <> ''"
        if op is Op.NONE:
            return f"{column} = ''"
        match = f"{column} = ANY ({params.add(values, 'text[]')})"
        # Spelled out so the partial indexes (WHERE column <> '') match
        # generic plans too, where the planner cannot see the values.
        return match if "" in values else f"({match} AND {column} <> '')"
    if f is F.CC:
        if op is Op.ANY:
            return "cardinality(i.cc) > 0"
        if op is Op.NONE:
            return "cardinality(i.cc) = 0"
        return f"i.cc && {params.add(values, 'text[]')}"
    if f in _LEVEL_COLUMNS:
        column = _LEVEL_COLUMNS[f]
        if op in (Op.ANY, Op.NONE):
            return "TRUE" if op is Op.ANY else "FALSE"
        stored = _stored(term)
        if op in _COMPARE:
            return f"{column} {_COMPARE[op]} {params.add(stored[0], 'smallint')}"
        return f"{column} = ANY ({params.add(stored, 'smallint[]')})"
    if f is F.COMPONENT:
        if op in (Op.ANY, Op.NONE):
            return "TRUE" if op is Op.ANY else "FALSE"
        return component_term(term, params.add, "i.component_id", params.admin, params.viewers)
    if f is F.HOTLIST:
        visible = HOTLIST_VISIBLE.format(h="h", admin=admin, user=params.user())
        hotlists = _HOTLISTS_OF[params.row_state]
        member = f"EXISTS (SELECT 1 FROM {hotlists} AND {visible}"
        if op is Op.ANY:
            return member + ")"
        if op is Op.NONE:
            return f"(NOT {member}))"
        return f"{member} AND hi.hotlist_id = ANY ({params.add(values, 'bigint[]')}))"
    if f in _ID_COLUMNS:
        column = _ID_COLUMNS[f]
        if op is Op.ANY:
            return f"{column} <> 0"
        if op is Op.NONE:
            return f"{column} = 0"
        if op in _COMPARE:
            return f"({column} <> 0 AND {column} {_COMPARE[op]} {params.add(values[0], 'bigint')})"
        return f"{column} = ANY ({params.add(values, 'bigint[]')})"
    if f is F.STAR_COUNT:
        if op in (Op.ANY, Op.NONE):
            return "i.star_count > 0" if op is Op.ANY else "i.star_count = 0"
        if op in _COMPARE:
            return f"i.star_count {_COMPARE[op]} {params.add(values[0], 'bigint')}"
        return f"i.star_count = ANY ({params.add(values, 'bigint[]')})"
    if f in _ARRAY_COLUMNS:
        column = _ARRAY_COLUMNS[f]
        if op is Op.ANY:
            return f"cardinality({column}) > 0"
        if op is Op.NONE:
            return f"cardinality({column}) = 0"
        if op in _COMPARE:
            bound = params.add(values[0], "bigint")
            return (
                f"EXISTS (SELECT 1 FROM unnest({column}) AS r(x) WHERE r.x {_COMPARE[op]} {bound})"
            )
        return f"{column} && {params.add(values, 'bigint[]')}"
    if f in _TIME_COLUMNS:
        column = _TIME_COLUMNS[f]
        if op in (Op.ANY, Op.NONE):
            return "TRUE" if op is Op.ANY else "FALSE"
        if op in _COMPARE:
            return f"{column} {_COMPARE[op]} {params.add(values[0], 'timestamptz')}"
        return f"{column} = ANY ({params.add(values, 'timestamptz[]')})"
    msg = f"search field {f!r} has no SQL translation"
    raise ValueError(msg)
