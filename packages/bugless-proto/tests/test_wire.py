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

import dataclasses
import datetime
import enum
import functools
import inspect
import math
import struct
from collections.abc import Callable
from typing import Any

import betterproto2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_sample import wiresample

import bugless_proto.google.protobuf as well_known
from bugless_proto import v1, wire
from bugless_proto._compat_betterproto2 import (
    FieldInfo,
    fields_of,
    set_unknown_fields,
    unknown_fields,
)


def _classes(module: Any) -> list[type[betterproto2.Message]]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, betterproto2.Message) and cls.__module__ == module.__name__
    ]


V1_MESSAGES = _classes(v1) + _classes(well_known)
SAMPLE_MESSAGES = _classes(wiresample)

_INT_RANGES = {
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
_ZONES = st.sampled_from(
    [
        datetime.UTC,
        datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        datetime.timezone(-datetime.timedelta(hours=8)),
    ]
)


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = st.sampled_from(sorted({low, high, 0, 1, -1 if low < 0 else 2, 127, 128, 2**31 - 1}))
    return st.one_of(edges.filter(lambda n: low <= n <= high), st.integers(low, high))


def _scalar(proto_type: str) -> st.SearchStrategy[Any]:
    if proto_type in _INT_RANGES:
        return _integers(*_INT_RANGES[proto_type])
    if proto_type == betterproto2.TYPE_BOOL:
        return st.booleans()
    if proto_type == betterproto2.TYPE_STRING:
        return st.text(max_size=12)
    if proto_type == betterproto2.TYPE_BYTES:
        return st.binary(max_size=12)
    if proto_type == betterproto2.TYPE_DOUBLE:
        return st.floats(allow_nan=True)
    if proto_type == betterproto2.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=True)
    raise AssertionError(f"no strategy for {proto_type}")


def _enum(enum_class: type[enum.IntEnum]) -> st.SearchStrategy[Any]:
    unknown = st.integers(-(2**31), 2**31 - 1).map(enum_class)
    return st.one_of(st.sampled_from(list(enum_class)), unknown)


def _unwrapped(wrapper: type[betterproto2.Message]) -> st.SearchStrategy[Any]:
    # Generated classes carry DESCRIPTOR; betterproto2.Message does not declare it.
    name = wrapper.DESCRIPTOR.full_name  # type: ignore[attr-defined]
    if name == "google.protobuf.Timestamp":
        return st.datetimes(
            min_value=datetime.datetime(2, 1, 1),
            max_value=datetime.datetime(9998, 12, 31),
            timezones=_ZONES,
        )
    if name == "google.protobuf.Duration":
        return st.timedeltas(
            min_value=datetime.timedelta(days=-(10**6)), max_value=datetime.timedelta(days=10**6)
        )
    (value,) = fields_of(wrapper)
    return _scalar(value.proto_type)


def _unknown_fields() -> st.SearchStrategy[bytes]:
    """Canonically encoded fields with numbers no sample or v1 message uses."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def field(number: int, kind: int, value: Any) -> bytes:
        tag = varint(number << 3 | kind)
        if kind == 0:
            return tag + varint(value)
        if kind == 1:
            return tag + struct.pack("<Q", value)
        if kind == 5:
            return tag + struct.pack("<I", value)
        return tag + varint(len(value)) + bytes(value)

    one = st.one_of(
        st.tuples(st.integers(900, 2000), st.just(0), st.integers(0, 2**64 - 1)),
        st.tuples(st.integers(900, 2000), st.just(1), st.integers(0, 2**64 - 1)),
        st.tuples(st.integers(900, 2000), st.just(5), st.integers(0, 2**32 - 1)),
        st.tuples(st.integers(900, 2000), st.just(2), st.binary(max_size=8)),
    )
    return st.lists(one, min_size=1, max_size=3).map(lambda fs: b"".join(field(*f) for f in fs))


class MessageStrategies:
    """Random instances of any betterproto2 class, built from its field metadata."""

    def __init__(self, *, unknown: bool, max_depth: int = 2) -> None:
        self.unknown = unknown
        self.max_depth = max_depth

    def element(self, info: FieldInfo, depth: int) -> st.SearchStrategy[Any]:
        proto_type = info.map_types[1] if info.map_types else info.proto_type
        if info.unwrapped is not None:
            return _unwrapped(info.unwrapped)
        if proto_type == betterproto2.TYPE_MESSAGE:
            assert info.value_class is not None
            return self.message(info.value_class, depth - 1)
        if proto_type == betterproto2.TYPE_ENUM:
            assert info.value_class is not None
            return _enum(info.value_class)
        return _scalar(proto_type)

    def value(self, info: FieldInfo, depth: int) -> st.SearchStrategy[Any]:
        if (
            depth <= 0
            and (info.value_class is not None and info.unwrapped is None)
            and (info.proto_type in (betterproto2.TYPE_MESSAGE, betterproto2.TYPE_MAP))
        ):
            return st.just({} if info.map_types else [] if info.repeated else None)
        element = self.element(info, depth)
        if info.map_types is not None:
            return st.dictionaries(_scalar(info.map_types[0]), element, max_size=3)
        if info.repeated:
            return st.lists(element, max_size=4)
        if info.presence:
            return st.none() | element
        return element

    def message(
        self, cls: type[betterproto2.Message], depth: int | None = None
    ) -> st.SearchStrategy[Any]:
        depth = self.max_depth if depth is None else depth
        infos = fields_of(cls)
        groups: dict[str, list[FieldInfo]] = {}
        plain: dict[str, st.SearchStrategy[Any]] = {}
        for info in infos:
            if info.group is None:
                plain[info.name] = self.value(info, depth)
            else:
                groups.setdefault(info.group, []).append(info)

        def member(info: FieldInfo) -> st.SearchStrategy[dict[str, Any]]:
            return self.element(info, depth).map(lambda v: {info.name: v})

        choices = [
            st.none() | st.sampled_from(members).flatmap(member) for members in groups.values()
        ]

        def build(values: dict[str, Any], chosen: list[dict[str, Any] | None], raw: bytes) -> Any:
            for one in chosen:
                values.update(one or {})
            message = cls(**values)
            set_unknown_fields(message, raw)
            return message

        raw = _unknown_fields() | st.just(b"") if self.unknown else st.just(b"")
        return st.builds(build, st.fixed_dictionaries(plain), st.tuples(*choices).map(list), raw)


@functools.cache
def messages(cls: type[betterproto2.Message], *, unknown: bool) -> st.SearchStrategy[Any]:
    """Random ``cls`` instances (built once per class: strategies are costly to build)."""
    return MessageStrategies(unknown=unknown).message(cls)


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


def assert_same(left: Any, right: Any, path: str = "message") -> None:
    """Deep equality that also compares types (enum members, not ints), unknown fields, NaN."""
    assert type(left) is type(right), f"{path}: {type(left)} != {type(right)}"
    if isinstance(left, betterproto2.Message):
        assert unknown_fields(left) == unknown_fields(right), f"{path}: unknown fields"
        # Every generated message is a dataclass; betterproto2.Message is not declared one.
        for field in dataclasses.fields(left):  # type: ignore[arg-type]
            name = field.name
            assert_same(getattr(left, name), getattr(right, name), f"{path}.{name}")
    elif isinstance(left, list):
        assert len(left) == len(right), f"{path}: lengths"
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(left, dict):
        assert left.keys() == right.keys(), f"{path}: keys"
        for key in left:
            assert_same(left[key], right[key], f"{path}[{key!r}]")
    elif isinstance(left, float) and math.isnan(left):
        assert math.isnan(right), f"{path}: {left} != {right}"
    elif isinstance(left, float):
        assert (left, math.copysign(1, left)) == (right, math.copysign(1, right)), path
    elif isinstance(left, datetime.datetime):
        assert (left, left.tzinfo) == (right, right.tzinfo), f"{path}: {left!r} != {right!r}"
    else:
        assert left == right, f"{path}: {left!r} != {right!r}"


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
