"""Reading proto enum members by name, the one way every surface does it."""

from __future__ import annotations

import enum

import pytest

from bugless_core.enums import enum_by_name
from bugless_core.errors import InvalidArgument
from bugless_proto import v1


@pytest.mark.parametrize(
    ("enum_type", "name", "member"),
    [
        (v1.Priority, "P1", v1.Priority.P1),
        (v1.Priority, "p1", v1.Priority.P1),
        (v1.Status, "FIXED", v1.Status.FIXED),
        (v1.Status, " fixed ", v1.Status.FIXED),
        (v1.Status, "wont-fix-obsolete", v1.Status.WONT_FIX_OBSOLETE),
        (v1.Status, "Wont fix obsolete", v1.Status.WONT_FIX_OBSOLETE),
        (v1.IssueType, "feature_request", v1.IssueType.FEATURE_REQUEST),
        (v1.Role, "editor", v1.Role.EDITOR),
    ],
)
def test_a_name_in_any_case_and_separator_reads_as_its_member(
    enum_type: type[enum.Enum], name: str, member: enum.Enum
) -> None:
    assert enum_by_name(enum_type, name, "field") is member


def test_a_member_passes_through() -> None:
    assert enum_by_name(v1.Severity, v1.Severity.S3, "severity") is v1.Severity.S3


def test_an_unknown_name_names_the_field_and_lists_the_choices() -> None:
    with pytest.raises(InvalidArgument, match=r"^priority: 'P9' is not one of p0, p1, p2, p3, p4$"):
        enum_by_name(v1.Priority, "P9", "priority")
    with pytest.raises(InvalidArgument) as caught:
        enum_by_name(v1.Role, "owner", "role")
    assert caught.value.message == "role: 'owner' is not one of viewer, editor, admin"
    assert caught.value.metadata == {"field": "role"}


@pytest.mark.parametrize("name", ["unspecified", "UNSPECIFIED", ""])
def test_unspecified_is_never_named_and_blank_is_refused_by_default(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^status: give one of new, assigned, "):
        enum_by_name(v1.Status, name, "status")


def test_blank_means_what_the_caller_says() -> None:
    unset = v1.Priority.UNSPECIFIED
    assert enum_by_name(v1.Priority, "", "priority", blank=unset) is unset
    assert enum_by_name(v1.Priority, "  ", "priority", blank=unset) is unset
    assert enum_by_name(v1.Priority, "p0", "priority", blank=unset) is v1.Priority.P0
