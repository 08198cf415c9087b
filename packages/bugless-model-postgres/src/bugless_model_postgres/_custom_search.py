"""Custom fields in searches: terms and sort keys, read as each field's type says.

The query language cannot know which fields a tracker defines, so a custom
field term arrives with its values as typed. Before compiling, the backend
loads the definitions a query names (:func:`load_catalog`, one statement);
each term then becomes conditions on ``issues.custom_fields``: containment
(``@>``) for options, integers, days and users, key existence (``?``) for
``has:``, both answered by the column's GIN index, and text or range
conditions under a key-existence guard so the index still narrows them.
"""

from __future__ import annotations

import json
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

_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
CATALOG = """
SELECT * FROM custom_fields WHERE id = ANY ($1::bigint[]) OR lower(name) = ANY ($2::text[])
"""


@dataclass(frozen=True)
class CustomCatalog:
    """The definitions a query names, by id and by case-folded name."""

    by_id: dict[int, v1.CustomField] = field(default_factory=dict)
    by_name: dict[str, list[v1.CustomField]] = field(default_factory=dict)

    def fields_of(self, term: v1.SearchTerm, where: str) -> list[v1.CustomField]:
        """The fields a term names; InvalidArgument when there are none."""
        if term.custom_field_id:
            found = self.by_id.get(term.custom_field_id)
            if found is None:
                raise _bad(where, f"there is no custom field {term.custom_field_id}")
            return [found]
        fields = self.by_name.get(term.custom_field_name.casefold(), [])
        if not fields:
            raise _bad(where, f"there is no custom field named {term.custom_field_name!r}")
        return fields


def _bad(where: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {problem}", metadata={"field": where})


def _custom_terms(node: v1.SearchNode | None) -> list[v1.SearchTerm]:
    found: list[v1.SearchTerm] = []
    stack = [node] if node is not None else []
    while stack:
        kind, value = betterproto2.which_one_of(stack.pop(), "kind")
        if kind in {"all_of", "any_of"} and isinstance(value, v1.SearchNodeList):
            stack.extend(value.nodes)
        elif kind == "negate" and isinstance(value, v1.SearchNode):
            stack.append(value)
        elif isinstance(value, v1.SearchTerm) and value.field is v1.SearchField.CUSTOM:
            found.append(value)
    return found


async def load_catalog(conn: Conn, query: v1.StructuredQuery) -> CustomCatalog:
    """The definitions named by ``query``'s custom terms and sort keys."""
    terms = _custom_terms(query.filter)
    ids = {t.custom_field_id for t in terms if t.custom_field_id}
    ids |= {k.custom_field_id for k in query.order_by if k.custom_field_id}
    names = {t.custom_field_name.casefold() for t in terms if t.custom_field_name}
    if not ids and not names:
        return CustomCatalog()
    catalog = CustomCatalog()
    for row in await conn.fetch(CATALOG, sorted(ids), sorted(names)):
        definition = field_from_row(row)
        catalog.by_id[definition.id] = definition
        catalog.by_name.setdefault(definition.name.casefold(), []).append(definition)
    return catalog


def _key(definition: v1.CustomField) -> str:
    return str(int(definition.id))


def custom_term_sql(term: v1.SearchTerm, catalog: CustomCatalog, bind: Bind) -> str:
    """The condition of one CUSTOM term (OR over the fields it names)."""
    where = "query.filter"
    fields = catalog.fields_of(term, where)
    if term.op in (Op.ANY, Op.NONE):
        has = " OR ".join(f"i.custom_fields ? {bind(_key(f), 'text')}" for f in fields)
        return f"({has})" if term.op is Op.ANY else f"(NOT ({has}))"
    values = [betterproto2.which_one_of(v, "kind")[1] for v in term.values]
    users = list(term.resolved_users) or [""] * len(values)
    parts: list[str] = []
    problems: list[str] = []
    for definition in fields:
        for raw, user in zip(values, users, strict=True):
            try:
                part = _condition(definition, term.op, str(raw), user, bind)
            except InvalidArgument as exc:
                problems.append(exc.message.partition(": ")[2] or exc.message)
                continue
            parts.append(part)
    if not parts or (len(fields) == 1 and problems):
        raise _bad(where, problems[0] if problems else "no value fits the field")
    return "(" + " OR ".join(parts) + ")"


def _condition(definition: v1.CustomField, op: Op, raw: str, user: str, bind: Bind) -> str:
    key = _key(definition)
    name = f"custom field {definition.name!r} ({cf.TYPE_NAMES.get(definition.type, '?')})"
    if op in _COMPARE or definition.type is T.TEXT:
        guard = f"i.custom_fields ? {bind(key, 'text')}"
    if op in _COMPARE:
        if definition.type is T.INTEGER:
            number = cf.read_integer(raw)
            if number is None:
                raise _bad("value", f"{name} takes a whole number, not {raw!r}")
            return (
                f"({guard} AND (i.custom_fields ->> {bind(key, 'text')})::bigint "
                f"{_COMPARE[op]} {bind(number, 'bigint')})"
            )
        if definition.type is T.DATE:
            day = cf.read_day(raw)
            if day is None:
                raise _bad("value", f"{name} takes a day written YYYY-MM-DD, not {raw!r}")
            return (
                f"({guard} AND (i.custom_fields ->> {bind(key, 'text')}) "
                f"{_COMPARE[op]} {bind(day, 'text')})"
            )
        raise _bad("op", f"{name} cannot be compared; only integer and date fields can")
    if definition.type is T.TEXT:
        return (
            f"({guard} AND strpos(lower(i.custom_fields ->> {bind(key, 'text')}), "
            f"lower({bind(raw, 'text')})) > 0)"
        )
    if definition.type is T.USER:
        if not user:
            raise _bad("value", f"{name}: no user named {raw!r}")
        raw = user
    normalized = cf.normalize_values(definition, [raw], "value")
    stored: Any = cf.to_stored(definition, normalized)
    return f"i.custom_fields @> {bind(json.dumps({key: stored}), 'jsonb')}"


def custom_sort(key: v1.SortKey, catalog: CustomCatalog) -> list[tuple[str, str, bool]]:
    """ORDER BY expressions for a custom field: issues with a value first, then by it.

    Returns (expression, SQL type, descending) triples; every expression is
    NOT NULL, as keyset paging needs.
    """
    definition = catalog.by_id.get(key.custom_field_id)
    if definition is None:
        raise _bad("query.order_by", f"there is no custom field {key.custom_field_id}")
    literal = f"'{int(definition.id)}'"
    has = (f"(i.custom_fields ? {literal})", "boolean", True)
    if definition.type is T.INTEGER:
        value = (f"coalesce((i.custom_fields ->> {literal})::bigint, 0)", "bigint", key.descending)
    else:
        value = (f"coalesce(i.custom_fields ->> {literal}, '')", "text", key.descending)
    return [has, value]
