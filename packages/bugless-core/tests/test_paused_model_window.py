"""A paused Model meeting cancelled calls keeps its connections working.

A real ``bugless model serve`` (mutual TLS, as the services run) is stopped
with SIGSTOP while a frontend's channel starts calls that each send a
request body and are cancelled by their short timeout. Continued with
SIGCONT, the Model reads the HEADERS, DATA and RST_STREAM of most of them at
once, so their handler tasks are cancelled before they ever ran. grpclib
alone never gave those calls' unread bytes back to the connection's
flow-control window: after a few rounds it was 0 and every call on that
connection timed out for as long as it lived. Every round here offers more
than half the window, and the ordinary calls after each must still succeed
on the same connection (``bugless_core._compat.grpclib``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
from grpclib.client import UnaryUnaryMethod
from grpclib.config import Configuration
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bugless_core._compat.grpclib import channel_protocol
from bugless_core.grpc import CorkedChannel
from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1
from bugless_testing.codecs import RawCodec
from bugless_testing.stack import paused

#: The connection window grpclib gives a peer (the Model does not change it).
WINDOW = Configuration().http2_connection_window_size
#: Bytes each call sends: fits one read of the Model, with its HEADERS and RST_STREAM.
BODY = 64 * 1024
#: Calls started (and cancelled) in each paused round: more than half the window.
CALLS = 40
#: Paused rounds: together, several windows' worth.
ROUNDS = 5
#: A cancelled call's timeout, while the Model is stopped.
CANCEL_AFTER = 0.5
#: Bound on an ordinary call (it answers at once when the connection works).
ORDINARY_TIMEOUT = 15.0

GET_SERVER_INFO = "/bugless.v1.Model/GetServerInfo"


def _request(padding: int) -> bytes:
    """A ``GetServerInfoRequest`` carrying ``padding`` bytes in an unknown field (15, bytes)."""
    length = bytearray()
    value = padding
    while True:
        byte, value = value & 0x7F, value >> 7
        length.append(byte | (0x80 if value else 0))
        if not value:
            break
    return b"\x7a" + bytes(length) + bytes(padding)


@pytest.fixture(scope="module")
def own_model(bugless_stack: LocalStack) -> Iterator[RunningService]:
    """A Model replica of this module's own: pausing it disturbs nothing else."""
    replica = bugless_stack.start_model(name="model-paused-window")
    try:
        yield replica
    finally:
        replica.process.signal(signal.SIGCONT)
        bugless_stack.stop_service(replica)


@pytest.fixture
async def get_server_info(
    own_model: RunningService,
) -> AsyncIterator[UnaryUnaryMethod[bytes, bytes]]:
    """``GetServerInfo`` on one channel to ``own_model``, as the web holds it (TLS, web's cert)."""
    address = own_model.address
    assert address is not None
    channel = CorkedChannel(address.host, address.port, ssl=address.ssl_context(), codec=RawCodec())
    try:
        yield UnaryUnaryMethod(channel, GET_SERVER_INFO, bytes, bytes)
    finally:
        channel.close()


async def _cancelled_call(method: UnaryUnaryMethod[bytes, bytes]) -> None:
    with contextlib.suppress(GRPCError, StreamTerminatedError, asyncio.TimeoutError):
        await method(_request(BODY), timeout=CANCEL_AFTER)


async def test_calls_cancelled_while_the_model_is_paused_leave_the_connection_working(
    own_model: RunningService, get_server_info: UnaryUnaryMethod[bytes, bytes]
) -> None:
    reply = v1.GetServerInfoResponse.parse(
        await get_server_info(_request(BODY), timeout=ORDINARY_TIMEOUT)
    )
    assert reply.backend == "postgres"
    connection = channel_protocol(get_server_info.channel)
    assert connection is not None
    assert ROUNDS * CALLS * BODY > 2 * WINDOW
    for round_ in range(ROUNDS):
        with paused(own_model):
            await asyncio.gather(*(_cancelled_call(get_server_info) for _ in range(CALLS)))
        for call in range(3):
            try:
                answer = await get_server_info(_request(BODY), timeout=ORDINARY_TIMEOUT)
            except GRPCError as exc:
                pytest.fail(f"round {round_}, ordinary call {call}: {exc!r}")
            assert v1.GetServerInfoResponse.parse(answer).backend == "postgres"
    # All of it went down the one connection the channel opened first.
    assert channel_protocol(get_server_info.channel) is connection
