from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bugless_core.deltas import issue_delta
from bugless_core.errors import InvalidArgument
from bugless_core.model._validation import ISSUE_MASK_PATHS, check_delta
from bugless_proto import v1

#: A valid value for every scalar parameter, keyed by the mask path it sets.
SCALARS: dict[str, tuple[str, Any]] = {
    "title": ("title", "Crash on start"),
    "status": ("status", v1.Status.FIXED),
    "priority": ("priority", v1.Priority.P1),
    "severity": ("severity", v1.Severity.S2),
    "type": ("issue_type", v1.IssueType.FEATURE_REQUEST),
    "component_id": ("component_id", 7),
    "assignee": ("assignee", "alice"),
    "verifier": ("verifier", "bob"),
    "parent_id": ("parent_id", 12),
    "duplicate_of_id": ("duplicate_of_id", 13),
}


def test_every_scalar_parameter_maps_to_a_mask_path_the_model_accepts() -> None:
    assert set(SCALARS) == ISSUE_MASK_PATHS


def test_no_arguments_is_an_empty_delta() -> None:
    delta = issue_delta()
    assert delta.update_mask is not None
    assert delta.update_mask.paths == []
    assert delta.fields == v1.IssueFields()
    assert not check_delta(delta, "delta")


@given(chosen=st.lists(st.sampled_from(sorted(SCALARS)), unique=True))
def test_mask_names_exactly_the_fields_given(chosen: list[str]) -> None:
    delta = issue_delta(**{SCALARS[path][0]: SCALARS[path][1] for path in chosen})
    assert delta.update_mask is not None
    assert sorted(delta.update_mask.paths) == sorted(chosen)
    assert delta.fields is not None
    for path in chosen:
        assert getattr(delta.fields, path) == SCALARS[path][1]
    assert check_delta(delta, "delta") == bool(chosen)


@pytest.mark.parametrize(
    ("arguments", "path"),
    [
        ({"assignee": ""}, "assignee"),
        ({"verifier": ""}, "verifier"),
        ({"parent_id": 0}, "parent_id"),
        ({"duplicate_of_id": 0}, "duplicate_of_id"),
        ({"priority": v1.Priority.UNSPECIFIED}, "priority"),
    ],
)
def test_a_cleared_field_is_in_the_mask(arguments: dict[str, Any], path: str) -> None:
    delta = issue_delta(**arguments)
    assert delta.update_mask is not None
    assert delta.update_mask.paths == [path]
    assert check_delta(delta, "delta")


def test_list_changes_are_carried_without_touching_the_mask() -> None:
    delta = issue_delta(
        cc_add=iter(["carol"]),
        cc_remove=("dave",),
        hotlist_add=[1],
        hotlist_remove=[2],
        blocking_add=[3],
        blocking_remove=[4],
        blocked_by_add=[5],
        blocked_by_remove=[6],
    )
    assert delta.update_mask is not None
    assert delta.update_mask.paths == []
    assert (delta.cc_add, delta.cc_remove) == (["carol"], ["dave"])
    assert (delta.hotlist_add, delta.hotlist_remove) == ([1], [2])
    assert (delta.blocking_add, delta.blocking_remove) == ([3], [4])
    assert (delta.blocked_by_add, delta.blocked_by_remove) == ([5], [6])
    assert check_delta(delta, "delta")


def test_invalid_combinations_are_built_and_left_to_the_model_to_refuse() -> None:
    delta = issue_delta(cc_add=["x"], cc_remove=["x"], title="")
    assert delta.update_mask is not None
    assert delta.update_mask.paths == ["title"]
    assert (delta.cc_add, delta.cc_remove) == (["x"], ["x"])
    with pytest.raises(InvalidArgument, match=r"delta\.fields\.title"):
        check_delta(delta, "delta")
    with pytest.raises(InvalidArgument, match="both added and removed"):
        check_delta(issue_delta(cc_add=["x"], cc_remove=["x"]), "delta")
