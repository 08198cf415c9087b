"""A server's graceful GOAWAY, as a bugless client meets it.

Other servers and HTTP/2 proxies send one, and so does a draining bugless
server (``test_drain_goaway.py``); grpclib's client cut every call on the
connection when one arrived.
Here a real server writes the GOAWAY frame a gracefully stopping server
sends (``NO_ERROR``, the last stream it answers) on a real connection, while
a second server shares its port (``reuse_port``, as replicas behind one
address) and takes the connections it no longer accepts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from grpclib.events import SendRequest, listen
from grpclib.exceptions import GRPCError, StreamTerminatedError
from hyperframe.frame import GoAwayFrame

from bugless_core._compat.grpclib import GracefulGoawayProcessor, channel_protocol, server_listener
from bugless_core.failover import DrainAwareModelStub, refused_while_draining
from bugless_core.grpc import CorkedChannel, CorkedServer
from bugless_proto import v1
from bugless_testing.polling import eventually


class HeldModel(v1.ModelBase):
    """Answers GetServerInfo with its name once released; counts what it answered."""

    def __init__(self, name: str, *, held: bool) -> None:
        self.name = name
        self.started = 0
        self.answered = 0
        self.cancelled = 0
        self._released = asyncio.Event()
        if not held:
            self._released.set()

    def release(self) -> None:
        self._released.set()

    async def get_server_info(self, message: v1.GetServerInfoRequest) -> v1.GetServerInfoResponse:
        self.started += 1
        try:
            await self._released.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.answered += 1
        return v1.GetServerInfoResponse(backend=self.name, version="0")


class Replica:
    """A server and the transports of the connections it accepted."""

    def __init__(self, model: HeldModel) -> None:
        self.model = model
        self.transports: list[asyncio.BaseTransport] = []
        self.server = CorkedServer([model], on_connection=self.transports.append)

    async def start(self, port: int) -> int:
        await self.server.start("127.0.0.1", port, reuse_port=True)
        listener = server_listener(self.server)
        assert listener is not None
        return int(listener.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        listener = server_listener(self.server)
        assert listener is not None
        listener.close()

    def go_away(self, last_stream_id: int) -> None:
        """Send what a gracefully stopping server sends on its one connection."""
        [transport] = self.transports
        frame = GoAwayFrame(stream_id=0, last_stream_id=last_stream_id, error_code=0)
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(frame.serialize())


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Replica, Replica]]:
    first, second = Replica(HeldModel("first", held=True)), Replica(HeldModel("second", held=False))
    yield first, second
    for replica in (first, second):
        replica.model.release()
        if server_listener(replica.server) is not None:  # started
            replica.server.close()
            await replica.server.wait_closed()


async def test_calls_a_graceful_goaway_answers_finish_and_the_others_are_sent_elsewhere(
    replicas: tuple[Replica, Replica],
) -> None:
    """The call on stream 1 (at or below ``last_stream_id``) is answered on
    the old connection; the one on stream 3, which the server did not
    process, is refused as DRAINING, and the Model stub's failover sends it
    again on a new connection, which the other replica answers. Each ran
    once. (grpclib alone failed both: StreamTerminatedError.)"""
    first, second = replicas
    port = await first.start(0)
    channel = CorkedChannel("127.0.0.1", port)
    try:
        stub = DrainAwareModelStub(channel, timeout=10)
        answered = asyncio.create_task(stub.get_server_info())
        await eventually(lambda: first.model.started == 1, "first.model.started == 1")
        not_processed = asyncio.create_task(stub.get_server_info())
        await eventually(lambda: first.model.started == 2, "first.model.started == 2")
        assert len(first.transports) == 1

        await second.start(port)
        first.stop_accepting()
        first.go_away(last_stream_id=1)

        elsewhere = await not_processed
        assert elsewhere.backend == "second"
        assert not answered.done()
        first.model.release()
        assert (await answered).backend == "first"
        assert (first.model.answered, first.model.cancelled) == (1, 1)
        assert second.model.answered == 1
        # The old connection closed once its last call ended; the channel's
        # next call goes to the new one.
        await eventually(first.transports[0].is_closing, "the first connection closing")
        assert (await stub.get_server_info()).backend == "second"
        assert len(second.transports) == 1
    finally:
        channel.close()


async def test_without_failover_the_unprocessed_call_fails_as_a_draining_refusal(
    replicas: tuple[Replica, Replica],
) -> None:
    """What any caller sees: the DRAINING refusal, which it may send again
    (bugless_core.failover, the web's retries, the Python client)."""
    first, _ = replicas
    port = await first.start(0)
    channel = CorkedChannel("127.0.0.1", port)
    try:
        stub = v1.ModelStub(channel, timeout=10)
        answered = asyncio.create_task(stub.get_server_info())
        await eventually(lambda: first.model.started == 1, "first.model.started == 1")
        not_processed = asyncio.create_task(stub.get_server_info())
        await eventually(lambda: first.model.started == 2, "first.model.started == 2")

        first.go_away(last_stream_id=1)
        with pytest.raises(GRPCError) as refused:
            await not_processed
        assert refused_while_draining(refused.value), refused.value
        first.model.release()
        assert (await answered).backend == "first"
    finally:
        channel.close()


async def test_a_goaway_with_an_error_still_ends_every_call(
    replicas: tuple[Replica, Replica],
) -> None:
    """Only a graceful GOAWAY keeps calls going: one with an error code is
    the connection failing, and no call on it can be trusted to finish."""
    first, _ = replicas
    port = await first.start(0)
    channel = CorkedChannel("127.0.0.1", port)
    try:
        stub = v1.ModelStub(channel, timeout=10)
        call = asyncio.create_task(stub.get_server_info())
        await eventually(lambda: first.model.started == 1, "first.model.started == 1")
        [transport] = first.transports
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(GoAwayFrame(stream_id=0, last_stream_id=1, error_code=2).serialize())
        with pytest.raises(StreamTerminatedError):
            await call
    finally:
        channel.close()


async def test_a_call_refused_by_a_goaway_stays_refused_when_the_server_closes_at_once(
    replicas: tuple[Replica, Replica],
) -> None:
    """A server with nothing left to answer sends GOAWAY and closes in the
    same breath: the client reads both before the call's task runs again,
    and the call is still the DRAINING refusal, not "Connection lost"."""
    first, _ = replicas
    port = await first.start(0)
    channel = CorkedChannel("127.0.0.1", port)
    try:
        stub = v1.ModelStub(channel, timeout=10)
        not_processed = asyncio.create_task(stub.get_server_info())
        await eventually(lambda: first.model.started == 1, "first.model.started == 1")

        first.go_away(last_stream_id=0)
        first.transports[0].close()
        with pytest.raises(GRPCError) as refused:
            await not_processed
        assert refused_while_draining(refused.value), refused.value
    finally:
        channel.close()


#: The ``last_stream_id`` of a two-step graceful shutdown's first GOAWAY
#: (grpc-go, Envoy): "stop opening streams", every stream still acted on.
ALL_STREAMS = 2**31 - 1


async def test_a_call_opened_after_a_goaway_that_still_acts_on_it_is_answered_there(
    replicas: tuple[Replica, Replica],
) -> None:
    """A call that took the connection before the GOAWAY and opened its
    stream after it (its SendRequest listener was still running) is on a
    stream the server said it may still act on (at or below
    ``last_stream_id``, here the first GOAWAY of a two-step shutdown): the
    server runs it, so the call must wait for its answer there. Refusing it
    as DRAINING (as this client did) sent it again elsewhere while the
    first server ran it too: a write done twice."""
    first, second = replicas
    port = await first.start(0)
    channel = CorkedChannel("127.0.0.1", port)
    opening, may_open = asyncio.Event(), asyncio.Event()
    requests = 0

    async def hold_the_second_call(event: SendRequest) -> None:
        nonlocal requests
        requests += 1
        if requests == 2:
            opening.set()
            await may_open.wait()

    listen(channel, SendRequest, hold_the_second_call)
    try:
        stub = DrainAwareModelStub(channel, timeout=10)
        answered = asyncio.create_task(stub.get_server_info())
        await eventually(lambda: first.model.started == 1, "first.model.started == 1")
        late = asyncio.create_task(stub.get_server_info())
        await opening.wait()
        protocol = channel_protocol(channel)
        assert protocol is not None
        processor = protocol.processor
        assert isinstance(processor, GracefulGoawayProcessor)

        await second.start(port)
        first.stop_accepting()
        first.go_away(last_stream_id=ALL_STREAMS)
        await eventually(
            lambda: processor.last_stream_id == ALL_STREAMS,
            "processor.last_stream_id == ALL_STREAMS",
        )
        may_open.set()
        await eventually(lambda: first.model.started == 2, "first.model.started == 2")
        first.model.release()
        assert (await answered).backend == "first"
        assert (await late).backend == "first"
        assert (first.model.answered, first.model.cancelled) == (2, 0)
        assert second.model.started == 0
        await eventually(first.transports[0].is_closing, "the first connection closing")
    finally:
        channel.close()


async def test_closing_the_channel_closes_the_connection_a_goaway_left_to_its_calls(
    replicas: tuple[Replica, Replica],
) -> None:
    """After a GOAWAY the channel's calls go down a new connection and the
    old one stays for the call it still answers: ``close()`` closed only the
    new one, and the old call (a ``Watch`` would never end) went on, its
    connection open, after the channel was closed."""
    first, second = replicas
    port = await first.start(0)
    channel = CorkedChannel("127.0.0.1", port)
    try:
        stub = v1.ModelStub(channel, timeout=10)
        held = asyncio.create_task(stub.get_server_info())
        await eventually(lambda: first.model.started == 1, "first.model.started == 1")
        protocol = channel_protocol(channel)
        assert protocol is not None
        processor = protocol.processor
        assert isinstance(processor, GracefulGoawayProcessor)
        await second.start(port)
        first.stop_accepting()
        first.go_away(last_stream_id=1)
        await eventually(lambda: processor.last_stream_id == 1, "processor.last_stream_id == 1")
        assert (await stub.get_server_info()).backend == "second"
        assert not held.done()
    finally:
        channel.close()
    with pytest.raises(StreamTerminatedError):
        await asyncio.wait_for(held, timeout=5)
    await eventually(first.transports[0].is_closing, "the first connection closing")
    await eventually(lambda: first.model.cancelled == 1, "first.model.cancelled == 1")
