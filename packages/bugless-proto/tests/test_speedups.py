"""The faster default look-up encodes exactly what betterproto2's own does."""

from __future__ import annotations

import datetime
import enum
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import betterproto2
import pytest

from bugless_proto import _speedups, v1
from bugless_proto._compat_betterproto2 import field_default_lookup, fields_of

MESSAGES = [
    cls
    for _, cls in inspect.getmembers(v1, inspect.isclass)
    if issubclass(cls, betterproto2.Message)
]


def _value(kind: type, depth: int) -> Any:
    """A non-default value of ``kind`` (messages filled ``depth`` levels down)."""
    if kind is bool:
        return True
    if kind is int:
        return 7
    if kind is float:
        return 1.5
    if kind is str:
        return "u_example"
    if kind is bytes:
        return b"\x01"
    if kind is datetime.datetime:
        return datetime.datetime(2026, 11, 27, 12, 30, tzinfo=datetime.UTC)
    if kind is datetime.timedelta:
        return datetime.timedelta(seconds=3)
    if issubclass(kind, enum.Enum):
        return list(kind)[-1]
    if issubclass(kind, betterproto2.Message):
        return _filled(kind, depth - 1)
    raise AssertionError(f"no sample value for {kind}")


def _filled(cls: type[betterproto2.Message], depth: int = 2) -> betterproto2.Message:
    """An instance of ``cls`` with every field set (one member per oneof)."""
    message = cls()
    if depth <= 0:
        return message
    meta = message._betterproto  # type: ignore[arg-type]  # betterproto2's classproperty typing
    groups_done: set[str] = set()
    for name, field in meta.meta_by_field_name.items():
        if field.group is not None:
            if field.group in groups_done:
                continue
            groups_done.add(field.group)
        if field.map_meta is not None:
            continue
        value = _value(meta.cls_by_field[name], depth)
        setattr(message, name, [value, value] if field.repeated else value)
    return message


def _samples() -> Iterator[betterproto2.Message]:
    for cls in MESSAGES:
        yield cls()
        yield _filled(cls)


def test_every_v1_message_encodes_to_the_same_bytes_as_betterproto2s_own_lookup() -> None:
    samples = list(_samples())
    fast = [bytes(message) for message in samples]
    _speedups.uninstall()
    try:
        slow = [bytes(message) for message in samples]
    finally:
        _speedups.install()
    assert fast == slow
    with_fields = sum(1 for cls in MESSAGES if fields_of(cls))
    assert sum(1 for data in fast if data) == with_fields  # every filled one encodes something


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.__name__)
def test_filled_messages_round_trip_with_the_fast_lookup(cls: type[betterproto2.Message]) -> None:
    message = _filled(cls)
    assert cls.FromString(bytes(message)) == message


def test_no_default_factory_of_a_v1_message_warns() -> None:
    """The guard the fast look-up drops only mattered for factories that warn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for cls in MESSAGES:
            meta = cls()._betterproto  # type: ignore[arg-type]  # betterproto2's classproperty typing
            for factory in meta.default_gen.values():
                factory()
    assert caught == []


def test_importing_bugless_proto_installs_the_fast_lookup() -> None:
    assert field_default_lookup() is _speedups.FAST_LOOKUP
