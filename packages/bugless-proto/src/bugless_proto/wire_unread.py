"""Received messages whose one message field stays its bytes until read.

The Model's search page keys its compiled plan, its page tokens'
fingerprint and its query check on the query's encoded bytes
(:mod:`bugless_model_postgres._search_plans`); a page of a query it has
seen reads nothing else of the query. Decoding the query into betterproto2
anyway costs 6-19 µs a page on the 1,000,000-issue benchmark's queries, and
encoding it back for the key 3-15 µs more (bench/JOURNAL.md, "Session 12").
For a class :func:`leave_unread` names, the gRPC codec
(``bugless_core.grpc.UpbCodec``) decodes through :func:`decode`: the rest of
the message as :func:`bugless_proto.wire.decode` does, the named field as a
message of its class that is its bytes until read
(:func:`bugless_proto.wire.encoded`). Its first read of anything but its wire
form decodes it in place, so a change to it makes it an ordinary message
(no longer :class:`~bugless_proto.wire.Encoded`): code that takes the bytes
of a field only while it is still ``Encoded`` never sees stale ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import betterproto2
from google.protobuf.message import DecodeError

from bugless_proto import wire
from bugless_proto._compat_betterproto2 import fields_of

M = TypeVar("M", bound=betterproto2.Message)

_UNREAD: dict[type, tuple[str, type[betterproto2.Message]]] = {}
#: The classes :func:`leave_unread` named, with their field (read-only here).
UNREAD: Mapping[type, tuple[str, type[betterproto2.Message]]] = _UNREAD


def leave_unread(cls: type[betterproto2.Message], name: str) -> None:
    """Decode ``cls`` messages the codec receives with field ``name`` left as its bytes.

    Raises:
        ValueError: ``name`` is not a singular message field of ``cls``
            outside any oneof.
    """
    info = next((f for f in fields_of(cls) if f.name == name), None)
    if (
        info is None
        or info.proto_type != betterproto2.TYPE_MESSAGE
        or info.repeated
        or info.group is not None
        or info.unwrapped is not None
        or not isinstance(info.value_class, type)
        or not issubclass(info.value_class, betterproto2.Message)
    ):
        raise ValueError(f"{cls.__qualname__}.{name} is not a singular message field")
    _UNREAD[cls] = (name, info.value_class)


def decode(cls: type[M], data: bytes) -> M:
    """``wire.decode(cls, data)``, the field :func:`leave_unread` named left unread.

    The same message once the field is read, with one exception that
    :mod:`bugless_proto.wire` documents for upb already: input carrying the
    field twice (concatenated messages) merges its occurrences.
    """
    found = _UNREAD.get(cls)
    if found is not None:
        left = _decode_leaving(cls, data, *found)
        if left is not None:
            return left
    return wire.decode(cls, data)


def _decode_leaving(
    cls: type[M], data: bytes, name: str, field_class: type[betterproto2.Message]
) -> M | None:
    """``cls`` read from ``data`` with field ``name`` left encoded (None: decode it all)."""
    plan = wire.plan(cls)
    upb_class = plan.upb_class
    if upb_class is None:
        return None
    try:
        upb = upb_class.FromString(data)
    except DecodeError:
        return None
    if not upb.HasField(name):
        return None
    # The field's bytes as upb writes them (in field order, unknown fields
    # last: what wire.encode writes for the message they decode to).
    field_bytes = getattr(upb, name).SerializeToString()
    upb.ClearField(name)
    message = plan.decode(upb.SerializeToString())
    message.__dict__[name] = wire.encoded(field_class, field_bytes)
    return message  # type: ignore[return-value]  # the plan of cls decodes a cls


def unread_bytes(message: object) -> bytes | None:
    """The bytes of a message :func:`decode` left unread, while it is unread (else None)."""
    if isinstance(message, wire.Encoded):
        data: bytes = message.SerializeToString()
        return data
    return None
