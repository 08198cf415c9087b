"""How enum members travel in a structured query, for both ends.

Code on either side of the Model API holds statuses, types, priorities and
severities as the ``bugless.v1`` enum members, and the database stores each
member's number. Only inside a ``SearchValue`` do they take another form,
the one ``search.proto`` documents: status and type by the member's name
(``"FIXED"``), priority and severity as a level 0..4 (P0 and S0 are 0, as the
query language writes them). This module is that encoding: the frontends and
the builders write a member with :func:`enum_search_value`, the Model reads it
back with :func:`search_value_member`, and nothing else converts.
"""

from __future__ import annotations

import betterproto2

from bugless_proto import v1

#: The enums a search term's values may name.
SearchEnum = v1.Status | v1.IssueType | v1.Priority | v1.Severity

#: Priority and severity members by level: P0 (S0) first, as the proto orders them.
_LEVELS: dict[type[v1.Priority] | type[v1.Severity], tuple[v1.Priority | v1.Severity, ...]] = {
    v1.Priority: tuple(sorted(p for p in v1.Priority if p.value)),
    v1.Severity: tuple(sorted(s for s in v1.Severity if s.value)),
}
#: The enum behind each enum-valued search field.
_NAMED: dict[v1.SearchField, type[v1.Status] | type[v1.IssueType]] = {
    v1.SearchField.STATUS: v1.Status,
    v1.SearchField.TYPE: v1.IssueType,
}
_LEVELLED: dict[v1.SearchField, type[v1.Priority] | type[v1.Severity]] = {
    v1.SearchField.PRIORITY: v1.Priority,
    v1.SearchField.SEVERITY: v1.Severity,
}
#: The search fields whose values are enum members.
ENUM_SEARCH_FIELDS: frozenset[v1.SearchField] = frozenset({*_NAMED, *_LEVELLED})


def level_of(member: v1.Priority | v1.Severity) -> int:
    """The level of a priority or severity: 0 for P0/S0 ... 4 for P4/S4.

    Raises:
        ValueError: ``member`` is UNSPECIFIED or unknown, which has no level.
    """
    levels = _LEVELS[type(member)]
    if member not in levels:
        raise ValueError(f"{member!r} has no level")
    return levels.index(member)


def enum_search_value(member: SearchEnum) -> v1.SearchValue:
    """``member`` as a search term's value: ``"FIXED"``, or ``1`` for P1."""
    if isinstance(member, v1.Priority | v1.Severity):
        return v1.SearchValue(integer=level_of(member))
    return v1.SearchValue(text=member.name)


def search_value_member(field: v1.SearchField, value: v1.SearchValue) -> SearchEnum:
    """The member a value of an enum-valued field names (see :data:`ENUM_SEARCH_FIELDS`).

    Raises:
        ValueError: The value is not one ``field`` takes; the message says
            what it takes (the Model reports it as the value's problem).
    """
    kind, raw = betterproto2.which_one_of(value, "kind")
    if field in _LEVELLED:
        levels = _LEVELS[_LEVELLED[field]]
        if kind != "integer" or not isinstance(raw, int):
            raise ValueError(f"{field.name} takes an integer value")
        if not 0 <= raw < len(levels):
            raise ValueError(f"{field.name} is 0..{len(levels) - 1}, not {raw}")
        return levels[raw]
    if field not in _NAMED:
        raise ValueError(f"{field.name} does not take enum values")
    if kind != "text" or not isinstance(raw, str) or not raw:
        raise ValueError(f"{field.name} takes a non-empty text value")
    enum_type = _NAMED[field]
    member = enum_type.__members__.get(raw)
    if member is None or not member.value:
        names = ", ".join(sorted(m.name for m in enum_type if m.value))
        raise ValueError(f"{raw!r} is not a {field.name.lower()}; use one of {names}")
    return member


__all__ = [
    "ENUM_SEARCH_FIELDS",
    "SearchEnum",
    "enum_search_value",
    "level_of",
    "search_value_member",
]
