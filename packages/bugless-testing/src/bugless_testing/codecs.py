"""A grpclib codec for bytes: gRPC with no protobuf at all.

The transport tests and the benchmarks' echo service (the transport floor)
send raw bytes, so that what they measure or check is the connection alone.
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.base import CodecBase


class RawCodec(CodecBase):
    """A grpclib codec that passes bytes through (no protobuf at all)."""

    __content_type__ = "application/grpc"
    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        """The message is already bytes."""
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        """Hand the bytes over as they are."""
        return data
