"""The wire codec of every bugless gRPC server and channel: upb under betterproto2.

grpclib's ``ProtoCodec`` calls ``SerializeToString``/``FromString`` on the
message classes, which for betterproto2 classes is pure-Python encoding: 30-47%
of the Model's and the web tier's CPU on search pages (bench/JOURNAL.md).
:class:`UpbCodec` hands betterproto2 messages to :mod:`bugless_proto.wire`
instead, which gives the same bytes and objects but lets the C protobuf
runtime (upb) do the work. Handlers and callers still see betterproto2
messages; nothing else changes.

Messages that are not betterproto2's (grpclib's health and reflection
services use ``google.protobuf`` classes) are upb messages already and go as
grpclib would send them. A betterproto2 class that defines its own
``SerializeToString`` keeps it (the Authenticator's pre-encoded
``UsersResponse``); see :mod:`bugless_proto.wire`. A class with a field a
server reads only when it is new (:func:`bugless_proto.wire_unread.leave_unread`)
is decoded with that field left as its bytes until read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import betterproto2
from grpclib.encoding.base import CodecBase

from bugless_proto import wire, wire_unread


class UpbCodec(CodecBase):
    """grpclib's ``application/grpc+proto`` codec, encoding betterproto2 messages with upb.

    What to do with a class is decided once per class and kept, so a call
    costs one dictionary look-up on top of the conversion.
    """

    __content_subtype__ = "proto"

    def __init__(self) -> None:
        """A codec with nothing decided yet."""
        self._encoders: dict[type, Callable[[Any], bytes]] = {}
        self._decoders: dict[type, Callable[[bytes], Any]] = {}

    def encode(self, message: Any, message_type: Any) -> bytes:
        """The wire form of ``message``, which must be a ``message_type``.

        Raises:
            TypeError: ``message`` is of another type (as grpclib's own codec).
        """
        if not isinstance(message, message_type):
            raise TypeError(f"Message must be of type {message_type!r}, not {type(message)!r}")
        cls = type(message)
        encoder = self._encoders.get(cls)
        if encoder is None:
            encoder = self._encoders[cls] = _encoder(cls)
        return encoder(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        """A ``message_type`` read from ``data`` (a field left unread, for a class named so)."""
        if message_type in wire_unread.UNREAD:
            return wire_unread.decode(message_type, data)
        decoder = self._decoders.get(message_type)
        if decoder is None:
            decoder = self._decoders[message_type] = _decoder(message_type)
        return decoder(data)


def _encoder(cls: type) -> Callable[[Any], bytes]:
    if issubclass(cls, betterproto2.Message):
        return wire.plan(cls).encode
    return _serialize


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _decoder(cls: Any) -> Callable[[bytes], Any]:
    if isinstance(cls, type) and issubclass(cls, betterproto2.Message):
        return wire.plan(cls).decode
    decoder: Callable[[bytes], Any] = cls.FromString
    return decoder
