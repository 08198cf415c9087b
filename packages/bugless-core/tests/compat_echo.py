"""A raw-bytes echo that records each call's grpclib ``Peer``, for the compat tests.

``bugless_core._compat.grpclib.verify_live`` needs a live server, channel and
peer: :class:`PeerRecorder` is the smallest servable that yields all three.
"""

from __future__ import annotations

from typing import Any

from grpclib.const import Cardinality, Handler
from grpclib.protocol import Peer

from bugless_core._compat.grpclib import call_stream_id


class PeerRecorder:
    """A raw-bytes unary echo that keeps the grpclib ``Peer`` and stream id of each call."""

    def __init__(self) -> None:
        """No call yet."""
        self.peers: list[Peer] = []
        self.stream_ids: list[int] = []

    def __mapping__(self) -> dict[str, Handler]:
        """The one method, ``/test.Echo/Echo``."""
        return {"/test.Echo/Echo": Handler(self.echo, Cardinality.UNARY_UNARY, bytes, bytes)}

    async def echo(self, stream: Any) -> None:
        """Answer the request's bytes, keeping the call's peer."""
        self.peers.append(stream.peer)
        self.stream_ids.append(call_stream_id(stream))
        await stream.send_message(await stream.recv_message())
