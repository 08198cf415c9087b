"""Custom field values: the one place that knows how each type reads and stores.

A custom field (``bugless.v1.CustomField``) has a type; every value travels as
text (``CustomFieldValue.values``). The Model normalises what a client sends
with :func:`normalize_values` (``"p1 "`` is no option, ``"High"`` matches the
option ``high``, ``"0042"`` is the integer 42, a day must be ``YYYY-MM-DD``),
stores it with :func:`to_stored` and shows it with :func:`from_stored`; the
frontends use the same functions to check a form before sending it, so a
person sees the same message the Model would give.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from bugless_core import limits
from bugless_core.errors import InvalidArgument
from bugless_proto import v1

T = v1.CustomFieldType

#: Field-name prefix of custom fields in history entries and the query language.
FIELD_PREFIX = "customfield"
#: Types that are ordered (``<``, ``>``), so comparisons and ranges apply.
ORDERED_TYPES = frozenset({T.INTEGER, T.DATE})
#: Types whose value is a set of options rather than one value.
MULTI_TYPES = frozenset({T.ENUM_MULTI})
_INT64 = 2**63 - 1
#: Paths an UpdateCustomField mask may name.
MASK_PATHS = frozenset({"name", "description", "options", "required", "default_values"})

TYPE_NAMES: dict[T, str] = {
    T.ENUM: "enum",
    T.ENUM_MULTI: "multi-enum",
    T.TEXT: "text",
    T.INTEGER: "integer",
    T.DATE: "date",
    T.USER: "user",
}


def history_field(field_id: int) -> str:
    """The FieldChange.field of a custom field (``customfield12``)."""
    return f"{FIELD_PREFIX}{field_id}"


def _fail(path: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{path}: {problem}", metadata={"field": path})


def match_option(field: v1.CustomField, raw: str) -> str | None:
    """The option ``raw`` names (case-insensitively, spaces trimmed), or None."""
    wanted = raw.strip().casefold()
    for option in field.options:
        if option.casefold() == wanted:
            return option
    return None


def read_integer(raw: str) -> int | None:
    """A decimal int64 (an optional sign, ASCII digits), or None."""
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        return None
    value = int(text)
    return value if -_INT64 - 1 <= value <= _INT64 else None


def read_day(raw: str) -> str | None:
    """A calendar day written ``YYYY-MM-DD``, or None."""
    text = raw.strip()
    if len(text) != 10:
        return None
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        return None


def normalize_values(field: v1.CustomField, values: Sequence[str], path: str) -> list[str]:
    """``values`` for ``field`` in canonical form; empty means "no value".

    Raises:
        InvalidArgument: a value does not fit the field's type (the message
            names ``path``, the field and what it accepts).
    """
    name = f"custom field {field.name!r}"
    if not values:
        return []
    if field.type not in MULTI_TYPES and len(values) > 1:
        raise _fail(path, f"{name} takes one value, not {len(values)}")
    out: list[str] = []
    for raw in values:
        if len(raw) > limits.MAX_CUSTOM_FIELD_VALUE_LENGTH:
            raise _fail(
                path, f"{name}: at most {limits.MAX_CUSTOM_FIELD_VALUE_LENGTH} characters a value"
            )
        if "\x00" in raw:
            raise _fail(path, f"{name}: values must not contain NUL characters")
        out.append(_normalize_one(field, raw, path, name))
    if field.type in MULTI_TYPES:
        order = {option: n for n, option in enumerate(field.options)}
        out = sorted(set(out), key=lambda option: order[option])
    return out


def _normalize_one(field: v1.CustomField, raw: str, path: str, name: str) -> str:
    if field.type in (T.ENUM, T.ENUM_MULTI):
        option = match_option(field, raw)
        if option is None:
            allowed = ", ".join(repr(o) for o in field.options)
            raise _fail(path, f"{raw!r} is not an option of {name}; use one of {allowed}")
        return option
    if field.type is T.INTEGER:
        number = read_integer(raw)
        if number is None:
            raise _fail(path, f"{name} takes a whole number, not {raw!r}")
        return str(number)
    if field.type is T.DATE:
        day = read_day(raw)
        if day is None:
            raise _fail(path, f"{name} takes a day written YYYY-MM-DD, not {raw!r}")
        return day
    text = raw.strip()
    if not text:
        raise _fail(path, f"{name}: a value must not be blank (send no values to clear it)")
    if field.type is T.USER and any(c.isspace() for c in text):
        raise _fail(path, f"{name} takes a user, not {raw!r}")
    return text


def to_stored(field: v1.CustomField, values: Sequence[str]) -> Any:
    """Normalised values as the stored JSON value (None for no value)."""
    if not values:
        return None
    if field.type in MULTI_TYPES:
        return list(values)
    if field.type is T.INTEGER:
        return int(values[0])
    return values[0]


def from_stored(stored: Any) -> list[str]:
    """A stored JSON value as the wire's text values."""
    if stored is None:
        return []
    if isinstance(stored, list):
        return [str(v) for v in stored]
    return [str(stored)]


def render(values: Sequence[str]) -> str:
    """Values as one string for a history entry of a single-valued field."""
    return ", ".join(values)


def check_definition(
    *,
    name: str,
    field_type: T,
    options: Sequence[str],
    default_values: Sequence[str],
    path: str = "",
) -> None:
    """A definition's shape: name, options for enums only, a default that fits.

    Raises:
        InvalidArgument: naming the part at fault.
    """
    prefix = f"{path}." if path else ""
    if not name.strip():
        raise _fail(f"{prefix}name", "required and must not be blank")
    if name != name.strip() or len(name) > limits.MAX_NAME_LENGTH or '"' in name:
        raise _fail(
            f"{prefix}name",
            f"{name!r}: at most {limits.MAX_NAME_LENGTH} characters, no double quotes, "
            "no leading or trailing spaces",
        )
    if field_type not in TYPE_NAMES:
        kinds = ", ".join(t.name for t in TYPE_NAMES)
        raise _fail(f"{prefix}type", f"required; use one of {kinds}")
    enum_like = field_type in (T.ENUM, T.ENUM_MULTI)
    if enum_like and not options:
        raise _fail(f"{prefix}options", "an enum field needs at least one option")
    if not enum_like and options:
        raise _fail(f"{prefix}options", f"only enum fields have options, not {field_type.name}")
    if len(options) > limits.MAX_CUSTOM_FIELD_OPTIONS:
        raise _fail(f"{prefix}options", f"at most {limits.MAX_CUSTOM_FIELD_OPTIONS} options")
    seen: set[str] = set()
    for i, option in enumerate(options):
        where = f"{prefix}options[{i}]"
        if not option.strip() or option != option.strip() or "," in option:
            raise _fail(where, f"{option!r}: not blank, no commas, no leading/trailing spaces")
        if len(option) > limits.MAX_CUSTOM_FIELD_VALUE_LENGTH:
            raise _fail(where, f"at most {limits.MAX_CUSTOM_FIELD_VALUE_LENGTH} characters")
        if option.casefold() in seen:
            raise _fail(where, f"{option!r} is listed twice")
        seen.add(option.casefold())
    probe = v1.CustomField(name=name, type=field_type, options=list(options))
    normalize_values(probe, default_values, f"{prefix}default_values")
