"""A Model that accepts a download or a watch and never sends its first message (or stops).

The API bounded how long it waits for its client to read a download's or a
watch's messages (``--download-idle-seconds``, ``--watch-idle-seconds``), but
not how long it waits for the Model's first one: a Model that accepted the
call and sent nothing held the client's call, and the Model stream with its
share of the channel's window, for good; so did one that stopped sending a
download mid-way. The same settings bound both now.

The Model here is a real gRPC server with the Model's certificate, on a
loopback port, whose download and watch handlers wait until cancelled; the
API in front of it is a real one, its bot a real client.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from api_support import Bots, ConnectAs, extra_api
from grpclib.health.service import Health

from bugless_core._compat.grpclib import server_listener
from bugless_core.errors import Unavailable
from bugless_core.grpc import CorkedServer, GrpcServerSettings, build_server_ssl_context
from bugless_proto import v1

IDLE = 1.0
#: Generous for an answer due after IDLE.
WITHIN = 30.0


class SilentModel(v1.ModelBase):
    """Accepts downloads and watches and never answers them; counts the releases."""

    def __init__(self) -> None:
        self.opened = 0
        self.released = 0
        #: What a download sends before it stops (nothing by default).
        self.download_start: v1.DownloadAttachmentResponse | None = None

    async def _wait_until_released(self) -> None:
        self.opened += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.released += 1

    async def download_attachment(
        self, message: v1.DownloadAttachmentRequest
    ) -> AsyncIterator[v1.DownloadAttachmentResponse]:
        if self.download_start is not None:
            yield self.download_start
        await self._wait_until_released()
        yield v1.DownloadAttachmentResponse()  # never reached

    async def watch(self, message: v1.WatchRequest) -> AsyncIterator[v1.WatchEvent]:
        await self._wait_until_released()
        yield v1.WatchEvent()  # never reached


@pytest.fixture
async def silent_model(bots: Bots) -> AsyncIterator[tuple[SilentModel, int]]:
    """The silent Model, with the Model's certificate, trusting the stack's CA."""
    files = bots.stack.pki.service_certificate("model")
    settings = GrpcServerSettings(
        tls_cert=files.cert, tls_key=files.key, client_ca=bots.stack.pki.ca_file
    )
    model = SilentModel()
    server = CorkedServer([model, Health()])
    await server.start("127.0.0.1", 0, ssl=build_server_ssl_context(settings))
    listener = server_listener(server)
    assert listener is not None
    try:
        yield model, int(listener.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def _released(model: SilentModel) -> None:
    async with asyncio.timeout(WITHIN):
        while model.released < model.opened:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_download_the_model_never_starts_fails_unavailable_after_the_idle_limit(
    bots: Bots, connect_as: ConnectAs, silent_model: tuple[SilentModel, int]
) -> None:
    model, port = silent_model
    address = dataclasses.replace(bots.stack.client_address("model", "api"), port=port)
    async with extra_api(bots, model=address, download_idle_seconds=IDLE) as running:
        robot = connect_as("robot", port=running.port)
        started = asyncio.get_running_loop().time()
        with pytest.raises(Unavailable, match=r"did not start the download .* within 1 s") as no:
            async with asyncio.timeout(WITHIN):
                await anext(robot.iter_attachment(7))
        assert asyncio.get_running_loop().time() - started >= IDLE
        assert "--download-idle-seconds" in no.value.message
        await _released(model)
        assert model.opened == 1


async def test_a_watch_the_model_never_starts_fails_unavailable_after_the_idle_limit(
    bots: Bots, connect_as: ConnectAs, silent_model: tuple[SilentModel, int]
) -> None:
    model, port = silent_model
    address = dataclasses.replace(bots.stack.client_address("model", "api"), port=port)
    async with extra_api(bots, model=address, watch_idle_seconds=IDLE) as running:
        robot = connect_as("robot", port=running.port)
        events = robot.watch(issue_id=7, reconnect=False)
        try:
            with pytest.raises(Unavailable, match="did not start the watch within 1 s") as no:
                async with asyncio.timeout(WITHIN):
                    await anext(events)
        finally:
            await events.aclose()
        assert "--watch-idle-seconds" in no.value.message
        await _released(model)
        assert model.opened == 1


async def test_a_download_the_model_stops_mid_way_fails_unavailable_after_the_idle_limit(
    bots: Bots, connect_as: ConnectAs, silent_model: tuple[SilentModel, int]
) -> None:
    """The client reads the start and then waits on the Model, not the other way round."""
    model, port = silent_model
    model.download_start = v1.DownloadAttachmentResponse(
        attachment=v1.Attachment(id=7, name="stuck.bin", size=1024)
    )
    address = dataclasses.replace(bots.stack.client_address("model", "api"), port=port)
    async with extra_api(bots, model=address, download_idle_seconds=IDLE) as running:
        robot = connect_as("robot", port=running.port)
        parts = robot.iter_attachment(7)
        try:
            first = await anext(parts)
            assert first.attachment is not None
            assert first.attachment.name == "stuck.bin"
            with pytest.raises(Unavailable, match=r"sent nothing more of attachment 7 for 1 s"):
                async with asyncio.timeout(WITHIN):
                    await anext(parts)
        finally:
            await parts.aclose()  # type: ignore[attr-defined]
        await _released(model)
        assert model.opened == 1
