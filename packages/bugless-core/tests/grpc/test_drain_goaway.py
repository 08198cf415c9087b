"""A draining runner's graceful GOAWAY, as real clients meet it.

Two runners share a port (``reuse_port``, as replicas behind one address):
the first holds a call when it drains, and the second takes the connections
the first no longer accepts. A client that honours a graceful GOAWAY (grpcio,
a bugless ``CorkedChannel``) finishes the held call on the first and sends its
next call to the second; before, that call was refused as DRAINING, which
only a bugless client sends again. A bare grpclib client, which would cut
every call on a GOAWAY, is drained as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_test_server import HOLD_KEY, OpenChannel, SlowModel, StartRunner
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from prometheus_client import CollectorRegistry

from bugless_core._compat.grpclib import h2_connection
from bugless_core.failover import refused_while_draining
from bugless_core.grpc import (
    CorkedChannel,
    CorkedServer,
    GrpcServerSettings,
    GrpcServiceRunner,
    listening_port,
)
from bugless_core.grpc._calls import CallTracker
from bugless_core.grpc._cork import CorkedH2Protocol
from bugless_core.grpc._metrics import GrpcServerMetrics
from bugless_core.grpc._peer import ConnectionRegistry
from bugless_proto import v1
from bugless_testing.polling import eventually

GET_SERVER_INFO = "/bugless.v1.Model/GetServerInfo"


def _settings(port: int = 0) -> GrpcServerSettings:
    return GrpcServerSettings(
        insecure_local=True, port=port, reuse_port=True, drain_seconds=0.0, grace_seconds=30.0
    )


class Replicas:
    """Two runners on one port; :meth:`drain_first` drains the first until it stops accepting."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.first_model, self.second_model = SlowModel(), SlowModel()
        self._caplog = caplog
        self.first: GrpcServiceRunner | None = None
        self.drain: asyncio.Task[None] | None = None

    async def start(self, start_runner: StartRunner) -> int:
        """Start the first replica; the second starts at :meth:`drain_first`.

        Until then every connection is the first's: the kernel spreads a
        shared port's connections over its listeners.
        """
        self._start_runner = start_runner
        self.first = await start_runner(_settings(), servicer=self.first_model)
        return self.first.port

    async def drain_first(self) -> None:
        assert self.first is not None
        await self._start_runner(_settings(self.first.port), servicer=self.second_model)
        self.drain = asyncio.create_task(self.first.drain())
        await eventually(
            lambda: "stopped accepting calls" in self._caplog.text,
            "'stopped accepting calls' in self._caplog.text",
        )

    def answered(self) -> tuple[int, int]:
        """Calls each replica's handler ran."""
        return len(self.first_model.seen_connection_ids), len(self.second_model.seen_connection_ids)


@pytest.fixture
async def replicas(
    start_runner: StartRunner, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Replicas]:
    caplog.set_level(logging.INFO, logger="bugless_core.grpc")
    replicas = Replicas(caplog)
    yield replicas
    replicas.first_model.release_held()
    if replicas.drain is not None:
        await asyncio.wait_for(replicas.drain, timeout=10)


async def test_a_grpcio_client_finishes_its_call_and_sends_the_next_to_another_replica(
    replicas: Replicas, start_runner: StartRunner
) -> None:
    """On the old code the second call failed: UNAVAILABLE, "shutting down"."""
    port = await replicas.start(start_runner)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        get_server_info = channel.unary_unary(
            GET_SERVER_INFO,
            request_serializer=bytes,
            response_deserializer=v1.GetServerInfoResponse.parse,
        )
        held = asyncio.ensure_future(
            get_server_info(v1.GetServerInfoRequest(), timeout=30, metadata=((HOLD_KEY, "1"),))
        )
        await eventually(lambda: replicas.answered() == (1, 0), "replicas.answered() == (1, 0)")

        await replicas.drain_first()
        reply = await get_server_info(v1.GetServerInfoRequest(), timeout=10)
        assert reply.backend == "test"
        assert replicas.answered() == (1, 1)
        assert "graceful GOAWAY on 1 connection" in replicas._caplog.text

        assert not held.done()
        replicas.first_model.release_held()
        assert (await held).backend == "test"
        assert replicas.answered() == (1, 1)
        # grpcio closes the connection it was told to leave once its call ended,
        # so the drain need not linger for it.
        assert replicas.drain is not None
        await asyncio.wait_for(replicas.drain, timeout=5)


async def test_a_bugless_channel_finishes_its_call_and_sends_the_next_to_another_replica(
    replicas: Replicas, start_runner: StartRunner
) -> None:
    """No failover here: on the old code the second call was the DRAINING refusal."""
    port = await replicas.start(start_runner)
    channel = CorkedChannel("127.0.0.1", port)
    try:
        stub = v1.ModelStub(channel, timeout=30)
        held = asyncio.create_task(stub.get_server_info(metadata={HOLD_KEY: "1"}))
        await eventually(lambda: replicas.answered() == (1, 0), "replicas.answered() == (1, 0)")

        await replicas.drain_first()
        assert (await stub.get_server_info()).backend == "test"
        assert replicas.answered() == (1, 1)

        assert not held.done()
        replicas.first_model.release_held()
        assert (await held).backend == "test"
        assert replicas.drain is not None
        await asyncio.wait_for(replicas.drain, timeout=5)
        assert (await stub.get_server_info()).backend == "test"
        assert replicas.answered() == (1, 2)
    finally:
        channel.close()


async def test_a_bare_grpclib_client_is_sent_no_goaway_and_keeps_its_call(
    replicas: Replicas, start_runner: StartRunner, open_channel: OpenChannel
) -> None:
    """grpclib would fail every call on a GOAWAY (StreamTerminatedError): a
    client that does not say it honours one keeps the drain it had, its
    running call answered, a new one refused as DRAINING (sent again by
    bugless's failover)."""
    port = await replicas.start(start_runner)
    stub = v1.ModelStub(open_channel(port), timeout=30)
    held = asyncio.create_task(stub.get_server_info(metadata={HOLD_KEY: "1"}))
    await eventually(lambda: replicas.answered() == (1, 0), "replicas.answered() == (1, 0)")

    await replicas.drain_first()
    assert "GOAWAY" not in replicas._caplog.text
    with pytest.raises(GRPCError) as refused:
        await stub.get_server_info()
    assert refused.value.status is Status.UNAVAILABLE
    assert refused_while_draining(refused.value)

    replicas.first_model.release_held()
    assert (await held).backend == "test"
    assert replicas.answered() == (1, 0)


async def test_a_grpcio_client_first_heard_from_after_the_stop_is_sent_a_goaway_then(
    replicas: Replicas, start_runner: StartRunner
) -> None:
    """A connection no call came on before the stop has a client the server
    cannot name yet. Its first call names it: the server refuses the call
    and writes GOAWAY(0) ahead of the refusal, so grpcio takes the call for
    one the server never processed (it was not) and sends it again on a new
    connection, to the other replica. On the old code: UNAVAILABLE."""
    port = await replicas.start(start_runner)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        get_server_info = channel.unary_unary(
            GET_SERVER_INFO,
            request_serializer=bytes,
            response_deserializer=v1.GetServerInfoResponse.parse,
        )
        await replicas.drain_first()
        assert "GOAWAY" not in replicas._caplog.text
        assert (await get_server_info(v1.GetServerInfoRequest(), timeout=10)).backend == "test"
        assert replicas.answered() == (0, 1)
        assert (await get_server_info(v1.GetServerInfoRequest(), timeout=10)).backend == "test"
        assert replicas.answered() == (0, 2)


async def test_a_call_read_before_the_stop_whose_task_had_not_run_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server stops right after reading a call's HEADERS, before the call's
    task first runs: the GOAWAY names that stream as one it answers, so the
    call is answered, not refused as a call made after the stop. On the old
    code it was refused (UNAVAILABLE, DRAINING)."""
    connections = ConnectionRegistry()
    tracker = CallTracker(
        service_name="test-model",
        metrics=GrpcServerMetrics.for_registry(CollectorRegistry()),
        connections=connections,
        drain_exempt_methods=(),
        access=None,
    )
    servicer = SlowModel()
    server = CorkedServer(
        tracker.track([servicer]),
        on_connection=connections.accepted,
        on_call_done=tracker.call_ended,
    )
    sent_goaway: list[int] = []
    receive = CorkedH2Protocol.data_received

    def stopping_after_the_second_call(protocol: CorkedH2Protocol, data: bytes) -> None:
        receive(protocol, data)
        read = h2_connection(protocol).highest_inbound_stream_id
        if protocol.side == "server" and read >= 3 and not sent_goaway:
            sent_goaway.append(tracker.refuse_new_calls())

    monkeypatch.setattr(CorkedH2Protocol, "data_received", stopping_after_the_second_call)
    await server.start("127.0.0.1", 0)
    channel = CorkedChannel("127.0.0.1", listening_port(server))
    try:
        stub = v1.ModelStub(channel, timeout=10)
        assert (await stub.get_server_info()).backend == "test"  # stream 1
        assert (await stub.get_server_info()).backend == "test"  # stream 3
        assert sent_goaway == [1]
        assert len(servicer.seen_connection_ids) == 2
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
