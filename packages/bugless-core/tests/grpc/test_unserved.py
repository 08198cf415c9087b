"""A method a bugless server does not serve is UNIMPLEMENTED, naming it, to every client.

grpclib answers a path its server does not map with bare headers (no
content-type), which grpclib's client reads as UNKNOWN "Missing content-type
header": a newer client calling a server of an earlier release learnt
nothing of what was wrong. The tests call a runner serving the Model only,
over a real socket, for the Authenticator's GetUserGroups.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_test_server import SlowModel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from prometheus_client import CollectorRegistry

from bugless_core.grpc import CorkedChannel, GrpcServerSettings, GrpcServiceRunner
from bugless_proto import v1

UNSERVED = "/bugless.v1.Authenticator/GetUserGroups"
MESSAGE = f"method {UNSERVED} is not served by this server; is it of an earlier release?"


@pytest.fixture
async def runner() -> AsyncIterator[tuple[GrpcServiceRunner, CollectorRegistry]]:
    registry = CollectorRegistry()
    runner = GrpcServiceRunner(
        [SlowModel()],
        GrpcServerSettings(insecure_local=True, drain_seconds=0),
        name="unserved-test",
        metrics_registry=registry,
    )
    await runner.start()
    yield runner, registry
    await runner.close()


def _handled(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """``grpc_server_handled_total`` by (method, code)."""
    return {
        (sample.labels["grpc_method"], sample.labels["grpc_code"]): sample.value
        for metric in registry.collect()
        if metric.name == "grpc_server_handled"
        for sample in metric.samples
        if sample.name == "grpc_server_handled_total"
    }


def _unserved(registry: CollectorRegistry) -> float | None:
    """``grpc_server_unserved_total``: calls of a method the server does not serve."""
    return registry.get_sample_value("grpc_server_unserved_total")


async def _watch_unserved(channel: CorkedChannel) -> None:
    """Open a stream of a method the server does not map, send one message, read one."""
    async with channel.request(
        "/bugless.v1.Model/WatchEverything",
        Cardinality.STREAM_STREAM,
        v1.WatchRequest,
        v1.WatchEvent,
        timeout=10,
    ) as stream:
        await stream.send_message(v1.WatchRequest(issue_id=1))
        await stream.recv_message()


async def test_a_grpclib_client_is_told_the_method_is_not_served(
    runner: tuple[GrpcServiceRunner, CollectorRegistry],
) -> None:
    """Before: UNKNOWN "Missing content-type header"."""
    server, registry = runner
    assert _unserved(registry) == 0.0  # exported from the start, for a rate() to read
    channel = CorkedChannel("127.0.0.1", server.port)
    try:
        with pytest.raises(GRPCError) as unary:
            await v1.AuthenticatorStub(channel).get_user_groups(
                v1.GetUserGroupsRequest(user_ids=["u_1"]), timeout=10
            )
        assert (unary.value.status, unary.value.message) == (Status.UNIMPLEMENTED, MESSAGE)
        # A stream is answered the same, without the server reading a message.
        with pytest.raises(GRPCError) as streaming:
            await _watch_unserved(channel)
        assert (streaming.value.status, streaming.value.message) == (
            Status.UNIMPLEMENTED,
            "method /bugless.v1.Model/WatchEverything is not served by this server; "
            "is it of an earlier release?",
        )
        # The connection serves what the server maps as before.
        info = await v1.ModelStub(channel).get_server_info(v1.GetServerInfoRequest(), timeout=10)
        assert info.backend == "test"
    finally:
        channel.close()
    # Counted under no method (its label would be any path a client makes up),
    # in a counter of their own; the served call is counted as before.
    assert _handled(registry) == {("GetServerInfo", "OK"): 1.0}
    assert _unserved(registry) == 2.0


async def test_a_grpcio_client_is_told_the_method_is_not_served(
    runner: tuple[GrpcServiceRunner, CollectorRegistry],
) -> None:
    """grpcio read grpclib's bare answer as UNIMPLEMENTED "Method not found", naming nothing."""
    server, registry = runner
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        get_user_groups = channel.unary_unary(
            UNSERVED,
            request_serializer=bytes,
            response_deserializer=v1.GetUserGroupsResponse.parse,
        )
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await get_user_groups(v1.GetUserGroupsRequest(user_ids=["u_1"]), timeout=10)
        assert (unary.value.code(), unary.value.details()) == (
            grpc.StatusCode.UNIMPLEMENTED,
            MESSAGE,
        )
        # Health is served as before.
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=HealthCheckRequest.SerializeToString,
            response_deserializer=HealthCheckResponse.FromString,
        )
        health = await check(HealthCheckRequest(), timeout=10)
        assert health.status == HealthCheckResponse.SERVING
    assert _unserved(registry) == 1.0
