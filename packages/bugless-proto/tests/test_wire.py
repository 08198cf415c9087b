"""The upb wire converter gives betterproto2's own bytes and objects, for every message.

Random messages (hypothesis) of every ``bugless.v1`` class and of the sample
proto in ``wire_sample/`` (every field shape bugless.v1 does not use yet:
maps, wrappers, Duration, ``optional`` scalars, floats, a recursive message)
are encoded by both and decoded by both. Values cover the edges: negative
and extreme integers of each width, unicode, NaN and signed zeros, enum
values the schema does not know, empty messages in repeated fields, oneof
members set to their zero value, and unknown fields at any depth.

Why here and not in bugless-core: the property is about bugless_proto's
generated classes and the betterproto2 version it pins; a regeneration of
the code or a betterproto2 upgrade must re-run it, next to test_speedups.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import betterproto2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_sample import wiresample
from wire_support import SAMPLE_MESSAGES, V1_MESSAGES, assert_same, messages

from bugless_proto import v1, wire
from bugless_proto._compat_betterproto2 import (
    fields_of,
    set_unknown_fields,
    unknown_fields,
)


def _walk(value: Any, visit: Callable[[Any], None]) -> None:
    visit(value)
    if isinstance(value, betterproto2.Message):
        for info in fields_of(type(value)):
            _walk(getattr(value, info.name), visit)
    elif isinstance(value, list):
        for item in value:
            _walk(item, visit)
    elif isinstance(value, dict):
        for item in value.values():
            _walk(item, visit)


def _has(message: betterproto2.Message, test: Callable[[Any], bool]) -> bool:
    found: list[bool] = []
    _walk(message, lambda v: found.append(test(v)))
    return any(found)


def _has_unknown_fields(message: betterproto2.Message) -> bool:
    return _has(message, lambda v: isinstance(v, betterproto2.Message) and bool(unknown_fields(v)))


def _has_multi_entry_map(message: betterproto2.Message) -> bool:
    return _has(message, lambda v: isinstance(v, dict) and len(v) > 1)


def check_equivalence(message: betterproto2.Message) -> None:
    """Same bytes from both encoders, same objects from both decoders."""
    cls = type(message)
    plan = wire.plan(cls)
    assert plan.fast, plan.reason
    fallbacks = plan.fallbacks
    reference = bytes(message)
    encoded = wire.encode(message)
    if _has_multi_entry_map(message):
        # upb writes map entries in its own order (protobuf leaves it open).
        assert_same(cls.parse(encoded), cls.parse(reference))
    else:
        assert encoded == reference
    assert_same(wire.decode(cls, reference), cls.parse(reference))
    if not _has_unknown_fields(message):
        assert plan.fallbacks == fallbacks, "went through betterproto2 without unknown fields"


_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("cls", V1_MESSAGES, ids=lambda cls: cls.__name__)
@_SETTINGS
@given(data=st.data())
def test_every_v1_message_has_betterproto2s_bytes_and_objects_through_upb(
    cls: type[betterproto2.Message], data: st.DataObject
) -> None:
    check_equivalence(data.draw(messages(cls, unknown=False)))


@pytest.mark.parametrize("cls", V1_MESSAGES, ids=lambda cls: cls.__name__)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_v1_messages_with_unknown_fields_go_through_betterproto2_unchanged(
    cls: type[betterproto2.Message], data: st.DataObject
) -> None:
    check_equivalence(data.draw(messages(cls, unknown=True)))


@pytest.mark.parametrize(
    "cls", [c for c in SAMPLE_MESSAGES if c is not wiresample.Everything], ids=lambda c: c.__name__
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_field_shape_has_betterproto2s_bytes_and_objects_through_upb(
    cls: type[betterproto2.Message], data: st.DataObject
) -> None:
    check_equivalence(data.draw(messages(cls, unknown=False)))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_all_shapes_nested_together_have_betterproto2s_bytes_and_objects(
    data: st.DataObject,
) -> None:
    check_equivalence(data.draw(messages(wiresample.Everything, unknown=False)))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_unknown_fields_at_any_depth_survive_both_ways(data: st.DataObject) -> None:
    check_equivalence(data.draw(messages(wiresample.Everything, unknown=True)))


def test_every_v1_and_sample_class_is_planned_for_upb() -> None:
    unplanned = {
        cls.__name__: wire.plan(cls).reason
        for cls in V1_MESSAGES + SAMPLE_MESSAGES
        if not wire.plan(cls).fast
    }
    assert unplanned == {}


def test_a_message_with_unknown_fields_is_counted_as_a_fallback() -> None:
    leaf = wiresample.Leaf(name="x")
    set_unknown_fields(leaf, b"\xa0\x3e\x01")  # field 1000, varint 1
    message = wiresample.Node(label="root", children=[wiresample.Node(label="c")])
    message.children[0].parent = wiresample.Node(label="p")
    set_unknown_fields(message.children[0].parent, b"\xa0\x3e\x01")
    plan = wire.plan(wiresample.Node)
    before = plan.fallbacks
    assert wire.encode(message) == bytes(message)
    assert_same(wire.decode(wiresample.Node, bytes(message)), message)
    assert plan.fallbacks == before + 2


def test_map_entries_of_one_entry_maps_have_betterproto2s_bytes() -> None:
    message = wiresample.Maps(
        by_name={"": 0},
        leaves={"k": wiresample.Leaf()},
        colours={-1: wiresample.Colour.BLUE},
        wrapped={3: 0},
    )
    assert wire.encode(message) == bytes(message)
    assert_same(wire.decode(wiresample.Maps, bytes(message)), message)


def test_oneof_member_set_to_zero_is_sent() -> None:
    message = wiresample.Presence(choice_int=0, maybe_int=0, maybe_string="")
    assert wire.encode(message) == bytes(message) != b""
    assert_same(wire.decode(wiresample.Presence, bytes(message)), message)


def test_two_members_of_one_oneof_set_encode_as_betterproto2_does() -> None:
    message = wiresample.Presence(choice_int=1, choice_string="two")
    assert wire.encode(message) == bytes(message)


def test_a_naive_datetime_is_refused_as_betterproto2_refuses_it() -> None:
    message = v1.Issue(created_at=datetime.datetime(2026, 1, 1))  # no tzinfo
    with pytest.raises(ValueError, match="timezone aware"):
        bytes(message)
    with pytest.raises(ValueError, match="timezone aware"):
        wire.encode(message)


def test_a_value_upb_refuses_is_written_as_betterproto2_writes_it() -> None:
    message = wiresample.Scalars(f_uint32=-1)  # out of range: upb refuses, betterproto2 writes
    plan = wire.plan(wiresample.Scalars)
    before = plan.fallbacks
    assert wire.encode(message) == bytes(message)
    assert plan.fallbacks == before + 1


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
def test_garbage_is_refused_or_read_as_betterproto2_does(data: bytes) -> None:
    """Input upb refuses goes to betterproto2, so the errors are betterproto2's own."""
    try:
        expected = wiresample.Scalars.parse(data)
    except Exception as exc:
        with pytest.raises(type(exc)):
            wire.decode(wiresample.Scalars, data)
    else:
        assert_same(wire.decode(wiresample.Scalars, data), expected)


class _PreEncoded(v1.UsersResponse):
    """A response whose wire form is joined in advance, as the Authenticator's is."""

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name
        return b"\x12\x03pre"

    __bytes__ = SerializeToString


def test_a_class_with_its_own_wire_form_keeps_it() -> None:
    message = _PreEncoded(missing=["ignored"])
    assert wire.encode(message) == b"\x12\x03pre"
    assert not wire.plan(_PreEncoded).fast
    assert wire.decode(v1.UsersResponse, wire.encode(message)).missing == ["pre"]


def test_the_upb_class_is_built_from_the_embedded_descriptor() -> None:
    upb_issue = wire.upb_class(v1.Issue)
    assert upb_issue.DESCRIPTOR.full_name == "bugless.v1.Issue"
    issue = v1.Issue(id=7, title="ünïcode", status=v1.Status.FIXED, cc=["a", "b"])
    assert upb_issue.FromString(wire.encode(issue)).title == "ünïcode"
    with pytest.raises(ValueError, match="own wire form"):
        wire.upb_class(_PreEncoded)


def test_concatenated_messages_decode_by_protobufs_merge_rule() -> None:
    """The documented difference: upb merges as protobuf says, betterproto2 does not."""
    merged = bytes(wiresample.Node(parent=wiresample.Node(label="x"))) + bytes(
        wiresample.Node(parent=wiresample.Node(children=[wiresample.Node(label="c")]))
    )
    node = wire.decode(wiresample.Node, merged)
    assert node.parent == wiresample.Node(label="x", children=[wiresample.Node(label="c")])
    assert wiresample.Node.parse(merged).parent == wiresample.Node(
        children=[wiresample.Node(label="c")]
    )
    both = bytes(wiresample.Presence(choice_int=3)) + bytes(wiresample.Presence(choice_string="s"))
    assert wire.decode(wiresample.Presence, both) == wiresample.Presence(choice_string="s")


def test_one_instant_decodes_alike_every_time_and_one_a_microsecond_on_is_another() -> None:
    # Instants are kept per (seconds, nanos) (wire._instant): two messages with
    # one time give equal datetimes, and a time one nanosecond apart is another.
    when = datetime.datetime(2026, 12, 4, 19, 0, 1, 250_001, tzinfo=datetime.UTC)
    data = bytes(v1.Issue(id=1, modified_at=when))
    first, second = (wire.decode(v1.Issue, data) for _ in range(2))
    assert first.modified_at == second.modified_at == when == v1.Issue.parse(data).modified_at
    before_epoch = datetime.datetime(1969, 7, 20, 20, 17, 40, 999_999, tzinfo=datetime.UTC)
    for moment in (before_epoch, when + datetime.timedelta(microseconds=1)):
        data = bytes(v1.Issue(modified_at=moment))
        assert wire.decode(v1.Issue, data).modified_at == moment == v1.Issue.parse(data).modified_at
