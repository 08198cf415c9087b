"""The parsed query: an immutable tree of frozen dataclasses.

The tree is the contract between the parser, the printer and the translation to
the wire's ``StructuredQuery``, so it only admits what the language can say:
constructors validate (two or more children under And/Or, values of the type
the field takes, comparisons only on ordered fields, words that the printer can
write back unquoted...). That is what makes ``parse_query(format_query(q)) == q``
hold for *every* tree, not just the ones the parser happened to build.

Source positions (``span``) are kept for error messages and highlighting but do
not take part in equality, so a reparsed tree equals the original.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeAlias

from bugless_core.search._fields import (
    COMPARISONS,
    FIELD_SPECS,
    MAX_INTEGER,
    MAX_LEVEL,
    SUBTREE_FIELDS,
    Field,
    Operator,
    SortField,
    TextField,
    ValueKind,
)
from bugless_core.usernames import is_username_character

#: Characters that end a word or value: they are tokens of their own.
DELIMITERS = frozenset('()"')
#: Characters that make a word a ``field<op>value`` term.
OPERATOR_CHARS = frozenset(":=<>")
#: The keyword for alternatives; any other casing is an ordinary word.
OR_KEYWORD = "OR"
#: Operators of other query languages (JQL, Lucene, SQL) that this one writes
#: otherwise: bare, in capitals, they are refused (each with what to write
#: instead) rather than searched for as words. ``is:open AND p:p0`` used to
#: look for the word "AND", and matched nothing without saying why. Quoted,
#: or in any other casing, they are ordinary words.
FOREIGN_OPERATORS = {
    "AND": "terms side by side must all match already: remove 'AND'",
    "NOT": "to exclude a term, put '-' before it, as in -status:fixed",
}
#: Words that are not usernames in a user field (compared case-insensitively).
RESERVED_USER_WORDS = frozenset({"me", "none", "any"})
#: ``today-N`` is limited so that date arithmetic stays inside ``datetime``.
MAX_DAYS_AGO = 1_000_000


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node or value came from in the query text: ``text[start:end]``."""

    start: int
    end: int


# --- values -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserValue:
    """A user in a user field: ``me`` (the signed-in user) or a username.

    Usernames are kept as typed; the Authenticator decides how they compare.
    """

    name: str
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if not is_username(self.name) and self.name != "me":
            raise ValueError(f"not a username: {self.name!r}")

    @property
    def is_me(self) -> bool:
        """Whether this stands for the signed-in user rather than a username."""
        return self.name == "me"


@dataclass(frozen=True, slots=True)
class TextValue:
    """A piece of text a value must contain (an attachment's name part), as typed."""

    text: str
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("empty text value")


@dataclass(frozen=True, slots=True)
class IntValue:
    """An id, or a priority/severity level (0 for P0/S0 ... 4 for P4/S4)."""

    value: int
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if not 0 <= self.value <= MAX_INTEGER:
            raise ValueError(f"integer out of range: {self.value}")


@dataclass(frozen=True, slots=True)
class EnumValue:
    """A status (``fixed``), issue type (``bug``) or status class (``open``).

    The name is the lower-case canonical spelling; the field says which enum.
    """

    name: str
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class DateValue:
    """A calendar day (``2026-01-31``), in UTC."""

    day: date
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if isinstance(self.day, datetime):
            raise TypeError("DateValue takes a date; use TimestampValue for a datetime")


@dataclass(frozen=True, slots=True)
class TimestampValue:
    """An instant (``2026-01-31T10:00:00Z``); always stored in UTC."""

    at: datetime
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("TimestampValue needs a timezone-aware datetime")
        try:
            object.__setattr__(self, "at", self.at.astimezone(UTC))
        except OverflowError:
            raise ValueError(f"timestamp out of range: {self.at}") from None


@dataclass(frozen=True, slots=True)
class RelativeDateValue:
    """``today`` (0) or ``today-N``: a day counted back from the caller's today."""

    days_ago: int
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if not 0 <= self.days_ago <= MAX_DAYS_AGO:
            raise ValueError(f"days_ago must be 0..{MAX_DAYS_AGO}, not {self.days_ago}")


Value: TypeAlias = (
    UserValue | IntValue | EnumValue | DateValue | TimestampValue | RelativeDateValue | TextValue
)

_VALUE_TYPES: dict[ValueKind, tuple[type, ...]] = {
    ValueKind.USER: (UserValue,),
    ValueKind.TEXT: (TextValue,),
    ValueKind.NAME: (TextValue,),
    ValueKind.LEVEL: (IntValue,),
    ValueKind.ENUM: (EnumValue,),
    ValueKind.INTEGER: (IntValue,),
    ValueKind.DATE: (DateValue, TimestampValue, RelativeDateValue),
}


# --- nodes --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextTerm:
    """Words or a phrase searched in the full text, the title or the comments.

    Attributes:
        text: One word (``phrase=False``) or the phrase's exact text.
        phrase: Whether it was quoted: the words must be adjacent and in order.
        field: Where to look.
    """

    text: str
    phrase: bool = False
    field: TextField = TextField.TEXT
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if self.phrase:
            ok = bool(self.text.strip())
        elif self.field is TextField.TEXT:
            ok = is_bare_word(self.text)
        else:
            ok = is_bare_value(self.text)
        if not ok:
            kind = "phrase" if self.phrase else "unquoted word"
            raise ValueError(f"{self.text!r} cannot be written as an {kind} for {self.field}")


@dataclass(frozen=True, slots=True)
class FieldTerm:
    """``field<op>values``: a comma list under EQ means any of the values.

    Attributes:
        field: The field compared.
        op: EQ (one or more values), a comparison (exactly one value, ordered
            fields only), or ANY/NONE (no values, nullable fields only).
        values: Typed as the field requires (see :data:`FIELD_SPECS`).
        include_subtree: COMPONENT and COMPONENT_NAME: also match the
            components below (``componentid:123+``); PARENT: the issues below.
    """

    field: Field
    op: Operator
    values: tuple[Value, ...] = ()
    include_subtree: bool = False
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        problem = _field_term_problem(self)
        if problem:
            raise ValueError(f"invalid {self.field} term: {problem}")


@dataclass(frozen=True, slots=True)
class Not:
    """Matches what ``child`` does not (``-term``, ``-(group)``)."""

    child: Node
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class And:
    """Matches what every child matches (terms side by side)."""

    children: tuple[Node, ...]
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if len(self.children) < 2:
            raise ValueError("And needs at least two children")


@dataclass(frozen=True, slots=True)
class Or:
    """Matches what any child matches (``a OR b``)."""

    children: tuple[Node, ...]
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if len(self.children) < 2:
            raise ValueError("Or needs at least two children")


@dataclass(frozen=True, slots=True)
class CustomFieldTerm:
    """A custom field term: ``customfield12:v``, ``"Found In":4.2``, ``has:customfield12``.

    The parser does not know the fields a tracker defines, so values stay as
    typed (the Model reads them as the field's type says, and reports a value
    that does not fit).

    Attributes:
        field_id: The field by id (``customfield<ID>``), or 0 when named.
        name: The field by name (every field of that name), or "" when by id.
        op: EQ (one or more values), a comparison (one value), ANY/NONE (none).
        values: The values as typed (``me`` and ``today-N`` are resolved later).
    """

    op: Operator
    values: tuple[str, ...] = ()
    field_id: int = 0
    name: str = ""
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        problem = _custom_term_problem(self)
        if problem:
            raise ValueError(f"invalid custom field term: {problem}")


def _custom_term_problem(term: CustomFieldTerm) -> str:
    if (term.field_id > 0) == bool(term.name):
        return "name the field by a positive id or by name, not both"
    if not 0 <= term.field_id <= MAX_INTEGER:
        return f"field id out of range: {term.field_id}"
    if term.name and (term.name != term.name.strip() or '"' in term.name or "\\" in term.name):
        return f"{term.name!r} cannot be written as a quoted field name"
    if term.op in (Operator.ANY, Operator.NONE):
        return f"{term.op} takes no values" if term.values else ""
    if not term.values:
        return f"{term.op} needs a value"
    if term.op in COMPARISONS and len(term.values) != 1:
        return "a comparison takes exactly one value"
    for value in term.values:
        if not value.strip() or value.lower() in ("none", "any"):
            return f"{value!r} is not a value"
        if len(term.values) > 1 and "," in value:
            return f"{value!r}: a value in a list cannot hold a comma"
        if '"' in value or "\\" in value:
            return f"{value!r}: quotes and backslashes are not written in values"
    return ""


Node: TypeAlias = TextTerm | FieldTerm | CustomFieldTerm | Not | And | Or


@dataclass(frozen=True, slots=True)
class SortSpec:
    """One sort key: ``priority`` or, descending, ``-modified``."""

    field: SortField
    descending: bool = False
    #: CUSTOM only: the field's id.
    custom_field_id: int = 0
    span: Span | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if (self.field is SortField.CUSTOM) != (self.custom_field_id > 0):
            raise ValueError("a CUSTOM sort key names a field id; other keys none")


@dataclass(frozen=True, slots=True)
class Query:
    """A whole query: the filter (None matches every issue) and the sort order.

    Attributes:
        filter: The boolean tree, or None for an empty query.
        sort: Sort keys in priority order; each field at most once.
        source: The text this was parsed from, which the node spans refer to;
            None for a tree built in code.
    """

    filter: Node | None = None
    sort: tuple[SortSpec, ...] = ()
    source: str | None = dataclasses.field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        fields = [(s.field, s.custom_field_id) for s in self.sort]
        if len(set(fields)) != len(fields):
            raise ValueError(f"a sort field is given twice: {fields}")


# --- what the printer can write back --------------------------------------------


def is_bare_value(text: str) -> bool:
    """Whether ``text`` can follow ``field:`` without quotes and parse back as is."""
    return bool(text) and not any(ch.isspace() or ch in DELIMITERS for ch in text)


def is_bare_word(text: str) -> bool:
    """Whether ``text`` can stand alone unquoted and parse back as one free word.

    It must not look like a field term, a negation, the OR keyword or an
    operator of another language (:data:`FOREIGN_OPERATORS`).
    """
    return (
        is_bare_value(text)
        and not any(ch in OPERATOR_CHARS for ch in text)
        and not text.startswith("-")
        and text != OR_KEYWORD
        and text not in FOREIGN_OPERATORS
    )


def is_username(text: str) -> bool:
    """Whether ``text`` is a username the language can write (not me/none/any).

    The characters of :mod:`bugless_core.usernames` (letters and digits of
    any script, combining marks, ``_ . @ + -``: login names, e-mail-style
    names, "Ölaf" typed decomposed), never a delimiter, starting with a
    letter, digit or ``_``.
    """
    return (
        bool(text)
        and (text[0].isalnum() or text[0] == "_")
        and all(is_username_character(ch) for ch in text)
        and text.lower() not in RESERVED_USER_WORDS
    )


def _field_term_problem(term: FieldTerm) -> str:
    spec = FIELD_SPECS[term.field]
    if term.include_subtree and (term.field not in SUBTREE_FIELDS or term.op is not Operator.EQ):
        return "include_subtree is only for componentid, component and parentid with EQ"
    if term.op in (Operator.ANY, Operator.NONE):
        if term.values:
            return f"{term.op} takes no values"
        return "" if spec.nullable else f"{term.field} always has a value"
    if not term.values:
        return f"{term.op} needs a value"
    if term.op in COMPARISONS:
        if not spec.ordered:
            return f"{term.field} is not ordered"
        if len(term.values) != 1:
            return "a comparison takes exactly one value"
    for value in term.values:
        if not isinstance(value, _VALUE_TYPES[spec.kind]):
            return f"{type(value).__name__} is not a {spec.kind.value} value"
        if spec.kind is ValueKind.LEVEL and isinstance(value, IntValue) and value.value > MAX_LEVEL:
            return f"level {value.value} is out of range 0..{MAX_LEVEL}"
        if isinstance(value, EnumValue) and value.name not in spec.choices:
            return f"{value.name!r} is not one of {spec.choices}"
    return ""


def iter_nodes(node: Node) -> Iterator[Node]:
    """Every node of the tree under ``node`` (itself included), depth first.

    Iterative, so that callers walking a deep tree cannot hit the recursion limit.
    """
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, Not):
            stack.append(current.child)
        elif isinstance(current, And | Or):
            stack.extend(reversed(current.children))
