"""``int_ranges.out_of_range`` finds every integer its wire type cannot hold, and only those.

betterproto2 encodes an out-of-range integer as its low bits (the bytes are
those of another value), so what is not caught here is sent wrapped. The
sample proto in ``wire_sample/`` has every field shape: each integer type as
a scalar, repeated, a map key and value, inside messages, repeated messages,
maps of messages, wrappers and a oneof; random messages of every class
(bugless.v1 and the sample, all in range) are never refused.
"""

from __future__ import annotations

from typing import Any

import betterproto2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_sample import wiresample
from wire_support import SAMPLE_MESSAGES, V1_MESSAGES, messages

from bugless_proto import v1
from bugless_proto.int_ranges import INT_RANGES, out_of_range

_SCALAR_TYPES = {
    "f_int32": "int32",
    "f_int64": "int64",
    "f_uint32": "uint32",
    "f_uint64": "uint64",
    "f_sint32": "sint32",
    "f_sint64": "sint64",
    "f_fixed32": "fixed32",
    "f_fixed64": "fixed64",
    "f_sfixed32": "sfixed32",
    "f_sfixed64": "sfixed64",
}


def _range(int_type: str) -> str:
    low, high = INT_RANGES[int_type]
    return f"({low} to {high})"


@pytest.mark.parametrize(("name", "int_type"), sorted(_SCALAR_TYPES.items()))
def test_each_integer_type_holds_its_bounds_and_refuses_one_past_them(
    name: str, int_type: str
) -> None:
    low, high = INT_RANGES[int_type]
    values: dict[str, Any]
    for fits in (low, high, 0):
        values = {name: fits}
        assert out_of_range(wiresample.Scalars(**values)) is None
    for past in (low - 1, high + 1):
        values = {name: past}
        assert out_of_range(wiresample.Scalars(**values)) == (
            f"{name}: {past} is outside {int_type} {_range(int_type)}"
        )


def test_a_repeated_integer_is_named_by_its_index() -> None:
    message = wiresample.Repeated(r_uint32=[0, 2**32 - 1, 2**32], r_int64=[1, 2])
    assert out_of_range(message) == f"r_uint32[2]: {2**32} is outside uint32 {_range('uint32')}"
    assert out_of_range(wiresample.Repeated(r_sfixed32=[-(2**31) - 1])) == (
        f"r_sfixed32[0]: {-(2**31) - 1} is outside sfixed32 {_range('sfixed32')}"
    )


def test_nested_and_repeated_messages_are_named_by_their_path() -> None:
    leaves = [wiresample.Leaf(weight=1), wiresample.Leaf(weight=2**31)]
    everything = wiresample.Everything(
        repeated=wiresample.Repeated(leaves=leaves),
    )
    assert out_of_range(everything) == (
        f"repeated.leaves[1].weight: {2**31} is outside int32 {_range('int32')}"
    )
    deeper = wiresample.Everything(
        more=[
            wiresample.Everything(),
            wiresample.Everything(scalars=wiresample.Scalars(f_int64=2**63)),
        ]
    )
    assert out_of_range(deeper) == (
        f"more[1].scalars.f_int64: {2**63} is outside int64 {_range('int64')}"
    )


def test_map_keys_values_and_message_values_are_looked_at() -> None:
    assert out_of_range(wiresample.Maps(by_name={"a": 1, "b": -(2**31) - 1})) == (
        f"by_name['b']: {-(2**31) - 1} is outside int32 {_range('int32')}"
    )
    assert out_of_range(wiresample.Maps(names={2**63: "x"})) == (
        f"names key {2**63}: {2**63} is outside int64 {_range('int64')}"
    )
    assert out_of_range(wiresample.Maps(weights={2**64: 1.0})) == (
        f"weights key {2**64}: {2**64} is outside uint64 {_range('uint64')}"
    )
    assert out_of_range(wiresample.Maps(leaves={"l": wiresample.Leaf(weight=2**40)})) == (
        f"leaves['l'].weight: {2**40} is outside int32 {_range('int32')}"
    )
    # A map of wrappers holds plain ints in betterproto2: the wrapper's type applies.
    assert out_of_range(wiresample.Maps(wrapped={1: 2**63})) == (
        f"wrapped[1]: {2**63} is outside int64 {_range('int64')}"
    )


def test_wrappers_optional_and_oneof_integers_are_looked_at() -> None:
    assert out_of_range(wiresample.Known(w_uint32=-1)) == (
        f"w_uint32: -1 is outside uint32 {_range('uint32')}"
    )
    assert out_of_range(wiresample.Known(w_int32=2**31)) == (
        f"w_int32: {2**31} is outside int32 {_range('int32')}"
    )
    assert out_of_range(wiresample.Presence(maybe_int=-(2**63) - 1)) == (
        f"maybe_int: {-(2**63) - 1} is outside int64 {_range('int64')}"
    )
    assert out_of_range(wiresample.Presence(choice_int=2**31)) == (
        f"choice_int: {2**31} is outside int32 {_range('int32')}"
    )
    assert out_of_range(wiresample.Presence(maybe_int=None, choice_string="x")) is None


def test_a_request_of_the_api_names_its_field_as_the_client_reports_it() -> None:
    request = v1.QuerySearchRequest(query="is:open", page=v1.PageRequest(page_size=2**32))
    assert out_of_range(request) == (
        f"page.page_size: 4294967296 is outside int32 {_range('int32')}"
    )
    change = v1.ChangeIssueRequest(
        issue_id=1,
        delta=v1.IssueDelta(custom_fields_set=[v1.CustomFieldValue(field_id=-(2**63) - 1)]),
    )
    assert out_of_range(change) == (
        f"delta.custom_fields_set[0].field_id: {-(2**63) - 1} is outside int64 {_range('int64')}"
    )


def test_a_value_of_another_type_is_left_to_the_encoder() -> None:
    message = wiresample.Everything(scalars=wiresample.Scalars(f_int32="7"))  # type: ignore[arg-type]
    assert out_of_range(message) is None
    wrong = wiresample.Everything(scalars="not a message", tree=wiresample.Node())  # type: ignore[arg-type]
    assert out_of_range(wrong) is None


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_random_messages_in_range_are_never_refused(data: st.DataObject) -> None:
    cls: type[betterproto2.Message] = data.draw(st.sampled_from(V1_MESSAGES + SAMPLE_MESSAGES))
    message: Any = data.draw(messages(cls, unknown=False))
    assert out_of_range(message) is None
