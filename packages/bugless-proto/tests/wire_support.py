"""What the wire converter tests share: message classes, random messages of each, deep equality.

test_wire checks upb against betterproto2 with these; the sparse, unread
and integer range tests draw the same messages and compare them the same
way. They live here so no test module imports another (a moved test module
must not break its neighbours' collection).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import inspect
import math
import struct
from typing import Any

import betterproto2
from hypothesis import strategies as st
from wire_sample import wiresample

import bugless_proto.google.protobuf as well_known
from bugless_proto import v1
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
