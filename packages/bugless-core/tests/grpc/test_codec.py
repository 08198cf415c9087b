"""The upb codec on real gRPC connections: betterproto2's bytes, betterproto2 objects.

Servers are :class:`GrpcServiceRunner` (so :class:`CorkedServer` with
:class:`UpbCodec`); clients are corked channels with the same codec, or with a
raw-bytes codec to see exactly what crossed the wire. The equivalence of the
conversion for every message, on random messages, is proven in
bugless-proto's ``tests/test_wire.py``; these tests prove the codec is what
servers and channels use, and that the paths around it (pre-encoded replies,
unknown fields from a newer peer, grpclib's own protobuf services, error
details) still work.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import pytest
from grpc_test_server import SERVING, OpenChannel, SlowModel, StartRunner, health_status
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.encoding.proto import ProtoCodec

from bugless_core.clients import ServiceAddress
from bugless_core.grpc import CorkedChannel, UpbCodec
from bugless_proto import v1, wire
from bugless_proto._compat_betterproto2 import set_unknown_fields, unknown_fields
from bugless_testing.codecs import RawCodec

GET_SERVER_INFO = "/bugless.v1.Model/GetServerInfo"
GET_USERS = "/bugless.v1.Authenticator/GetUsers"
_PRE_ENCODED = bytes(v1.UsersResponse(users=[v1.User(user_id="u_precoded")], missing=["gone"]))


class _PreEncodedUsers(v1.UsersResponse):
    """A reply whose bytes were joined in advance, as the Authenticator's are."""

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name, called by the codec
        return _PRE_ENCODED

    __bytes__ = SerializeToString


class _Directory(v1.AuthenticatorBase):
    """Answers GetUsers with a pre-encoded reply and keeps the requests it read."""

    def __init__(self) -> None:
        self.requests: list[v1.GetUsersRequest] = []

    async def get_users(self, message: v1.GetUsersRequest) -> v1.UsersResponse:
        self.requests.append(message)
        return _PreEncodedUsers()  # no fields: only its own wire form says anything


@pytest.fixture
async def raw_channel() -> AsyncIterator[OpenChannel]:
    """Open channels that hand over the bytes received, undecoded."""
    channels: list[Channel] = []

    def open_(port: int) -> Channel:
        channel = CorkedChannel("127.0.0.1", port, codec=RawCodec())
        channels.append(channel)
        return channel

    yield open_
    for channel in channels:
        channel.close()


def _raw(channel: Channel, route: str) -> UnaryUnaryMethod[bytes, bytes]:
    return UnaryUnaryMethod(channel, route, bytes, bytes)


async def test_frontend_channels_and_servers_go_through_the_upb_plans(
    start_runner: StartRunner,
) -> None:
    """A request with unknown fields is the one thing the plans hand to betterproto2
    and count: both ends count it, so both ends used the upb codec."""
    runner = await start_runner(servicer=_Directory())
    plan = wire.plan(v1.GetUsersRequest)
    before = plan.fallbacks
    request = v1.GetUsersRequest(user_ids=["u_precoded"])
    set_unknown_fields(request, b"\xfa\x3e\x05later")
    channel = ServiceAddress("127.0.0.1", runner.port).channel()
    try:
        await v1.AuthenticatorStub(channel).get_users(request, timeout=5)
    finally:
        channel.close()
    assert plan.fast
    assert plan.fallbacks == before + 2  # encoded by the channel, decoded by the server


async def test_replies_carry_betterproto2s_bytes(
    start_runner: StartRunner, raw_channel: OpenChannel
) -> None:
    runner = await start_runner()
    data = await _raw(raw_channel(runner.port), GET_SERVER_INFO)(b"", timeout=5)
    assert data == bytes(
        v1.GetServerInfoResponse(backend="test", version="0", capabilities=["slow"])
    )


async def test_a_stub_on_a_corked_channel_gets_betterproto2_objects(
    start_runner: StartRunner,
) -> None:
    runner = await start_runner()
    channel = ServiceAddress("127.0.0.1", runner.port).channel()
    try:
        reply = await v1.ModelStub(channel).get_server_info(v1.GetServerInfoRequest(), timeout=5)
    finally:
        channel.close()
    assert reply == v1.GetServerInfoResponse(backend="test", version="0", capabilities=["slow"])
    assert type(reply) is v1.GetServerInfoResponse


async def test_a_pre_encoded_reply_is_sent_as_it_is(
    start_runner: StartRunner, raw_channel: OpenChannel
) -> None:
    runner = await start_runner(servicer=_Directory())
    request = bytes(v1.GetUsersRequest(user_ids=["u_precoded", "gone"]))
    assert await _raw(raw_channel(runner.port), GET_USERS)(request, timeout=5) == _PRE_ENCODED
    channel = ServiceAddress("127.0.0.1", runner.port).channel()
    try:
        reply = await v1.AuthenticatorStub(channel).get_users(
            v1.GetUsersRequest(user_ids=["u_precoded"]), timeout=5
        )
    finally:
        channel.close()
    assert reply == v1.UsersResponse(users=[v1.User(user_id="u_precoded")], missing=["gone"])


async def test_fields_of_a_newer_peer_reach_the_handler_as_unknown_fields(
    start_runner: StartRunner, raw_channel: OpenChannel
) -> None:
    directory = _Directory()
    runner = await start_runner(servicer=directory)
    newer_field = b"\xfa\x3e\x05later"  # field 1007, a string this schema lacks
    request = bytes(v1.GetUsersRequest(user_ids=["u_1", "ü_2"])) + newer_field
    await _raw(raw_channel(runner.port), GET_USERS)(request, timeout=5)
    (seen,) = directory.requests
    assert seen.user_ids == ["u_1", "ü_2"]
    assert unknown_fields(seen) == newer_field
    assert wire.encode(seen) == request  # and would be passed on unchanged


async def test_grpclibs_own_protobuf_services_work_through_the_codec(
    start_runner: StartRunner,
) -> None:
    runner = await start_runner()
    channel = ServiceAddress("127.0.0.1", runner.port).channel()
    try:
        assert await health_status(channel) == SERVING
        assert await health_status(channel, "bugless.v1.Model") == SERVING
    finally:
        channel.close()


async def test_a_server_on_the_upb_codec_answers_a_client_on_grpclibs_own(
    start_runner: StartRunner,
) -> None:
    runner = await start_runner()
    channel = CorkedChannel("127.0.0.1", runner.port, codec=ProtoCodec())
    try:
        reply = await v1.ModelStub(channel).get_server_info(v1.GetServerInfoRequest(), timeout=5)
    finally:
        channel.close()
    assert reply.capabilities == ["slow"]


def test_the_codec_refuses_a_message_of_another_type() -> None:
    with pytest.raises(TypeError, match="must be of type"):
        UpbCodec().encode(v1.GetServerInfoRequest(), v1.GetUsersRequest)


def test_the_codec_decodes_what_it_encodes_for_both_kinds_of_message() -> None:
    from grpclib.health.v1.health_pb2 import HealthCheckRequest

    codec = UpbCodec()
    issue = v1.Issue(
        id=-1,
        title="ünïcode",
        cc=["a"],
        created_at=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC),
    )
    assert codec.encode(issue, v1.Issue) == bytes(issue)
    assert codec.decode(bytes(issue), v1.Issue) == issue
    health = HealthCheckRequest(service="bugless.v1.Model")
    assert codec.decode(codec.encode(health, HealthCheckRequest), HealthCheckRequest) == health


async def test_slow_model_still_sees_one_connection_per_channel(
    start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    """The handler context (peer, certificate) is unaffected by the codec."""
    model = SlowModel()
    runner = await start_runner(servicer=model)
    channel = CorkedChannel("127.0.0.1", runner.port)
    try:
        stub = v1.ModelStub(channel)
        await stub.get_server_info(v1.GetServerInfoRequest(), timeout=5)
        await stub.get_server_info(v1.GetServerInfoRequest(), timeout=5)
    finally:
        channel.close()
    assert len(set(model.seen_connection_ids)) == 1
