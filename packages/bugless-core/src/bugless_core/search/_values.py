"""Reading one typed value (``p1``, ``me``, ``2026-01-31``, ``today-7``...).

Each reader takes the value as typed and returns the tree's value, or raises
:class:`BadValue` saying what would have been accepted; the parser attaches the
position. Readers are lenient about case (``P1``, ``Fixed``, ``TODAY``) because
people type queries, and strict about everything else, because a value that is
silently misread returns the wrong issues.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from bugless_core import ids
from bugless_core.errors import InvalidArgument
from bugless_core.search._ast import (
    MAX_DAYS_AGO,
    DateValue,
    EnumValue,
    IntValue,
    RelativeDateValue,
    Span,
    TextValue,
    TimestampValue,
    UserValue,
    Value,
    is_username,
)
from bugless_core.search._fields import (
    MAX_LEVEL,
    Field,
    FieldSpec,
    ValueKind,
    join_alternatives,
    suggest,
)

_DIGITS = re.compile(r"[0-9]+")
_LEVEL = re.compile(r"([ps]?)([0-9])", re.IGNORECASE)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?",
    re.IGNORECASE,
)
_RELATIVE = re.compile(r"today(?:-([0-9]+))?", re.IGNORECASE)
DATE_FORMS = "a date (2026-01-31), a time (2026-01-31T10:00:00Z), 'today' or 'today-N'"


class BadValue(Exception):
    """A value that does not fit its field; ``problem`` says what would."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def read_value(field: Field, spec: FieldSpec, raw: str, span: Span) -> Value:
    """Read ``raw`` as a value of ``field``.

    Raises:
        BadValue: ``raw`` is not a value ``field`` accepts.
    """
    match spec.kind:
        case ValueKind.USER:
            return read_user(field, raw, span)
        case ValueKind.LEVEL:
            return read_level(field, spec, raw, span)
        case ValueKind.ENUM:
            return read_enum(field, spec, raw, span)
        case ValueKind.INTEGER:
            return IntValue(read_integer(field, raw), span=span)
        case ValueKind.DATE:
            return read_date(field, raw, span)
        case ValueKind.TEXT:
            return TextValue(raw, span=span)
        case ValueKind.NAME:
            return read_name(field, raw, span)


def read_user(field: Field, raw: str, span: Span) -> UserValue:
    """``me`` (any case) or a username."""
    if raw.lower() == "me":
        return UserValue("me", span=span)
    if not is_username(raw):
        raise BadValue(
            f"expected a username, 'me', 'none' or 'any' for '{field.value}', not '{raw}'"
        )
    return UserValue(raw, span=span)


def read_name(field: Field, raw: str, span: Span) -> TextValue:
    """A name, or a path of names from the top separated by ``>`` (``Rocket>Engine``).

    Spaces around each name are dropped (``Rocket > Engine``); an empty
    name is refused, since no component has one.
    """
    names = [name.strip() for name in raw.split(">")]
    if not all(names):
        where = "" if len(names) == 1 else " on each side of '>'"
        raise BadValue(f"expected a name{where} for '{field.value}', not '{raw}'")
    return TextValue(">".join(names), span=span)


def read_level(field: Field, spec: FieldSpec, raw: str, span: Span) -> IntValue:
    """``p0``..``p4`` for priority, ``s0``..``s4`` for severity; the letter is optional."""
    prefix = spec.level_prefix
    match = _LEVEL.fullmatch(raw)
    if (
        match is None
        or match.group(1).lower() not in ("", prefix)
        or int(match.group(2)) > MAX_LEVEL
    ):
        raise BadValue(
            f"expected a {field.value} {prefix}0..{prefix}{MAX_LEVEL} "
            f"({prefix}0 is the highest), not '{raw}'"
        )
    return IntValue(int(match.group(2)), span=span)


def read_enum(field: Field, spec: FieldSpec, raw: str, span: Span) -> EnumValue:
    """A name from ``spec.choices``, in any case, with ``-`` allowed for ``_``."""
    name = raw.lower().replace("-", "_")
    if name not in spec.choices:
        hint = suggest(name, spec.choices) or (
            f"; expected one of {join_alternatives(spec.choices)}"
        )
        raise BadValue(f"unknown {field.value} '{raw}'{hint}")
    return EnumValue(name, span=span)


def read_integer(field: Field, raw: str) -> int:
    """An id as :func:`bugless_core.ids.parse_id` reads it (0 too: ``id>0`` parses).

    Every integer field of the language is an id, so the one id parser reads
    them; the Model then refuses 0 where it is no id.
    """
    try:
        return ids.parse_id(raw, field.value, allow_zero=True)
    except InvalidArgument:
        if not _DIGITS.fullmatch(raw):
            raise BadValue(f"expected a number for '{field.value}', not '{raw}'") from None
        raise BadValue(
            f"'{raw}' is too large for '{field.value}' (ids are {ids.ID_RANGE})"
        ) from None


def read_date(field: Field, raw: str, span: Span) -> DateValue | TimestampValue | RelativeDateValue:
    """An ISO date, an ISO datetime (UTC unless an offset is given) or ``today[-N]``."""
    relative = _RELATIVE.fullmatch(raw)
    if relative is not None:
        digits = (relative.group(1) or "0").lstrip("0") or "0"
        if len(digits) > len(str(MAX_DAYS_AGO)) or int(digits) > MAX_DAYS_AGO:
            raise BadValue(f"'{raw}' is too far back: at most today-{MAX_DAYS_AGO}")
        return RelativeDateValue(int(digits), span=span)
    try:
        if _DATE.fullmatch(raw):
            return DateValue(date.fromisoformat(raw), span=span)
        if _DATETIME.fullmatch(raw):
            at = datetime.fromisoformat(raw.upper())
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            return TimestampValue(at, span=span)
    except ValueError:
        raise BadValue(f"'{raw}' is not a valid date or time for '{field.value}'") from None
    raise BadValue(f"expected {DATE_FORMS} for '{field.value}', not '{raw}'")
