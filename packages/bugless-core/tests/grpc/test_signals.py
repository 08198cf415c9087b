"""SIGTERM drains a real server process, as Kubernetes will stop it."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from grpc_test_server import (
    DELAY_KEY,
    NOT_SERVING,
    PROCESS_DRAIN_SECONDS,
    SERVING,
    OpenChannel,
    ServerProcess,
    health_status,
)
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bugless_core.exit_status import EXIT_CUT_AT_SIGNAL
from bugless_core.failover import refused_while_draining
from bugless_proto import v1


async def wait_for_status(channel: Channel, expected: int, service: str = "") -> None:
    """Poll health until it reports ``expected``: signal delivery takes a
    moment on a busy machine, so a fixed sleep would be a race. Bounded by the
    drain, after which the server answers no new call."""
    async with asyncio.timeout(PROCESS_DRAIN_SECONDS - 0.2):
        while await health_status(channel, service) != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_sigterm_reports_not_serving_finishes_the_call_in_flight_and_exits_0(
    server_process: ServerProcess, open_channel: OpenChannel
) -> None:
    channel = open_channel(server_process.port)
    stub = v1.ModelStub(channel)
    assert await health_status(channel) == SERVING
    slow_call = asyncio.create_task(stub.get_server_info(timeout=10, metadata={DELAY_KEY: "3"}))
    await asyncio.sleep(0.1)

    server_process.signal(signal.SIGTERM)
    await wait_for_status(channel, NOT_SERVING)
    assert await health_status(channel, "bugless.v1.Model") == NOT_SERVING
    reply = await slow_call
    assert reply.backend == "test"
    assert await server_process.exit_code(within=10) == 0
    messages = [record["message"] for record in await server_process.log_records()]
    assert any("received SIGTERM" in str(message) for message in messages)
    assert any("stopped; 0 calls were cancelled" in str(message) for message in messages)


async def test_second_signal_during_drain_stops_at_once_and_exits_1_having_cut_a_call(
    server_process: ServerProcess, open_channel: OpenChannel
) -> None:
    """As the web tier does: an operator's cut shows in the exit status."""
    channel = open_channel(server_process.port)
    stub = v1.ModelStub(channel)
    assert await health_status(channel) == SERVING
    stuck_call = asyncio.create_task(stub.get_server_info(timeout=10, metadata={DELAY_KEY: "30"}))
    await asyncio.sleep(0.1)

    server_process.signal(signal.SIGTERM)
    await wait_for_status(channel, NOT_SERVING)
    server_process.signal(signal.SIGINT)

    assert await server_process.exit_code(within=3) == EXIT_CUT_AT_SIGNAL == 1
    with pytest.raises(StreamTerminatedError):
        await stuck_call
    messages = [str(record["message"]) for record in await server_process.log_records()]
    assert any("received SIGINT again; stopping now" in message for message in messages)
    assert any("stopped; 1 calls were cancelled" in message for message in messages)


async def test_second_signal_with_no_call_running_exits_0(
    server_process: ServerProcess, open_channel: OpenChannel
) -> None:
    """Nothing was cut, so stopping early is a clean stop."""
    channel = open_channel(server_process.port)
    assert await health_status(channel) == SERVING

    server_process.signal(signal.SIGTERM)
    await wait_for_status(channel, NOT_SERVING)
    server_process.signal(signal.SIGTERM)

    assert await server_process.exit_code(within=3) == 0
    messages = [str(record["message"]) for record in await server_process.log_records()]
    assert any("received SIGTERM again; stopping now" in message for message in messages)
    assert any("stopped; 0 calls were cancelled" in message for message in messages)


async def test_a_call_sent_as_the_drain_stops_accepting_is_refused_not_cut_off(
    server_process: ServerProcess, open_channel: OpenChannel
) -> None:
    """The rolling restart's lost call (the HA drill, ci55): a frontend whose
    connection had no call in flight when the server stopped accepting sent
    one just then, and the server had closed the connection under it: the
    call failed with "Connection lost", which no client may send again (it
    may have run). Refused as DRAINING instead, it is sent elsewhere."""
    channel = open_channel(server_process.port)
    stub = v1.ModelStub(channel)
    assert await health_status(channel) == SERVING  # the connection is open, and idle

    server_process.signal(signal.SIGTERM)
    await server_process.wait_logged("stopped accepting calls", within=PROCESS_DRAIN_SECONDS + 10)
    # A client whose event loop runs late, as on a loaded machine: whatever the
    # server does next reaches this socket while the loop cannot read it.
    time.sleep(0.2)  # noqa: ASYNC251 - the blocked loop is the point
    with pytest.raises(GRPCError) as refused:
        await stub.get_server_info(timeout=5)
    assert refused_while_draining(refused.value), refused.value
    assert await server_process.exit_code(within=10) == 0
    messages = [str(record["message"]) for record in await server_process.log_records()]
    assert any("stopped; 0 calls were cancelled" in message for message in messages)


async def test_a_first_call_on_a_connection_accepted_before_the_stop_is_refused_not_cut_off(
    server_process: ServerProcess, open_channel: OpenChannel
) -> None:
    """The drain's linger counted only the connections a call had come on: a
    connection accepted just before the stop, its first call on its way, was
    closed at once under that call ("Connection lost", which no client may
    send again). Every accepted connection is kept and refused alike."""
    channel = open_channel(server_process.port)
    stub = v1.ModelStub(channel)
    await channel.__connect__()  # connected, and no call made on it

    server_process.signal(signal.SIGTERM)
    await server_process.wait_logged("stopped accepting calls", within=PROCESS_DRAIN_SECONDS + 10)
    time.sleep(0.2)  # noqa: ASYNC251 - a late client loop, as above
    with pytest.raises(GRPCError) as refused:
        await stub.get_server_info(timeout=5)
    assert refused_while_draining(refused.value), refused.value
    assert await server_process.exit_code(within=10) == 0
    messages = [str(record["message"]) for record in await server_process.log_records()]
    assert any("kept 1 connection(s) open" in message for message in messages), messages
