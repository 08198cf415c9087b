"""Whether a message's integers fit their wire types, before it is encoded.

betterproto2 writes an integer field by keeping the low bits of its value:
``page_size=2**32`` is sent as 0 and ``position=-2**32 - 1`` as -1, so a value
the field cannot hold becomes another value without a word, and the server,
which receives only the wrapped bytes, cannot tell. A sender that wants to
refuse such a value has to look before encoding: :func:`out_of_range` does,
for every integer field of a message, in nested messages, repeated fields and
maps (keys and values) alike, and says which field and why.

It is meant for every request a client sends, so it costs little: what to
look at is planned once per message class from betterproto2's field metadata
(the fields of the generated classes, which come from the embedded
descriptors), and a class with no integer field anywhere below it is not
looked into at all.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import betterproto2

from bugless_proto._compat_betterproto2 import fields_of

#: Each integer wire type: (lowest, highest) value it holds.
INT_RANGES: dict[str, tuple[int, int]] = {
    betterproto2.TYPE_INT32: (-(2**31), 2**31 - 1),
    betterproto2.TYPE_SINT32: (-(2**31), 2**31 - 1),
    betterproto2.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    betterproto2.TYPE_INT64: (-(2**63), 2**63 - 1),
    betterproto2.TYPE_SINT64: (-(2**63), 2**63 - 1),
    betterproto2.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    betterproto2.TYPE_UINT32: (0, 2**32 - 1),
    betterproto2.TYPE_FIXED32: (0, 2**32 - 1),
    betterproto2.TYPE_UINT64: (0, 2**64 - 1),
    betterproto2.TYPE_FIXED64: (0, 2**64 - 1),
}

# How a field is looked at.
_INT, _INTS, _MESSAGE, _MESSAGES, _MAP = range(5)


class _Check(NamedTuple):
    """One field of a class that holds, or may hold below it, an integer to check."""

    name: str
    how: int
    #: The wire type of an integer (a map's value's), else "".
    int_type: str
    #: The class of a message (a map's value's), else None.
    message: type[betterproto2.Message] | None
    #: A map's key type when it is an integer type, else "".
    key_type: str
    #: The range of ``int_type`` (0, 0 when there is none).
    low: int = 0
    high: int = 0


#: Planned classes: their checks (empty: nothing to look at). Written under _LOCK.
_PLANS: dict[type, tuple[_Check, ...]] = {}
_LOCK = threading.Lock()


def out_of_range(message: betterproto2.Message) -> str | None:
    """The first integer of ``message`` its field's wire type cannot hold, described; or None.

    The description names the field by its path from ``message``
    (``page.page_size``, ``issue_ids[3]``, ``hotlist_names[4294967296]``),
    the value and the type: ``page.page_size: 4294967296 is outside int32
    (-2147483648 to 2147483647)``. A value that is not an int is left to the
    encoder, which refuses it in its own words.
    """
    checks = _plan(type(message))
    try:
        if _fits(message, checks):
            return None
    except (TypeError, AttributeError):
        pass  # a value of another type than its field's: the slow pass skips it
    return _first_problem(message, checks, "")


def _fits(message: Any, checks: tuple[_Check, ...]) -> bool:
    """Whether every integer of ``message`` fits: the fast pass of every call.

    Names nothing, so it builds no path; only when it says no does the slow
    pass (:func:`_first_problem`) find the field and describe it.

    Raises:
        TypeError: A value that is not a number (AttributeError: a message
            field holding something else); the slow pass skips it.
    """
    for check in checks:
        name, how, _, cls, _, low, high = check
        value = getattr(message, name)
        if value is None:
            continue
        if how == _INT:
            if not low <= value <= high:
                return False
        elif how == _INTS:
            if value and (min(value) < low or max(value) > high):
                return False
        elif how == _MESSAGE:
            if not _fits(value, _plan(cls)):
                return False
        elif how == _MESSAGES:
            plan = _plan(cls)
            for item in value:
                if not _fits(item, plan):
                    return False
        elif _map_problem(value, check, name):
            return False
    return True


def _first_problem(message: Any, checks: tuple[_Check, ...], prefix: str) -> str | None:
    for check in checks:
        value = getattr(message, check.name)
        if value is None:
            continue
        how = check.how
        if how == _INT:
            problem = _outside(value, check.int_type, prefix + check.name)
        elif how == _INTS:
            problem = _first_outside(value, check.int_type, prefix + check.name)
        elif how == _MESSAGE:
            problem = _message_problem(value, check, f"{prefix}{check.name}.")
        elif how == _MESSAGES:
            problem = None
            for i, item in enumerate(value):
                problem = _message_problem(item, check, f"{prefix}{check.name}[{i}].")
                if problem:
                    break
        else:
            problem = _map_problem(value, check, prefix + check.name)
        if problem:
            return problem
    return None


def _message_problem(value: Any, check: _Check, prefix: str) -> str | None:
    """The first problem of the message ``value``, a field of ``check``'s class."""
    if check.message is None or not isinstance(value, check.message):
        return None  # not a message of the field's class: the encoder refuses it
    return _first_problem(value, _plan(check.message), prefix)


def _map_problem(entries: dict[Any, Any], check: _Check, where: str) -> str | None:
    for key, value in entries.items():
        if check.key_type:
            problem = _outside(key, check.key_type, f"{where} key {key}")
            if problem:
                return problem
        if check.int_type:
            problem = _outside(value, check.int_type, f"{where}[{key!r}]")
        elif check.message is not None:
            problem = _message_problem(value, check, f"{where}[{key!r}].")
        else:
            problem = None
        if problem:
            return problem
    return None


def _first_outside(values: list[Any], int_type: str, where: str) -> str | None:
    low, high = INT_RANGES[int_type]
    for i, value in enumerate(values):
        if isinstance(value, int) and not low <= value <= high:
            return _describe(value, int_type, f"{where}[{i}]")
    return None


def _outside(value: Any, int_type: str, where: str) -> str | None:
    low, high = INT_RANGES[int_type]
    if isinstance(value, int) and not low <= value <= high:
        return _describe(value, int_type, where)
    return None


def _describe(value: int, int_type: str, where: str) -> str:
    low, high = INT_RANGES[int_type]
    return f"{where}: {value} is outside {int_type} ({low} to {high})"


def _plan(cls: type | None) -> tuple[_Check, ...]:
    """The checks of ``cls``, planned on first use (none for None)."""
    if cls is None:
        return ()
    plan = _PLANS.get(cls)
    if plan is None:
        with _LOCK:
            plan = _PLANS.get(cls)
            if plan is None:
                plan = _PLANS[cls] = _planned(cls, set())
    return plan


def _planned(cls: type, seen: set[type]) -> tuple[_Check, ...]:
    """The checks of ``cls``; ``seen`` are the classes being planned above it (recursion)."""
    seen = seen | {cls}
    checks = []
    for field in fields_of(cls):
        proto_type = field.proto_type
        if proto_type in INT_RANGES:
            how = _INTS if field.repeated else _INT
            checks.append(_Check(field.name, how, proto_type, None, "", *INT_RANGES[proto_type]))
        elif field.map_types is not None:
            key_type, value_type = field.map_types
            int_value = value_type if value_type in INT_RANGES else ""
            int_value = int_value or _wrapped_int_type(field.unwrapped)
            message = _message_class(field.value_class, field.unwrapped, seen)
            int_key = key_type if key_type in INT_RANGES else ""
            if int_key or int_value or message is not None:
                checks.append(_Check(field.name, _MAP, int_value, message, int_key))
        elif proto_type == betterproto2.TYPE_MESSAGE:
            wrapped = _wrapped_int_type(field.unwrapped)
            if wrapped:
                # A wrapper (Int64Value ...) is its value in betterproto2.
                how = _INTS if field.repeated else _INT
                checks.append(_Check(field.name, how, wrapped, None, "", *INT_RANGES[wrapped]))
                continue
            message = _message_class(field.value_class, field.unwrapped, seen)
            if message is not None:
                how = _MESSAGES if field.repeated else _MESSAGE
                checks.append(_Check(field.name, how, "", message, ""))
    return tuple(checks)


def _message_class(
    value_class: type | None, unwrapped: type | None, seen: set[type]
) -> type[betterproto2.Message] | None:
    """``value_class`` when it is a message class that may hold an integer to check."""
    if unwrapped is not None or value_class is None:
        return None  # Timestamp, Duration: a Python value with no integer field
    if not issubclass(value_class, betterproto2.Message):
        return None  # an enum
    if value_class in seen:
        return value_class  # recursive: its plan is made when it is first checked
    planned = _PLANS.get(value_class)
    if planned is None:
        # Complete whatever ``seen`` is: a recursive field is always kept.
        planned = _PLANS[value_class] = _planned(value_class, seen)
    return value_class if planned else None


def _wrapped_int_type(unwrapped: type | None) -> str:
    """The integer type of a wrapper message betterproto2 replaces by its value, else ""."""
    if unwrapped is None or not issubclass(unwrapped, betterproto2.Message):
        return ""
    fields = fields_of(unwrapped)
    if len(fields) == 1 and fields[0].name == "value" and fields[0].proto_type in INT_RANGES:
        return fields[0].proto_type
    return ""
