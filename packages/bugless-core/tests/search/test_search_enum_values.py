"""Enum members in a structured query: written and read back by the one encoding."""

from __future__ import annotations

import pytest

from bugless_core.search.build import term
from bugless_core.search.enum_values import (
    ENUM_SEARCH_FIELDS,
    SearchEnum,
    enum_search_value,
    level_of,
    search_value_member,
)
from bugless_proto import v1

F = v1.SearchField
Op = v1.SearchOperator
_ENUMS: dict[v1.SearchField, list[SearchEnum]] = {
    F.STATUS: [s for s in v1.Status if s.value],
    F.TYPE: [t for t in v1.IssueType if t.value],
    F.PRIORITY: [p for p in v1.Priority if p.value],
    F.SEVERITY: [s for s in v1.Severity if s.value],
}


def test_every_member_reads_back_as_itself() -> None:
    assert set(_ENUMS) == ENUM_SEARCH_FIELDS
    for field, members in _ENUMS.items():
        for member in members:
            assert search_value_member(field, enum_search_value(member)) is member


def test_statuses_and_types_travel_by_proto_name_and_levels_as_search_proto_numbers_them() -> None:
    assert enum_search_value(v1.Status.WONT_FIX_OBSOLETE) == v1.SearchValue(
        text="WONT_FIX_OBSOLETE"
    )
    assert enum_search_value(v1.IssueType.BUG) == v1.SearchValue(text="BUG")
    assert enum_search_value(v1.Priority.P0) == v1.SearchValue(integer=0)
    assert enum_search_value(v1.Severity.S4) == v1.SearchValue(integer=4)
    assert [level_of(p) for p in v1.Priority if p.value] == [0, 1, 2, 3, 4]


def test_a_builder_given_members_writes_the_wire_values() -> None:
    assert term(F.PRIORITY, Op.LT, v1.Priority.P2) == term(F.PRIORITY, Op.LT, 2)
    assert term(F.STATUS, Op.EQ, v1.Status.FIXED) == term(F.STATUS, Op.EQ, "FIXED")


def test_unspecified_has_no_level() -> None:
    with pytest.raises(ValueError, match="has no level"):
        level_of(v1.Priority.UNSPECIFIED)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        (F.PRIORITY, v1.SearchValue(integer=5), "PRIORITY is 0..4, not 5"),
        (F.SEVERITY, v1.SearchValue(text="S1"), "SEVERITY takes an integer value"),
        (F.STATUS, v1.SearchValue(text="fixed"), "'fixed' is not a status; use one of ACCEPTED"),
        (F.STATUS, v1.SearchValue(text="UNSPECIFIED"), "is not a status"),
        (F.TYPE, v1.SearchValue(integer=1), "TYPE takes a non-empty text value"),
        (F.ASSIGNEE, v1.SearchValue(text="alice"), "ASSIGNEE does not take enum values"),
    ],
)
def test_a_value_the_field_does_not_take_says_what_it_takes(
    field: v1.SearchField, value: v1.SearchValue, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        search_value_member(field, value)
