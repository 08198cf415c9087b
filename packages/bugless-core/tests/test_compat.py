"""grpclib's private surface, as bugless_core uses it, is where the compat module says.

These fail with a message naming the attribute and the grpclib version when an
upgrade moves one; the simulated upgrades below prove that they would.
"""

from __future__ import annotations

import asyncio

import pytest
from compat_echo import PeerRecorder
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.protocol import EventsProcessor, H2Protocol, Stream
from grpclib.server import Server

from bugless_core._compat import grpclib as compat
from bugless_core.grpc import CorkedChannel, CorkedServer
from bugless_testing.codecs import RawCodec


def test_the_installed_grpclib_has_every_class_level_item() -> None:
    compat.verify()


async def test_a_live_server_channel_and_peer_have_every_instance_level_item() -> None:
    recorder = PeerRecorder()
    server = CorkedServer([recorder], codec=RawCodec())
    await server.start("127.0.0.1", 0)
    listener = compat.server_listener(server)
    assert listener is not None
    channel = CorkedChannel(
        "127.0.0.1",
        listener.sockets[0].getsockname()[1],
        codec=RawCodec(),
    )
    try:
        echo: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(
            channel, "/test.Echo/Echo", bytes, bytes
        )
        assert await echo(b"ping", timeout=5) == b"ping"
        (peer,) = recorder.peers
        compat.verify_live(channel=channel, server=server, peer=peer)
        assert recorder.stream_ids == [1]  # call_stream_id: a new connection's first stream
        protocol = compat.channel_protocol(channel)
        assert isinstance(protocol, H2Protocol)
        assert compat.peer_transport(peer).get_extra_info("peername") is not None
        assert compat.forget_channel_protocol(channel, protocol)
        assert compat.channel_protocol(channel) is None
        assert not compat.forget_channel_protocol(channel, protocol)
        assert await echo(b"again", timeout=5) == b"again"  # a new connection
        assert compat.channel_protocol(channel) not in (None, protocol)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
    assert compat.channel_protocol(channel) is None  # grpclib deletes it on close


def test_a_moved_protocol_factory_is_reported_with_the_grpclib_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(Server, "_protocol_factory")
    with pytest.raises(compat.GrpclibSurfaceChanged) as caught:
        compat.verify()
    message = str(caught.value)
    assert f"grpclib {compat.GRPCLIB_VERSION}: Server._protocol_factory is gone" in message
    assert "bugless_core._compat.grpclib" in message


def test_a_changed_protocol_factory_signature_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(self: Channel, loop: asyncio.AbstractEventLoop) -> H2Protocol:
        raise AssertionError("never called")

    monkeypatch.setattr(Channel, "_protocol_factory", factory)
    with pytest.raises(compat.GrpclibSurfaceChanged, match=r"Channel\._protocol_factory takes"):
        compat.verify()


async def test_a_renamed_channel_attribute_is_reported() -> None:
    recorder = PeerRecorder()
    server = CorkedServer([recorder], codec=RawCodec())
    await server.start("127.0.0.1", 0)
    listener = compat.server_listener(server)
    assert listener is not None
    channel = Channel("127.0.0.1", listener.sockets[0].getsockname()[1], codec=RawCodec())
    try:
        await UnaryUnaryMethod(channel, "/test.Echo/Echo", bytes, bytes)(b"x", timeout=5)
        vars(channel)["_connection"] = vars(channel).pop("_protocol")  # as a 0.5 might
        with pytest.raises(compat.GrpclibSurfaceChanged, match=r"Channel\._protocol"):
            compat.verify_live(channel=channel, server=server, peer=recorder.peers[0])
        vars(channel)["_protocol"] = vars(channel).pop("_connection")
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


def test_a_changed_events_processor_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The graceful GOAWAY's processor overrides these (GracefulGoawayProcessor)."""

    def register(self: EventsProcessor, stream: Stream, release: object) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(EventsProcessor, "register", register)
    with pytest.raises(
        compat.GrpclibSurfaceChanged, match=r"EventsProcessor\.register no longer takes"
    ):
        compat.verify()
