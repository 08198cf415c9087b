"""A connection's h2 ``H2Connection`` is where the compat module says, on both ends.

``/metrics`` reads each connection's flow-control windows through it
(``bugless_core.grpc._windows``) and the corked protocol changes its settings;
a grpclib that moves it must fail ``verify_live`` naming it, not the scrape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from compat_echo import PeerRecorder
from grpclib.client import UnaryUnaryMethod
from grpclib.protocol import Peer
from h2.connection import H2Connection

from bugless_core._compat import grpclib as compat
from bugless_core._compat import h2 as h2_compat
from bugless_core.grpc import CorkedChannel, CorkedServer
from bugless_core.grpc._cork import CorkedH2Protocol
from bugless_testing.codecs import RawCodec


@pytest.fixture
async def called() -> AsyncIterator[tuple[CorkedServer, CorkedChannel, Peer]]:
    """A server and a channel that made one call, and the server's peer of it."""
    recorder = PeerRecorder()
    server = CorkedServer([recorder], codec=RawCodec())
    await server.start("127.0.0.1", 0)
    listener = compat.server_listener(server)
    assert listener is not None
    port = listener.sockets[0].getsockname()[1]
    channel = CorkedChannel("127.0.0.1", port, codec=RawCodec())
    try:
        echo: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(
            channel, "/test.Echo/Echo", bytes, bytes
        )
        assert await echo(b"ping", timeout=5) == b"ping"
        yield server, channel, recorder.peers[0]
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


async def test_both_ends_hold_their_h2_connection(
    called: tuple[CorkedServer, CorkedChannel, Peer],
) -> None:
    server, channel, peer = called
    compat.verify_live(channel=channel, server=server, peer=peer)
    protocol = compat.channel_protocol(channel)
    assert protocol is not None
    assert isinstance(compat.h2_connection(protocol), H2Connection)


@pytest.mark.parametrize("end", ["client", "server"])
async def test_a_moved_h2_connection_is_reported(
    called: tuple[CorkedServer, CorkedChannel, Peer], end: str
) -> None:
    server, channel, peer = called
    protocol: Any = (
        compat.channel_protocol(channel)
        if end == "client"
        else compat.peer_transport(peer).get_protocol()
    )
    state = vars(protocol.connection)
    state["_h2"] = state.pop("_connection")  # as a 0.5 might
    try:
        with pytest.raises(compat.GrpclibSurfaceChanged, match=r"Connection\._connection"):
            compat.verify_live(channel=channel, server=server, peer=peer)
    finally:
        state["_connection"] = state.pop("_h2")


async def test_corked_connections_receive_quietly_and_say_so_only_while_receiving(
    called: tuple[CorkedServer, CorkedChannel, Peer],
) -> None:
    """Each corked connection spares h2's trace line the look at its locals
    (bugless_core._compat.h2.RECEIVING), and only inside its own receive."""
    _, channel, peer = called
    client = compat.channel_protocol(channel)
    server = compat.peer_transport(peer).get_protocol()
    assert isinstance(client, CorkedH2Protocol)
    assert isinstance(server, CorkedH2Protocol)
    assert client._quiet
    assert server._quiet
    assert h2_compat.RECEIVING.quiet is False
