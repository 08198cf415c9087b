"""The plan builder of :mod:`bugless_proto.wire`: per-class converter source.

:mod:`bugless_proto.wire` runs every message through a plan made once per
class; this module makes what a plan runs. :class:`_Compiler` reads a class's
betterproto2 field metadata and its embedded descriptor, checks that the two
agree (or raises :class:`_Unplannable`, leaving the class to betterproto2),
and writes the source of two small functions per class (``_e{n}``, the upb
constructor keywords of a message, and ``_d{n}``, the message out of a upb
one; ``_SparseDecoder`` writes the latter for a class with many fields).
The generated code raises :class:`_Fallback` to hand a message back to
betterproto2, and calls the conversions kept here (enum tables, timestamps,
the per-instant memo ``_instant``). Only ``wire``'s registry executes the
source and calls the functions: this split keeps the code generator apart
from the registry and the codec's entry points, not a second way in.
"""

from __future__ import annotations

import ast
import datetime
import functools
import itertools
import keyword
import re
from collections.abc import Callable
from typing import Any

import betterproto2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as UpbMessage

from bugless_proto._compat_betterproto2 import UNKNOWN_FIELDS_ATTRIBUTE, FieldInfo, fields_of

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_timedelta = datetime.timedelta
_TIMESTAMP = "google.protobuf.Timestamp"

#: betterproto2's type names and the descriptor types they must match.
_DESCRIPTOR_TYPES = {
    betterproto2.TYPE_DOUBLE: FieldDescriptor.TYPE_DOUBLE,
    betterproto2.TYPE_FLOAT: FieldDescriptor.TYPE_FLOAT,
    betterproto2.TYPE_INT32: FieldDescriptor.TYPE_INT32,
    betterproto2.TYPE_INT64: FieldDescriptor.TYPE_INT64,
    betterproto2.TYPE_UINT32: FieldDescriptor.TYPE_UINT32,
    betterproto2.TYPE_UINT64: FieldDescriptor.TYPE_UINT64,
    betterproto2.TYPE_SINT32: FieldDescriptor.TYPE_SINT32,
    betterproto2.TYPE_SINT64: FieldDescriptor.TYPE_SINT64,
    betterproto2.TYPE_FIXED32: FieldDescriptor.TYPE_FIXED32,
    betterproto2.TYPE_FIXED64: FieldDescriptor.TYPE_FIXED64,
    betterproto2.TYPE_SFIXED32: FieldDescriptor.TYPE_SFIXED32,
    betterproto2.TYPE_SFIXED64: FieldDescriptor.TYPE_SFIXED64,
    betterproto2.TYPE_BOOL: FieldDescriptor.TYPE_BOOL,
    betterproto2.TYPE_STRING: FieldDescriptor.TYPE_STRING,
    betterproto2.TYPE_BYTES: FieldDescriptor.TYPE_BYTES,
    betterproto2.TYPE_ENUM: FieldDescriptor.TYPE_ENUM,
    betterproto2.TYPE_MESSAGE: FieldDescriptor.TYPE_MESSAGE,
    betterproto2.TYPE_MAP: FieldDescriptor.TYPE_MESSAGE,
}


class _Fallback(Exception):
    """Raised inside a plan: let betterproto2 handle the whole message."""


class _Unplannable(Exception):
    """A class whose fields the converter does not handle; betterproto2 keeps it."""


class _EnumTable(dict[int, Any]):
    """Wire number -> enum member, with betterproto2's unknown-value members for the rest."""

    def __init__(self, enum_class: type[betterproto2.Enum]) -> None:
        super().__init__((member.value, member) for member in enum_class)
        self.enum_class = enum_class

    def __missing__(self, value: int) -> Any:
        return self.enum_class(value)


_MICROSECOND = datetime.timedelta(microseconds=1)


def timestamp_fields(value: datetime.datetime) -> dict[str, int]:
    """An aware datetime as upb ``Timestamp`` keywords: betterproto2's ``from_datetime``.

    Whole microseconds since the epoch, floored; any zone subtracts as its
    instant. Also for code that builds upb messages itself (``_search_wire``).

    Raises:
        ValueError: ``value`` is naive (betterproto2's error).
    """
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone aware")
    seconds, micros = divmod((value - _EPOCH) // _MICROSECOND, 1_000_000)
    return {"seconds": seconds, "nanos": micros * 1000}


def _timestamp_value(timestamp: Any) -> datetime.datetime:
    """``Timestamp.to_datetime`` of betterproto2, from a upb Timestamp."""
    return _instant(timestamp.seconds, timestamp.nanos)


#: Instants kept by :func:`_instant` (about 200 bytes each).
INSTANT_MEMO_SIZE = 16384


@functools.lru_cache(maxsize=INSTANT_MEMO_SIZE)
def _instant(seconds: int, nanos: int) -> datetime.datetime:
    """Kept per instant: aware datetime arithmetic costs four times a look-up.

    A datetime is immutable, and the same instants (the times of the issues a
    list shows) arrive page after page: a 50-row list decodes 50 to 100.
    """
    return _EPOCH + _timedelta(0, seconds, nanos // 1000)


def _attribute(owner: str, name: str) -> str:
    """``owner.name``, or ``getattr(owner, 'name')`` for a name Python reserves."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"{owner}.{name}"
    return f"getattr({owner}, {name!r})"


def _is_literal(expression: str) -> bool:
    """Whether ``expression`` is a Python literal (``0``, ``''``, ``None``)."""
    try:
        ast.literal_eval(expression)
    except ValueError:
        return False
    return True


class _SparseDecoder:
    """The decoder of a class with many fields: it reads only the fields present.

    Reading every field of a upb message costs the same whether the sender
    set it or not (an empty repeated field still makes a container to copy),
    and a read mask or a sparse message leaves most of a large class unset:
    a row of the web's list pages carries 9 of the 28 fields of an Issue, a
    ``IssueDelta`` a few of its many. This decoder starts from a copy of a dict of
    the defaults (new containers per message) and converts only what
    ``ListFields()`` returns, looking each descriptor up in a table: a member
    of a oneof, an ``optional`` field and a message field are listed exactly
    when ``HasField`` is true, and a field without presence only when it
    differs from its default, so the result is the attribute reader's, field
    for field and in the same order.
    """

    def __init__(self, compiler: _Compiler, number: int) -> None:
        self.compiler = compiler
        self.number = number
        self.defaults: list[str] = []
        self.containers: list[str] = []
        self.converters: list[str] = []
        self.functions: list[str] = []
        self.descriptors: list[FieldDescriptor] = []

    def field(self, name: str, descriptor: FieldDescriptor, default: str, value: str) -> None:
        """Add a field: its default and the conversion of its upb value ``v``.

        A default that is not a literal or a new container (an enum member)
        is worked out once, when the source runs, not per message.
        """
        if default not in ("{}", "[]") and not _is_literal(default):
            constant = f"_q{next(self.compiler.counter)}"
            self.functions.append(f"{constant} = {default}")
            default = constant
        if default in ("{}", "[]"):
            self.containers.append(f"d[{name!r}] = {default}")
        self.defaults.append(f"{name!r}: {default}")
        converter = "None"
        call = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\(v\)|(\[v\]))", value)
        if call is not None:  # one call or look-up: no function around it
            converter = call.group(1) + (".__getitem__" if call.group(2) else "")
        elif value != "v":
            converter = f"_f{next(self.compiler.counter)}"
            self.functions += [f"def {converter}(v):", f"    return {value}"]
        self.converters.append(f"_G{self.number}[{len(self.descriptors)}]: ({name!r}, {converter})")
        self.descriptors.append(descriptor)

    def source(self) -> list[str]:
        """The decoder ``_d{number}``, its field table ``_F{number}`` and converters."""
        n = self.number
        self.compiler.constants[f"_G{n}"] = tuple(self.descriptors)
        self.defaults.append(f"{UNKNOWN_FIELDS_ATTRIBUTE!r}: b''")
        # The table names decoders of other classes, which a recursive class
        # defines later in the source: it is built after every function.
        self.compiler.tables.append(f"_F{n} = {{" + ", ".join(self.converters) + "}\n")
        # The defaults are copied from one dict (a copy costs a fraction of
        # building a dict of 29 entries), then each container made anew.
        return [
            *self.functions,
            f"_B{n} = {{" + ", ".join(self.defaults) + "}",
            f"def _d{n}(u):",
            "    if len(_UnknownFieldSet(u)): raise _Fallback",
            f"    d = _B{n}.copy()",
            *(f"    {line}" for line in self.containers),
            "    for f, v in u.ListFields():",
            f"        name, converter = _F{n}[f]",
            "        d[name] = v if converter is None else converter(v)",
            f"    m = _new(_C{n})",
            "    m.__dict__ = d",
            "    return m",
        ]


class _Compiler:
    """Generates the converter functions of a closure of message classes."""

    def __init__(
        self, namespace: dict[str, Any], counter: itertools.count[int], sparse_from: int
    ) -> None:
        self.namespace = namespace
        self.counter = counter
        self.sparse_from = sparse_from
        self.ids: dict[type, int] = {}
        self.order: list[type] = []
        self.sources: list[str] = []
        self.tables: list[str] = []
        self.upb_classes: dict[type, type[UpbMessage]] = {}
        self.constants: dict[str, Any] = {}

    def _constant(self, prefix: str, value: Any) -> str:
        name = f"_{prefix}{next(self.counter)}"
        self.constants[name] = value
        return name

    def converters(self, cls: type[betterproto2.Message], known: dict[type, int]) -> int:
        """The number of ``cls``'s converters (``_e{n}``/``_d{n}``), compiling them if needed."""
        if cls in known:
            return known[cls]
        if cls in self.ids:
            return self.ids[cls]
        number = next(self.counter)
        self.ids[cls] = number
        self.order.append(cls)
        descriptor = getattr(cls, "DESCRIPTOR", None)
        if not isinstance(descriptor, Descriptor):
            raise _Unplannable(f"{cls.__qualname__} has no embedded descriptor")
        self.upb_classes[cls] = message_factory.GetMessageClass(descriptor)
        self.sources.append(self._compile(cls, number, descriptor, known))
        return number

    def _element(
        self, info: FieldInfo, descriptor: FieldDescriptor, known: dict[type, int]
    ) -> tuple[Callable[[str], str], Callable[[str], str]]:
        """Encode and decode expressions of one element (of a field, list or map value)."""
        proto_type = info.map_types[1] if info.map_types else info.proto_type
        if info.unwrapped is not None:
            if descriptor.message_type is None:
                raise _Unplannable(f"{info.name} unwraps a message the descriptor lacks")
            if descriptor.message_type.full_name == _TIMESTAMP:
                return (lambda x: f"_timestamp_fields({x})", lambda y: f"_timestamp_value({y})")
            wrapper = self._constant("W", info.unwrapped)
            n = self.converters(info.unwrapped, known)
            return (
                lambda x: f"_e{n}({wrapper}.from_wrapped({x}))",
                lambda y: f"_d{n}({y}).to_wrapped()",
            )
        if proto_type == betterproto2.TYPE_MESSAGE:
            value_class = info.value_class
            if not isinstance(value_class, type) or not issubclass(
                value_class, betterproto2.Message
            ):
                raise _Unplannable(f"{info.name} has no message class")
            expected = getattr(value_class, "DESCRIPTOR", None)
            if (
                descriptor.message_type is None
                or expected is None
                or (descriptor.message_type.full_name != expected.full_name)
            ):
                raise _Unplannable(f"{info.name}: the class and the descriptor disagree")
            n = self.converters(value_class, known)
            return (lambda x: f"_e{n}({x})", lambda y: f"_d{n}({y})")
        if proto_type == betterproto2.TYPE_ENUM:
            if not (
                isinstance(info.value_class, type)
                and issubclass(info.value_class, betterproto2.Enum)
            ):
                raise _Unplannable(f"{info.name} has no enum class")
            table = self._constant("T", _EnumTable(info.value_class))
            return (lambda x: x, lambda y: f"{table}[{y}]")
        return (lambda x: x, lambda y: y)

    def _check(self, cls: type, info: FieldInfo, descriptor: FieldDescriptor | None) -> None:
        where = f"{cls.__qualname__}.{info.name}"
        if descriptor is None:
            raise _Unplannable(f"{where} (field {info.number}) is not in the descriptor")
        is_map = descriptor.message_type is not None and (
            descriptor.message_type.GetOptions().map_entry
        )
        repeated = bool(descriptor.is_repeated)
        if is_map != (info.map_types is not None) or (repeated and not is_map) != info.repeated:
            raise _Unplannable(f"{where}: repeated/map shape differs from the descriptor")
        if not is_map and _DESCRIPTOR_TYPES.get(info.proto_type) != descriptor.type:
            raise _Unplannable(f"{where}: type {info.proto_type} differs from the descriptor")
        if not repeated and info.presence != descriptor.has_presence:
            raise _Unplannable(f"{where}: presence differs from the descriptor")

    def _compile(self, cls: type, number: int, message: Descriptor, known: dict[type, int]) -> str:
        infos = fields_of(cls)
        if {info.number for info in infos} != set(message.fields_by_number):
            raise _Unplannable(f"{cls.__qualname__}: fields differ from its descriptor")
        encode = [
            f"def _e{number}(m):",
            f"    if m.{UNKNOWN_FIELDS_ATTRIBUTE}: raise _Fallback",
            "    kw = {}",
        ]
        decode = [f"def _d{number}(u):", "    if len(_UnknownFieldSet(u)): raise _Fallback"]
        values: list[str] = []
        sparse = _SparseDecoder(self, number)
        group_members: dict[str, list[str]] = {}
        oneofs: dict[str, str] = {}
        for info in infos:
            descriptor = message.fields_by_number.get(info.number)
            self._check(cls, info, descriptor)
            assert descriptor is not None
            upb_name = descriptor.name
            source = _attribute("u", upb_name)
            element = descriptor
            if info.map_types is not None:
                element = descriptor.message_type.fields_by_name["value"]
            to_upb, from_upb = self._element(info, element, known)
            encode.append(f"    v = m.{info.name}")
            if info.map_types is not None:
                passes_through = to_upb("x") == "x"
                value = "v" if passes_through else f"{{k: {to_upb('x')} for k, x in v.items()}}"
                encode += ["    if v:", f"        kw[{upb_name!r}] = {value}"]
                if from_upb("y") == "y":
                    values.append(f"{info.name!r}: dict({source})")
                    sparse.field(info.name, descriptor, "{}", "dict(v)")
                else:
                    pairs = f"for k, y in {source}.items()"
                    values.append(f"{info.name!r}: {{k: {from_upb('y')} {pairs}}}")
                    sparse.field(
                        info.name, descriptor, "{}", f"{{k: {from_upb('y')} for k, y in v.items()}}"
                    )
            elif info.repeated:
                value = "v" if to_upb("x") == "x" else f"[{to_upb('x')} for x in v]"
                encode += ["    if v:", f"        kw[{upb_name!r}] = {value}"]
                if from_upb("y") == "y":
                    values.append(f"{info.name!r}: {source}[:]")  # a list, faster than list()
                    sparse.field(info.name, descriptor, "[]", "v[:]")
                else:
                    values.append(f"{info.name!r}: [{from_upb('y')} for y in {source}]")
                    sparse.field(info.name, descriptor, "[]", f"[{from_upb('y')} for y in v]")
            elif info.presence:
                encode.append("    if v is not None:")
                if info.group is not None:
                    earlier = group_members.setdefault(info.group, [])
                    if earlier:
                        clash = " or ".join(f"{name!r} in kw" for name in earlier)
                        encode.append(f"        if {clash}: raise _Fallback")
                    earlier.append(upb_name)
                    oneof = descriptor.containing_oneof
                    if oneof is None:
                        raise _Unplannable(f"{cls.__qualname__}.{info.name} is in no oneof")
                    variable = oneofs.setdefault(oneof.name, f"w{len(oneofs)}")
                    present = f"{variable} == {upb_name!r}"
                else:
                    present = f"u.HasField({upb_name!r})"
                encode.append(f"        kw[{upb_name!r}] = {to_upb('v')}")
                values.append(f"{info.name!r}: {from_upb(source)} if {present} else None")
                sparse.field(info.name, descriptor, "None", from_upb("v"))
            else:
                encode += ["    if v:", f"        kw[{upb_name!r}] = {to_upb('v')}"]
                values.append(f"{info.name!r}: {from_upb(source)}")
                sparse.field(
                    info.name, descriptor, from_upb(repr(descriptor.default_value)), from_upb("v")
                )
        encode.append("    return kw")
        if len(infos) >= self.sparse_from:
            decode = sparse.source()
        else:
            decode += [
                f"    {variable} = u.WhichOneof({name!r})" for name, variable in oneofs.items()
            ]
            values.append(f"{UNKNOWN_FIELDS_ATTRIBUTE!r}: b''")
            decode += [
                f"    m = _new(_C{number})",
                "    m.__dict__ = {" + ", ".join(values) + "}",
                "    return m",
            ]
        self.constants[f"_C{number}"] = cls
        self.constants[f"_U{number}"] = self.upb_classes[cls]
        top = [
            f"def _E{number}(m):",
            f"    return _U{number}(**_e{number}(m)).SerializeToString()",
            f"def _D{number}(data):",
            f"    return _d{number}(_U{number}.FromString(data))",
        ]
        return "\n".join(encode + decode + top) + "\n"
