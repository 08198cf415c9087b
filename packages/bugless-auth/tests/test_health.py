"""Health follows the database: NOT_SERVING while it is unreachable, SERVING when back."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

from auth_support import StartAuth
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse


class CuttableProxy:
    """A TCP proxy to the database whose connections a test can cut and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.update({writer, up_writer})

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def status(port: int) -> int:
    from grpclib.client import Channel

    channel = Channel("127.0.0.1", port)
    try:
        answer = await HealthStub(channel).Check(
            HealthCheckRequest(service="bugless.v1.Authenticator")
        )
        assert answer is not None
        return int(answer.status)
    finally:
        channel.close()


async def wait_for(port: int, wanted: int, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while await status(port) != wanted:  # noqa: ASYNC110 - polling a remote state
            await asyncio.sleep(0.2)


async def test_health_is_not_serving_while_the_database_is_down(
    start_auth_server: StartAuth, auth_database: str
) -> None:
    parts = urlsplit(auth_database)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    proxied = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    server = await start_auth_server(database_url=proxied)
    port = server.runner.port
    await wait_for(port, HealthCheckResponse.SERVING)

    await proxy.cut()
    await wait_for(port, HealthCheckResponse.NOT_SERVING)

    await proxy.start()
    await wait_for(port, HealthCheckResponse.SERVING)
    await proxy.cut()
