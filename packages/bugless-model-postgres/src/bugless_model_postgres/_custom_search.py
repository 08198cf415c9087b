"""Custom fields in searches: terms and sort keys, read as each field's type says.

The query language cannot know which fields a tracker defines, so a custom
field term arrives with its values as typed. Before compiling, the backend
loads the definitions a query names (:func:`load_catalog`, one statement);
each term then becomes a subquery on the search rows of migration 0010
(``issue_custom_values``, one row per value with the issue's component and
status): equality for options, integers, days and users, a range for integer
and date comparisons, a scan of one field's values for text, any row for
``has:``; all served by its btree indexes. Sorting reads
``issues.custom_fields`` (the values as an issue holds them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import betterproto2

from bugless_core import custom_fields as cf
from bugless_core.errors import InvalidArgument
from bugless_model_postgres._convert import Conn
from bugless_model_postgres._custom_fields import field_from_row
from bugless_proto import v1

T = v1.CustomFieldType
Op = v1.SearchOperator
#: Binds a value, returns its placeholder (``Params.add`` of the compiler).
Bind = Callable[[Any, str], str]
#: Names an uncorrelated array expression once for the whole statement, returns
#: how to refer to it (``Params.share`` of the compiler).
Share = Callable[[str], str]

_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
#: Fields by id or by name as ``str.casefold`` folds it (``name_key``, migration 0019).
_NAMED = "{alias}id = ANY ({ids}::bigint[]) OR {alias}name_key = ANY ({names}::text[])"
CATALOG = f"SELECT * FROM custom_fields WHERE {_NAMED.format(alias='', ids='$1', names='$2')}"
#: The ids and versions of the definitions a catalog holds, re-read in a page's
#: own statement (``{ids}``, ``{names}``: the catalog's key; NULL for none).
#: Ids are never reused and every change of a definition raises its version,
#: so equal text means the same definitions (a rename, a new field of the
#: name, an option added or a field deleted all change it).
CATALOG_FINGERPRINT = (
    "(SELECT string_agg(f.id::text || '.' || f.version::text, ',' ORDER BY f.id) "
    "FROM custom_fields f WHERE " + _NAMED.format(alias="f.", ids="{ids}", names="{names}") + ")"
)
#: Catalogs a backend keeps (one per distinct set of names and ids searched for).
CATALOG_CACHE_ENTRIES = 256
#: Field ids and case-folded names a query's custom terms and sort keys name.
CatalogKey = tuple[tuple[int, ...], tuple[str, ...]]


@dataclass(frozen=True)
class CustomCatalog:
    """The definitions a query names, by id and by case-folded name."""

    by_id: dict[int, v1.CustomField] = field(default_factory=dict)
    by_name: dict[str, list[v1.CustomField]] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str | None:
        """What :data:`CATALOG_FINGERPRINT` reads while these are the definitions."""
        if not self.by_id:
            return None
        return ",".join(f"{i}.{self.by_id[i].version}" for i in sorted(self.by_id))

    def fields_of(self, term: v1.SearchTerm, where: str) -> list[v1.CustomField]:
        """The fields a term names; InvalidArgument when there are none."""
        if term.custom_field_id:
            found = self.by_id.get(term.custom_field_id)
            if found is None:
                raise _bad(
                    where, f"there is no custom field {term.custom_field_id}", _named_by(term)
                )
            return [found]
        fields = self.by_name.get(term.custom_field_name.casefold(), [])
        if not fields:
            raise _bad(
                where, f"there is no custom field named {term.custom_field_name!r}", _named_by(term)
            )
        return fields


def _bad(where: str, problem: str, custom_field: str = "") -> InvalidArgument:
    """The refusal of a query's part; ``custom_field`` names the term's field as the query did.

    ``metadata["custom_field"]`` (an id, or a name) lets a frontend point at the
    term in the text it parsed, as it does for its own syntax errors.
    """
    metadata = {"field": where} | ({"custom_field": custom_field} if custom_field else {})
    return InvalidArgument(f"{where}: {problem}", metadata=metadata)


def _named_by(term: v1.SearchTerm) -> str:
    """How ``term`` names its custom field: the id as text, or the name."""
    return str(term.custom_field_id) if term.custom_field_id else term.custom_field_name


def search_terms(node: v1.SearchNode | None) -> list[v1.SearchTerm]:
    """Every term of ``node``, under ANDs, ORs and NOTs alike."""
    found: list[v1.SearchTerm] = []
    stack = [node] if node is not None else []
    while stack:
        kind, value = betterproto2.which_one_of(stack.pop(), "kind")
        if kind in {"all_of", "any_of"} and isinstance(value, v1.SearchNodeList):
            stack.extend(value.nodes)
        elif kind == "negate" and isinstance(value, v1.SearchNode):
            stack.append(value)
        elif isinstance(value, v1.SearchTerm):
            found.append(value)
    return found


def _custom_terms(node: v1.SearchNode | None) -> list[v1.SearchTerm]:
    return [t for t in search_terms(node) if t.field is v1.SearchField.CUSTOM]


def catalog_key(query: v1.StructuredQuery) -> CatalogKey | None:
    """The field ids and names ``query``'s custom terms and sort keys name (None: none)."""
    terms = _custom_terms(query.filter)
    ids = {t.custom_field_id for t in terms if t.custom_field_id}
    ids |= {k.custom_field_id for k in query.order_by if k.custom_field_id}
    names = {t.custom_field_name.casefold() for t in terms if t.custom_field_name}
    if not ids and not names:
        return None
    return tuple(sorted(ids)), tuple(sorted(names))


async def load_catalog(conn: Conn, query: v1.StructuredQuery) -> CustomCatalog:
    """The definitions named by ``query``'s custom terms and sort keys."""
    key = catalog_key(query)
    return CustomCatalog() if key is None else await load_catalog_of(conn, key)


async def load_catalog_of(conn: Conn, key: CatalogKey) -> CustomCatalog:
    """The definitions of the field ids and names of ``key`` (one statement)."""
    catalog = CustomCatalog()
    for row in await conn.fetch(CATALOG, list(key[0]), list(key[1])):
        definition = field_from_row(row)
        catalog.by_id[definition.id] = definition
        catalog.by_name.setdefault(definition.name.casefold(), []).append(definition)
    return catalog


class CatalogCache:
    """Catalogs a backend loaded, reused until a page's statement finds them changed.

    Loading a query's definitions was a round trip of its own before each
    custom-field search page: ~10 % of the Model's CPU on ``"Found In":4.2
    is:open c:5+`` at 1,000,000 issues (py-spy of ``bugless model serve``),
    plus the statement's planning and the wait. A cached catalog is compiled
    from, and the page's statement re-reads :data:`CATALOG_FINGERPRINT` in
    its own snapshot; when that differs (a field renamed, added, changed or
    deleted, by any replica), the caller drops the entry, loads the
    definitions again and runs the page again. The page read before did not
    hold the catalog in its snapshot either (two statements, no
    transaction), so a page is never less current than before.
    """

    def __init__(self, entries: int = CATALOG_CACHE_ENTRIES) -> None:
        """Keep at most ``entries`` catalogs (the oldest one goes first)."""
        self._entries = entries
        self._catalogs: dict[CatalogKey, CustomCatalog] = {}

    def get(self, key: CatalogKey) -> CustomCatalog | None:
        """The catalog kept for ``key``, if any."""
        return self._catalogs.get(key)

    def put(self, key: CatalogKey, catalog: CustomCatalog) -> None:
        """Keep ``catalog`` for ``key``."""
        self._catalogs.pop(key, None)
        if len(self._catalogs) >= self._entries:
            del self._catalogs[next(iter(self._catalogs))]
        self._catalogs[key] = catalog

    def drop(self, key: CatalogKey) -> None:
        """Forget ``key``'s catalog (it changed)."""
        self._catalogs.pop(key, None)


def _key(definition: v1.CustomField) -> str:
    return str(int(definition.id))


#: Issues with a search row (migration 0010) matching ``{where}``.
_ROWS = "i.id IN (SELECT v.issue_id FROM issue_custom_values v WHERE {where})"
#: The same as a list of ids: the planner probes ``issues`` by primary key
#: for each (a semi-join would rather scan the other conditions' index,
#: which it cannot know selects 50 times as many rows). Only where the term
#: must hold (not under OR/NOT), where ``i.id = ANY`` is an index condition,
#: never a per-row search of the list.
_ROW_LIST = "ARRAY(SELECT v.issue_id FROM issue_custom_values v WHERE {where})"
#: Issues without a row of the given fields.
_NO_ROWS = "NOT EXISTS (SELECT 1 FROM issue_custom_values v WHERE v.issue_id = i.id AND {where})"
#: The search rows a row of a derived ``issues i`` carries itself, in its
#: ``custom_rows`` (jsonb: ``search_rows`` as objects), with the row's component
#: and status as a search row has them: a Watch's states of an issue as it
#: was (``_watch_query``), whose values are not the ones issue_custom_values holds.
ROW_VALUES = (
    "(SELECT r.field_id, r.value, r.number, r.folded, i.component_id, i.status "
    "FROM jsonb_to_recordset(i.custom_rows) "
    "AS r(field_id bigint, value text, number bigint, folded text))"
)


def custom_term_sql(
    term: v1.SearchTerm,
    catalog: CustomCatalog,
    bind: Bind,
    narrowing: str = "",
    *,
    required: bool = False,
    share: Share | None = None,
    row_values: bool = False,
) -> str:
    """The condition of one CUSTOM term (OR over the fields it names).

    Reads the search rows of migration 0010. ``narrowing`` is conditions on
    the row's ``v.component_id`` / ``v.status`` that the rest of the query
    imposes on the issue anyway (the caller, which sees the term's AND
    siblings, writes them): they make the component subtree and the status
    bounds of the same index range as the value, so the index yields only
    matching issues. A row always carries its issue's component and status,
    so they change nothing but speed (every ``narrowing`` parameter must
    be used: it is already bound). ``required``: the term is a conjunct of
    the whole filter (not under OR or NOT), so it may be a list of ids;
    ``share`` then names that list once for the statement (the page and
    the count read it once between them). ``row_values``: the rows of
    ``issues i`` carry their own search rows (:data:`ROW_VALUES`), read
    instead of issue_custom_values.
    """

    def some(rows: str) -> str:
        if row_values:
            return f"EXISTS (SELECT 1 FROM {ROW_VALUES} v WHERE {rows})"
        return _ROWS.format(where=rows)

    def matching(rows: str) -> str:
        if not required or row_values:
            return some(rows)
        listed = _ROW_LIST.format(where=rows)
        return f"i.id = ANY ({share(listed) if share is not None else listed})"

    where = "query.filter"
    fields = catalog.fields_of(term, where)
    ids = [int(f.id) for f in fields]
    if term.op in (Op.ANY, Op.NONE):
        rows = f"v.field_id = ANY ({bind(ids, 'bigint[]')}){narrowing}"
        if term.op is Op.NONE:
            return f"(NOT {some(rows)})" if row_values else _NO_ROWS.format(where=rows)
        return matching(rows)
    values = [betterproto2.which_one_of(v, "kind")[1] for v in term.values]
    users = list(term.resolved_users) or [""] * len(values)
    #: Fields by the condition on their rows: fields that share one are a single ANY.
    groups: dict[tuple[str, tuple[Any, ...]], list[int]] = {}
    problems: list[str] = []
    for definition in fields:
        for raw, user in zip(values, users, strict=True):
            try:
                shape = _condition(definition, term.op, str(raw), user)
            except InvalidArgument as exc:
                problems.append(exc.message.partition(": ")[2] or exc.message)
                continue
            groups.setdefault(shape, []).append(int(definition.id))
    if not groups or (len(fields) == 1 and problems):
        raise _bad(where, problems[0] if problems else "no value fits the field", _named_by(term))
    parts = []
    for (kind, args), field_ids in groups.items():
        bound_ids = bind(sorted(set(field_ids)), "bigint[]")
        if kind == "eq":
            condition = f"v.value = ANY ({bind(list(args), 'text[]')})"
        elif kind == "contains":
            condition = f"strpos(v.folded, {bind(args[0], 'text')}) > 0"
        elif kind == "number":
            condition = f"v.number {_COMPARE[args[0]]} {bind(args[1], 'bigint')}"
        else:  # "day"
            condition = f"v.value {_COMPARE[args[0]]} {bind(args[1], 'text')}"
        parts.append(f"v.field_id = ANY ({bound_ids}) AND {condition}{narrowing}")
    if len(parts) == 1:
        return matching(parts[0])
    return "(" + " OR ".join(some(p) for p in parts) + ")"


def _condition(
    definition: v1.CustomField, op: Op, raw: str, user: str
) -> tuple[str, tuple[Any, ...]]:
    """What a field's rows must hold for ``op raw``: a kind and its arguments."""
    name = f"custom field {definition.name!r} ({cf.TYPE_NAMES.get(definition.type, '?')})"
    if op in _COMPARE:
        if definition.type is T.INTEGER:
            number = cf.read_integer(raw)
            if number is None:
                raise _bad("value", f"{name} takes a whole number, not {raw!r}")
            return "number", (op, number)
        if definition.type is T.DATE:
            day = cf.read_day(raw)
            if day is None:
                raise _bad("value", f"{name} takes a day written YYYY-MM-DD, not {raw!r}")
            return "day", (op, day)
        raise _bad("op", f"{name} cannot be compared; only integer and date fields can")
    if definition.type is T.TEXT:
        # Contains, in any case: both sides folded by str.casefold (the
        # row's ``folded``, migration 0021), never by SQL's lower().
        return "contains", (raw.casefold(),)
    if definition.type is T.USER:
        if not user:
            raise _bad("value", f"{name}: no user named {raw!r}")
        raw = user
    normalized = cf.normalize_values(definition, [raw], "value")
    stored: Any = cf.to_stored(definition, normalized)
    items = stored if isinstance(stored, list) else [stored]
    return "eq", tuple(str(item) for item in items)


def custom_sort(key: v1.SortKey, catalog: CustomCatalog) -> list[tuple[str, str, bool]]:
    """ORDER BY expressions for a custom field: issues with a value first, then by it.

    Returns (expression, SQL type, descending) triples; every expression is
    NOT NULL, as keyset paging needs.
    """
    definition = catalog.by_id.get(key.custom_field_id)
    if definition is None:
        raise _bad(
            "query.order_by",
            f"there is no custom field {key.custom_field_id}",
            str(key.custom_field_id),
        )
    literal = f"'{int(definition.id)}'"
    has = (f"(i.custom_fields ? {literal})", "boolean", True)
    if definition.type is T.INTEGER:
        value = (f"coalesce((i.custom_fields ->> {literal})::bigint, 0)", "bigint", key.descending)
    else:
        value = (f"coalesce(i.custom_fields ->> {literal}, '')", "text", key.descending)
    return [has, value]
