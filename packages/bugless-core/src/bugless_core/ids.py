"""The one rule for what an id is: issue, component, hotlist and saved search ids.

Ids travel as protobuf ``int64`` and are stored as PostgreSQL ``bigint``
(CockroachDB's ``INT8``), both signed 64-bit. The accepted range is therefore
``1..2**63-1`` (:data:`MIN_ID`..:data:`MAX_ID`); 0 means "none" only in the
fields that say so. Anything else is refused *before* it reaches a message:
a Python ``int`` of ``2**64 + 301`` put into an ``int64`` field is encoded
modulo ``2**64`` and arrives as 301, which is how a URL or CLI argument
aliased another issue. Every entry point (web paths, form fields and query
parameters, CLI arguments, the Python client, the Model servicer, the search
language) parses and checks ids here, so they all accept the same texts and
say the same thing about the rest.

Text is parsed strictly: ASCII decimal digits only. ``int()`` would also take
``+301``, ``3_01``, `` 301``, and non-ASCII digits (``٣٠١``), each an alias of
a valid id; none of them is an id here.
"""

from __future__ import annotations

import re

from bugless_core.errors import InvalidArgument

#: Smallest id a thing can have.
MIN_ID = 1
#: Largest id: the top of PostgreSQL ``bigint`` and protobuf ``int64``.
MAX_ID = 2**63 - 1
#: How the accepted range is written in messages.
ID_RANGE = f"{MIN_ID}..{MAX_ID}"
#: Longest digit string that can be an id (leading zeros aside).
_MAX_DIGITS = len(str(MAX_ID))
#: Longest piece of a refused text quoted back in a message.
MAX_ID_TEXT = 64
_ASCII_DIGITS = re.compile(r"[0-9]+", re.ASCII)


def is_valid_id(value: object, *, allow_zero: bool = False) -> bool:
    """Whether ``value`` is an ``int`` in the id range (0 too when ``allow_zero``)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return (allow_zero and value == 0) or MIN_ID <= value <= MAX_ID


def check_id(value: int, field: str, *, allow_zero: bool = False) -> int:
    """``value`` if it is an id, else :class:`InvalidArgument` naming ``field``.

    Raises:
        InvalidArgument: outside ``1..2**63-1`` (or not 0 where 0 means none);
            ``metadata["field"]`` is ``field``.
    """
    if not is_valid_id(value, allow_zero=allow_zero):
        expected = _expected(allow_zero=allow_zero)
        shown = value if isinstance(value, int) and len(str(value)) <= MAX_ID_TEXT else "that"
        raise InvalidArgument(f"{field}: {shown} is not {expected}", metadata={"field": field})
    return value


def _expected(*, allow_zero: bool) -> str:
    return f"a positive id ({ID_RANGE})" + (" or 0 for none" if allow_zero else "")


def _shown(text: str) -> str:
    return text if len(text) <= MAX_ID_TEXT else text[:MAX_ID_TEXT] + "..."


def parse_id(text: str, field: str, *, allow_zero: bool = False) -> int:
    """The id written in ``text``: ASCII decimal digits, nothing else.

    Callers strip what their own syntax allows around an id (whitespace in a
    form, ``#`` before an issue number) before calling this.

    Leading zeros are allowed (``0301`` is 301: a way of writing the number,
    not another number); the digits are counted before ``int()`` sees them,
    so a huge text costs nothing and never hits Python's digit limit.

    Raises:
        InvalidArgument: not digits, or outside the id range; the message
            names ``field`` and the accepted range, and quotes at most
            :data:`MAX_ID_TEXT` characters of the text.
    """
    if not _ASCII_DIGITS.fullmatch(text):
        expected = _expected(allow_zero=allow_zero)
        raise InvalidArgument(
            f"{field}: {_shown(text)!r} is not {expected} (digits only)", metadata={"field": field}
        )
    digits = text.lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        raise InvalidArgument(
            f"{field}: {_shown(text)} is not a positive id ({ID_RANGE}): too large",
            metadata={"field": field},
        )
    return check_id(int(digits), field, allow_zero=allow_zero)


def try_parse_id(text: str, *, allow_zero: bool = False) -> int | None:
    """The id in ``text``, or None: for places where "not an id" means "not found"."""
    try:
        return parse_id(text, "id", allow_zero=allow_zero)
    except InvalidArgument:
        return None


__all__ = [
    "ID_RANGE",
    "MAX_ID",
    "MAX_ID_TEXT",
    "MIN_ID",
    "check_id",
    "is_valid_id",
    "parse_id",
    "try_parse_id",
]
