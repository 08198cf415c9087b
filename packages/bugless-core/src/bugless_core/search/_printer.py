"""Writing a query tree back out: as query text, as an explanation, as JSON.

:func:`format_query` is the inverse of the parser: ``parse_query(format_query(q))
== q`` for every tree, which is what lets the web UI rewrite a query (add a
term, change the sort) and show the user text that means exactly that. It writes
canonical names (``assignee``, not ``a``), ``:`` for equality, and parentheses
only where the structure needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bugless_core.search._ast import (
    And,
    CustomFieldTerm,
    DateValue,
    EnumValue,
    FieldTerm,
    IntValue,
    Node,
    Not,
    Or,
    Query,
    RelativeDateValue,
    SortSpec,
    TextTerm,
    TextValue,
    TimestampValue,
    UserValue,
    Value,
    is_bare_value,
)
from bugless_core.search._fields import (
    CUSTOM_FIELD_PREFIX,
    FIELD_SPECS,
    MAX_LEVEL,
    Field,
    Operator,
    SortField,
    TextField,
    ValueKind,
    query_name,
)

_SYMBOLS: dict[Operator, str] = {
    Operator.EQ: ":",
    Operator.LT: "<",
    Operator.LE: "<=",
    Operator.GT: ">",
    Operator.GE: ">=",
}


def format_query(query: Query) -> str:
    """The canonical query text for ``query``; parsing it gives ``query`` back.

    The sort, if any, comes last (``... sort:priority,-modified``).
    """
    parts: list[str] = []
    if query.filter is not None:
        parts.append(_format_node(query.filter))
    if query.sort:
        parts.append(f"sort:{','.join(_format_sort(s) for s in query.sort)}")
    return " ".join(parts)


def _format_node(node: Node) -> str:
    match node:
        case TextTerm():
            return _format_text(node)
        case FieldTerm():
            return _format_term(node)
        case CustomFieldTerm():
            return _format_custom(node)
        case Not(child=TextTerm() | FieldTerm() | CustomFieldTerm() as child):
            return f"-{_format_node(child)}"
        case Not(child=child):
            return f"-({_format_node(child)})"
        case And(children=children):
            return " ".join(
                f"({_format_node(c)})" if isinstance(c, And | Or) else _format_node(c)
                for c in children
            )
        case Or(children=children):
            return " OR ".join(
                f"({_format_node(c)})" if isinstance(c, Or) else _format_node(c) for c in children
            )


def _format_text(term: TextTerm) -> str:
    text = _quote(term.text) if term.phrase else term.text
    if term.field is TextField.TEXT:
        return text
    return f"{term.field.value}:{text}"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _format_term(term: FieldTerm) -> str:
    name = query_name(term.field)
    if term.op is Operator.ANY:
        return f"{name}:any"
    if term.op is Operator.NONE:
        return f"{name}:none"
    mark = "+" if term.include_subtree else ""
    values = ",".join(f"{format_value(term.field, v)}{mark}" for v in term.values)
    return f"{name}{_SYMBOLS[term.op]}{values}"


def format_value(field: Field, value: Value) -> str:
    """One value as the query language writes it for ``field`` (``p1``, ``today-7``)."""
    match value:
        case UserValue(name=name) | EnumValue(name=name):
            return name
        case IntValue(value=number):
            return f"{FIELD_SPECS[field].level_prefix}{number}"
        case DateValue(day=day):
            return day.isoformat()
        case TimestampValue(at=at):
            return at.isoformat().replace("+00:00", "Z")
        case RelativeDateValue(days_ago=days):
            return f"today-{days}" if days else "today"
        case TextValue(text=text):
            # Like a custom field's value: a list is bare items, one item may be
            # quoted (a component's name ending in '+' too, which bare marks a subtree).
            marks = field is Field.COMPONENT_NAME and text.endswith("+")
            return text if is_bare_value(text) and not marks else _quote(text)


def _custom_name(term: CustomFieldTerm) -> str:
    return f"{CUSTOM_FIELD_PREFIX}{term.field_id}" if term.field_id else _quote(term.name)


def _needs_quotes(op: Operator, value: str) -> bool:
    """Whether a custom field's one value must be quoted to parse back as itself.

    Besides what cannot be bare at all, a value starting with ``=`` after
    ``<`` or ``>`` would be read as part of the operator (``<=x`` is "at most
    x", not "less than =x").
    """
    return not is_bare_value(value) or (op in (Operator.LT, Operator.GT) and value.startswith("="))


def _format_custom(term: CustomFieldTerm) -> str:
    name = _custom_name(term)
    if term.op is Operator.ANY:
        return f"{name}:any"
    if term.op is Operator.NONE:
        return f"{name}:none"
    if len(term.values) == 1 and _needs_quotes(term.op, term.values[0]):
        values = _quote(term.values[0])
    else:
        values = ",".join(term.values)
    return f"{name}{_SYMBOLS[term.op]}{values}"


def _format_sort(spec: SortSpec) -> str:
    key = (
        f"{CUSTOM_FIELD_PREFIX}{spec.custom_field_id}"
        if spec.field is SortField.CUSTOM
        else spec.field.value
    )
    return f"{'-' if spec.descending else ''}{key}"


# --- explain ------------------------------------------------------------------

_LABELS: dict[Field, str] = {
    Field.STATUS: "status",
    Field.STATUS_CLASS: "status",
    Field.PRIORITY: "priority",
    Field.SEVERITY: "severity",
    Field.TYPE: "type",
    Field.ID: "id",
    Field.CREATED: "created",
    Field.MODIFIED: "modified",
    Field.CLOSED: "closed",
}


@dataclass(frozen=True, slots=True)
class _Phrases:
    """How a term on one field reads in an explanation, as a sentence about the issue.

    ``"a starrer is bob"`` was true but read like a form's label; these say
    what the issue is or has (``starred by bob``). ``{values}`` is the values
    joined by "or", ``{comparison}`` an operator's words and its value.
    """

    equals: str
    anything: str = ""
    nothing: str = ""
    compared: str = ""
    below: str = ""


_PHRASES: dict[Field, _Phrases] = {
    Field.ASSIGNEE: _Phrases("assigned to {values}", "assigned to someone", "assigned to no one"),
    Field.REPORTER: _Phrases("reported by {values}", "has a reporter", "has no reporter"),
    Field.CC: _Phrases("cc includes {values}", "someone in cc", "no one in cc"),
    Field.VERIFIER: _Phrases("to be verified by {values}", "has a verifier", "has no verifier"),
    Field.COMPONENT: _Phrases(
        "in component {values}", below="in component {values} or a component below it"
    ),
    Field.COMPONENT_NAME: _Phrases(
        "in the component named {values}",
        below="in the component named {values} or a component below it",
    ),
    Field.HOTLIST: _Phrases("on hotlist {values}", "on some hotlist", "on no hotlist"),
    Field.BLOCKING: _Phrases(
        "blocks issue {values}",
        "blocks another issue",
        "blocks no issue",
        "blocks an issue whose id is {comparison}",
    ),
    Field.BLOCKED_BY: _Phrases(
        "blocked by issue {values}",
        "blocked by another issue",
        "blocked by no issue",
        "blocked by an issue whose id is {comparison}",
    ),
    Field.PARENT: _Phrases(
        "a child of issue {values}",
        "has a parent",
        "has no parent",
        "its parent's id is {comparison}",
        below="below issue {values} (its child, or a child's child, and so on)",
    ),
    Field.CANONICAL: _Phrases(
        "a duplicate of issue {values}",
        "a duplicate of another issue",
        "not a duplicate",
        "a duplicate of an issue whose id is {comparison}",
    ),
    Field.CLOSED: _Phrases("", "has a closed date", "has no closed date"),
    Field.COMMENTER: _Phrases(
        "commented on by {values}",
        "has a description or a comment",
        "has no description and no comment",
    ),
    Field.MODIFIER: _Phrases("changed by {values}"),
    Field.LAST_MODIFIER: _Phrases("last changed by {values}"),
    Field.LAST_COMMENTER: _Phrases("last commented on by {values}"),
    Field.ATTACHMENT: _Phrases(
        "an attachment's name contains {values}", "has an attachment", "has no attachment"
    ),
    Field.STARRED_BY: _Phrases("starred by {values}", "someone starred it", "no one starred it"),
    Field.STAR_COUNT: _Phrases("has {values} stars", compared="has {comparison} stars"),
    Field.MENTION: _Phrases("mentions {values} in the title, description or a comment"),
}
_COUNT_WORDS: dict[Operator, str] = {
    Operator.LT: "fewer than",
    Operator.LE: "at most",
    Operator.GT: "more than",
    Operator.GE: "at least",
}
_TEXT_PLACES: dict[TextField, str] = {
    TextField.TEXT: "the title, description or a comment contains",
    TextField.TITLE: "the title contains",
    TextField.COMMENT: "the description or a comment contains",
}
_COMPARE_WORDS: dict[Operator, str] = {
    Operator.LT: "less than",
    Operator.LE: "at most",
    Operator.GT: "greater than",
    Operator.GE: "at least",
}
_DATE_COMPARE_WORDS: dict[Operator, str] = {
    Operator.LT: "before",
    Operator.LE: "at or before",
    Operator.GT: "after",
    Operator.GE: "at or after",
}


def explain(query: Query, *, zone_name: str = "UTC") -> str:
    """An indented, human-readable rendering of the tree (``bugless query explain``).

    Each leaf shows its canonical query text and what it means, so a user can
    see how the parser grouped their query and which alias meant which field.
    ``zone_name`` names the time zone days are counted in (``today (UTC)``).
    """
    lines: list[str] = []
    if query.filter is None:
        lines.append("matches every issue")
    else:
        _explain_node(query.filter, 0, lines, zone_name)
    if query.sort:
        keys = ", then ".join(
            f"{_format_sort(s).lstrip('-')} ({'descending' if s.descending else 'ascending'})"
            for s in query.sort
        )
        lines.append(f"sorted by {keys}")
    return "\n".join(lines)


def _explain_node(node: Node, depth: int, lines: list[str], zone_name: str) -> None:
    indent = "  " * depth
    match node:
        case And(children=children) | Or(children=children):
            lines.append(f"{indent}{'all' if isinstance(node, And) else 'any'} of:")
            for child in children:
                _explain_node(child, depth + 1, lines, zone_name)
        case Not(child=child):
            lines.append(f"{indent}not:")
            _explain_node(child, depth + 1, lines, zone_name)
        case TextTerm() | FieldTerm():
            lines.append(f"{indent}{_format_node(node)} — {_describe(node, zone_name)}")
        case CustomFieldTerm():
            lines.append(f"{indent}{_format_node(node)} — {_describe_custom(node)}")


def _describe_custom(term: CustomFieldTerm) -> str:
    label = (
        f"custom field {term.field_id}"
        if term.field_id
        else f'every custom field named "{term.name}"'
    )
    if term.op is Operator.ANY:
        return f"{label} is set"
    if term.op is Operator.NONE:
        return f"{label} is empty"
    values = " or ".join(f'"{v}"' for v in term.values)
    if term.op is Operator.EQ:
        return f"{label} is {values} (options match in any case; text fields contain it)"
    return f"{label} is {_COMPARE_WORDS[term.op]} {values} (integer and date fields)"


def _describe(term: TextTerm | FieldTerm, zone_name: str) -> str:
    if isinstance(term, TextTerm):
        if term.field is TextField.EXTERNAL_ID:  # matched whole, as the Model does
            return f'the external reference is "{term.text}"'
        what = "the phrase" if term.phrase else "the word"
        return f'{_TEXT_PLACES[term.field]} {what} "{term.text}"'
    phrases = _PHRASES.get(term.field)
    if phrases is not None:
        described = _described(term, phrases, zone_name)
        if described:
            return described
    label = _LABELS[term.field]
    if term.op is Operator.ANY:
        return f"{label} is set"
    if term.op is Operator.NONE:
        return f"{label} is empty"
    if FIELD_SPECS[term.field].kind is ValueKind.LEVEL and term.op in _COMPARE_WORDS:
        return _describe_levels(term)
    values = _values(term, zone_name)
    is_date = FIELD_SPECS[term.field].kind is ValueKind.DATE
    if term.op is Operator.EQ:
        if term.field is Field.STATUS_CLASS:
            return f"the issue is {values}"
        if is_date:
            relative = all(isinstance(v, RelativeDateValue) for v in term.values)
            return f"{label} {values}" if relative else f"{label} on {values}"
        return f"{label} is {values}"
    words = _DATE_COMPARE_WORDS if is_date else _COMPARE_WORDS
    return f"{label} {'' if is_date else 'is '}{words[term.op]} {values}"


def _values(term: FieldTerm, zone_name: str) -> str:
    return " or ".join(_describe_value(term.field, v, zone_name) for v in term.values)


def _described(term: FieldTerm, phrases: _Phrases, zone_name: str) -> str:
    """``term`` in its field's words (:data:`_PHRASES`); "" where it has none for the operator."""
    if term.op is Operator.ANY:
        return phrases.anything
    if term.op is Operator.NONE:
        return phrases.nothing
    values = _values(term, zone_name)
    if term.op is Operator.EQ:
        if term.include_subtree and phrases.below:
            return phrases.below.format(values=values)
        if term.field is Field.STAR_COUNT and values == "1":
            return "has 1 star"
        return phrases.equals.format(values=values)
    if not phrases.compared:
        return ""
    words = _COUNT_WORDS if term.field is Field.STAR_COUNT else _COMPARE_WORDS
    return phrases.compared.format(comparison=f"{words[term.op]} {values}")


def _describe_levels(term: FieldTerm) -> str:
    """``p<p2`` as the levels it matches: "priority is P0 or P1".

    "Less than P2" was true of the numbers but read backwards by anyone who
    calls P0 the highest priority, and ``p>=p1`` ("at least P1") matched P1
    to P4, the opposite of what "at least P1" means in triage.
    """
    (bound,) = (v.value for v in term.values if isinstance(v, IntValue))
    compare = {
        Operator.LT: bound.__gt__,
        Operator.LE: bound.__ge__,
        Operator.GT: bound.__lt__,
        Operator.GE: bound.__le__,
    }[term.op]
    prefix = (FIELD_SPECS[term.field].level_prefix or "").upper()
    levels = [f"{prefix}{n}" for n in range(MAX_LEVEL + 1) if compare(n)]
    label = _LABELS[term.field]
    if not levels:
        return (
            f"{label} is {_COMPARE_WORDS[term.op]} {prefix}{bound}: no level is, so nothing matches"
        )
    listed = levels[0] if len(levels) == 1 else f"{', '.join(levels[:-1])} or {levels[-1]}"
    return f"{label} is {listed}"


def _describe_value(field: Field, value: Value, zone_name: str) -> str:
    match value:
        case UserValue(is_me=True):
            return "me (the signed-in user)"
        case IntValue(value=number) if FIELD_SPECS[field].kind is ValueKind.LEVEL:
            return f"{FIELD_SPECS[field].level_prefix.upper()}{number}"
        case RelativeDateValue(days_ago=0):
            return f"today ({zone_name})"
        case RelativeDateValue(days_ago=1):
            return f"yesterday ({zone_name})"
        case RelativeDateValue(days_ago=days):
            return f"{days} days ago ({zone_name})"
        case _:
            return format_value(field, value)


# --- JSON ---------------------------------------------------------------------


def query_to_json(query: Query) -> dict[str, object]:
    """The tree as JSON-serialisable data (``bugless query explain --json``).

    Shape: ``{"query": canonical text, "filter": node or null, "sort": [...]}``,
    where a node is one of ``{"all_of": [...]}``, ``{"any_of": [...]}``,
    ``{"negate": node}``, ``{"text": {"text", "phrase", "field"}}`` or
    ``{"term": {"field", "op", "values", "include_subtree"}}``, and a value
    is one of ``{"user"}``, ``{"integer"}``, ``{"enum"}``, ``{"date"}``,
    ``{"time"}`` or ``{"days_ago"}``.
    """
    return {
        "query": format_query(query),
        "filter": None if query.filter is None else _node_json(query.filter),
        "sort": [
            {
                "field": s.field.value,
                "descending": s.descending,
                **({"custom_field_id": s.custom_field_id} if s.custom_field_id else {}),
            }
            for s in query.sort
        ],
    }


def _node_json(node: Node) -> dict[str, object]:
    match node:
        case And(children=children):
            return {"all_of": [_node_json(c) for c in children]}
        case Or(children=children):
            return {"any_of": [_node_json(c) for c in children]}
        case Not(child=child):
            return {"negate": _node_json(child)}
        case TextTerm():
            return {"text": {"text": node.text, "phrase": node.phrase, "field": node.field.value}}
        case FieldTerm():
            return {
                "term": {
                    "field": node.field.value,
                    "op": node.op.value,
                    "values": [_value_json(node.field, v) for v in node.values],
                    "include_subtree": node.include_subtree,
                }
            }
        case CustomFieldTerm():
            return {
                "custom": {
                    "field_id": node.field_id,
                    "name": node.name,
                    "op": node.op.value,
                    "values": list(node.values),
                }
            }


def _value_json(field: Field, value: Value) -> dict[str, object]:
    match value:
        case UserValue(name=name):
            return {"user": name}
        case IntValue(value=number):
            return {"integer": number}
        case EnumValue(name=name):
            return {"enum": name}
        case DateValue():
            return {"date": format_value(field, value)}
        case TimestampValue():
            return {"time": format_value(field, value)}
        case RelativeDateValue(days_ago=days):
            return {"days_ago": days}
        case TextValue(text=text):
            return {"text": text}
