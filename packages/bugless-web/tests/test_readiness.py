"""``/readyz`` of a fresh web: its probe times the backends' answers, not its own connecting.

The web reaches the session's Model through a loopback TCP proxy that holds
the first bytes of every new connection for :data:`SLOW_CONNECT` seconds,
longer than the probe's timeout: a connection that is slow to open (TLS on
a busy host, a load balancer's first packet), after which the Model answers
as fast as ever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator

import pytest
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World

from bugless_web import WebSettings, create_app
from bugless_web.routes.operations import READINESS_TIMEOUT_SECONDS

#: How long the proxy holds a new connection's first bytes.
SLOW_CONNECT = 2 * READINESS_TIMEOUT_SECONDS


class _SlowToConnect:
    """A loopback TCP proxy to ``target`` whose every connection starts SLOW_CONNECT late.

    It runs on an event loop of its own, in a thread: the test client waits
    for the app without giving the test's loop a turn.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(timeout=10)
        self.port: int = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await asyncio.sleep(SLOW_CONNECT)
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
def slow_model(world: World) -> Iterator[_SlowToConnect]:
    proxy = _SlowToConnect(world.stack.model.host, world.stack.model.port)
    try:
        yield proxy
    finally:
        proxy.stop()


async def test_a_fresh_web_is_ready_at_once_though_its_connections_open_slowly(
    world: World, slow_model: _SlowToConnect
) -> None:
    """The Model's connection is opened at start-up, so the first probe is a round trip.

    Before, the first ``/readyz`` opened it inside its 0.8 s timeout and
    answered 503 "a backend did not answer", although the Model answered
    every call.
    """
    settings = WebSettings(
        model=dataclasses.replace(world.stack.model, host="127.0.0.1", port=slow_model.port),
        auth=world.stack.auth,
        session_keys=(SESSION_KEY,),
        dev=True,
    )
    async with AsyncTestClient(create_app(settings)) as client:
        first = await client.get("/readyz")
        assert (first.status_code, first.text) == (200, "ready\n")
        again = await client.get("/readyz")
        assert again.status_code == 200
    assert slow_model.connections == 1  # one connection, opened at start-up, kept
