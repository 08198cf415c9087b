"""Leaving a draining replica when the balancer picks one per connection.

Two real runners behind a real TCP balancer that, like HAProxy in ``mode tcp``
or a Kubernetes Service, picks a replica once per connection (round robin,
the next one when a replica refuses the connection): the only way a client
leaves a replica is to open a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from grpc_test_server import HOLD_KEY, OpenChannel, SlowModel, StartRunner
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.clients import ServiceAddress
from bugless_core.errors import InvalidArgument, from_grpc_error
from bugless_core.failover import (
    UNREAD_WINDOW_BYTES,
    DrainAwareModelStub,
    serving_behind,
    upload_again_if_refused,
)
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_proto import v1
from bugless_testing.polling import eventually

MODEL = "bugless.v1.Model"
#: An issue :class:`UploadingModel` refuses uploads to, after reading their header.
MISSING_ISSUE = 404
CHUNK = bytes(range(256)) * 2048  # 512 KiB


class UploadingModel(SlowModel):
    """Also takes uploads: keeps each one's content, and counts the calls it got."""

    def __init__(self) -> None:
        super().__init__()
        self.upload_calls = 0
        self.uploads: list[bytes] = []

    async def upload_attachment(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> v1.UploadAttachmentResponse:
        self.upload_calls += 1
        first = await anext(messages)
        assert first.header is not None
        if first.header.issue_id == MISSING_ISSUE:
            raise GRPCError(Status.NOT_FOUND, f"issue {MISSING_ISSUE} does not exist")
        content = b"".join([message.chunk or b"" async for message in messages])
        self.uploads.append(content)
        attachment = v1.Attachment(id=len(self.uploads), name=first.header.name, size=len(content))
        return v1.UploadAttachmentResponse(attachment=attachment)


class PerConnectionBalancer:
    """Forwards each accepted connection, whole, to one upstream port."""

    def __init__(self, upstreams: list[int]) -> None:
        self._next = itertools.cycle(range(len(upstreams)))
        self._upstreams = upstreams
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = next(self._next)
        for i in range(len(self._upstreams)):
            port = self._upstreams[(first + i) % len(self._upstreams)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # as HAProxy's redispatch: try the next replica
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


@pytest.fixture
async def replicas(
    start_runner: StartRunner,
) -> AsyncIterator[tuple[list[GrpcServiceRunner], list[UploadingModel], ServiceAddress]]:
    settings = GrpcServerSettings(insecure_local=True, drain_seconds=0.3, grace_seconds=30.0)
    servicers = [UploadingModel(), UploadingModel()]
    runners = [await start_runner(settings, servicer=s) for s in servicers]
    balancer = PerConnectionBalancer([r.port for r in runners])
    await balancer.start()
    try:
        yield runners, servicers, ServiceAddress("127.0.0.1", balancer.port)
    finally:
        await balancer.close()


async def test_a_call_refused_by_a_draining_replica_goes_to_another_on_a_new_connection(
    replicas: tuple[list[GrpcServiceRunner], list[UploadingModel], ServiceAddress],
    open_channel: OpenChannel,
) -> None:
    runners, servicers, address = replicas
    channel = open_channel(address.port)
    stub = DrainAwareModelStub(channel)
    await stub.get_server_info(timeout=5)
    pinned = 0 if servicers[0].seen_connection_ids else 1
    # Held until the test has seen the refusal and the other replica: a 1.5 s
    # delay could end it, and the drain with it, first on a loaded machine.
    slow = asyncio.create_task(stub.get_server_info(timeout=30, metadata={HOLD_KEY: "1"}))
    await eventually(lambda: runners[pinned].in_flight == 1, "runners[pinned].in_flight == 1")

    drain = asyncio.create_task(runners[pinned].drain())
    await asyncio.sleep(0.5)  # past drain_seconds: it refuses new calls
    plain = v1.ModelStub(channel)
    with pytest.raises(GRPCError) as refused:
        await plain.get_server_info(timeout=5)  # the plain stub stays on the drained replica
    assert refused.value.status is Status.UNAVAILABLE

    other = servicers[1 - pinned]
    answered_before = len(other.seen_connection_ids)
    reply = await stub.get_server_info(timeout=5)
    assert reply.backend == "test"
    assert len(other.seen_connection_ids) == answered_before + 1
    assert not slow.done()
    servicers[pinned].release_held()
    assert (await slow).backend == "test"  # the call in progress finished where it ran
    await asyncio.wait_for(drain, timeout=5)
    # Later calls stay on the new connection, to the replica that serves.
    await stub.get_server_info(timeout=5)
    assert len(other.seen_connection_ids) == answered_before + 2


async def test_other_failures_are_not_sent_again(
    replicas: tuple[list[GrpcServiceRunner], list[UploadingModel], ServiceAddress],
    open_channel: OpenChannel,
) -> None:
    _, servicers, address = replicas
    stub = DrainAwareModelStub(open_channel(address.port))
    with pytest.raises(GRPCError) as failed:
        await stub.get_server_info(timeout=5, metadata={"x-test-fail": "grpc"})
    assert isinstance(from_grpc_error(failed.value), InvalidArgument)
    assert sum(len(s.seen_connection_ids) for s in servicers) == 1


async def test_serving_behind_asks_fresh_connections_so_one_draining_replica_is_not_the_tier(
    replicas: tuple[list[GrpcServiceRunner], list[UploadingModel], ServiceAddress],
) -> None:
    runners, _, address = replicas
    assert await serving_behind(address, MODEL)
    runners[0].set_serving(False)
    assert await serving_behind(address, MODEL)  # one of two fresh connections reaches runner 2
    runners[1].set_serving(False)
    assert not await serving_behind(address, MODEL)
    runners[1].set_serving(True)
    assert await serving_behind(address, MODEL)


async def _upload(
    header: v1.UploadAttachmentHeader,
    chunks: int,
    before_second_chunk: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[v1.UploadAttachmentRequest]:
    """An upload as a frontend relays one: read once, as it arrives."""
    yield v1.UploadAttachmentRequest(header=header)
    for index in range(chunks):
        if index == 1 and before_second_chunk is not None:
            await before_second_chunk()
        yield v1.UploadAttachmentRequest(chunk=CHUNK)


@pytest.mark.parametrize("chunks", [3, 2 * UNREAD_WINDOW_BYTES // len(CHUNK)])
async def test_an_upload_refused_by_a_draining_replica_is_sent_again_whole_and_lands_once(
    replicas: tuple[list[GrpcServiceRunner], list[UploadingModel], ServiceAddress],
    open_channel: OpenChannel,
    chunks: int,
) -> None:
    """Refused after part of it went out; twice the unread window: a file larger than kept."""
    runners, servicers, address = replicas
    channel = open_channel(address.port)
    plain = v1.ModelStub(channel)
    await plain.get_server_info(timeout=5)
    pinned = 0 if servicers[0].seen_connection_ids else 1
    # Held, not a 3 s delay: the pinned replica drains (refuses) until the upload is done.
    slow = asyncio.create_task(plain.get_server_info(timeout=30, metadata={HOLD_KEY: "1"}))
    await eventually(lambda: runners[pinned].in_flight == 1, "runners[pinned].in_flight == 1")
    drain = asyncio.create_task(runners[pinned].drain())

    async def refused() -> bool:
        try:
            await plain.get_server_info(timeout=5)
        except GRPCError as exc:
            if exc.status is not Status.UNAVAILABLE:
                raise
            return True
        return False

    async with asyncio.timeout(5):
        while not await refused():  # noqa: ASYNC110 - the drain's refusing has no event
            await asyncio.sleep(0.01)

    async def refusal_read() -> None:
        # Refused too, on the same connection after the upload's refusal:
        # by its answer, the upload's refusal and reset have been read, so
        # the next chunk meets a closed stream (a send, not the reply, fails).
        assert await refused()

    header = v1.UploadAttachmentHeader(issue_id=7, name="twice.bin", size=chunks * len(CHUNK))
    reply = await upload_again_if_refused(
        plain, _upload(header, chunks, refusal_read), v1.UploadAttachmentResponse
    )

    other = servicers[1 - pinned]
    assert reply.attachment == v1.Attachment(id=1, name="twice.bin", size=chunks * len(CHUNK))
    assert other.uploads == [CHUNK * chunks]  # once, whole, in order
    assert other.upload_calls == 1
    assert servicers[pinned].uploads == []
    servicers[pinned].release_held()
    assert (await slow).backend == "test"
    await asyncio.wait_for(drain, timeout=10)


async def test_an_upload_the_server_refused_otherwise_is_not_sent_again(
    replicas: tuple[list[GrpcServiceRunner], list[UploadingModel], ServiceAddress],
    open_channel: OpenChannel,
) -> None:
    _, servicers, address = replicas
    stub = v1.ModelStub(open_channel(address.port))
    header = v1.UploadAttachmentHeader(issue_id=MISSING_ISSUE, name="lost.bin")
    with pytest.raises(GRPCError) as refused:
        await upload_again_if_refused(stub, _upload(header, 3), v1.UploadAttachmentResponse)
    assert refused.value.status is Status.NOT_FOUND
    assert sum(s.upload_calls for s in servicers) == 1
    assert all(s.uploads == [] for s in servicers)
