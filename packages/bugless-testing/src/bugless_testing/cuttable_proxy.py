"""A database connection a test can cut and restore: a loopback TCP proxy and the URL through it.

Tests of what a service does when its database goes away (the Authenticator's
health, the Model's connection loss and attachment sweep) pull the cable
between the service and PostgreSQL: :meth:`CuttableProxy.cut` drops every
connection relayed and refuses new ones, :meth:`CuttableProxy.start` again
listens on the same port, so the service's URL stays right. One proxy for
all of them, rather than a copy per package's tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class CuttableProxy:
    """A loopback TCP proxy to the database whose cable the test can pull.

    It relays on the test's event loop, so only while that loop runs.

    Attributes:
        target: The database's host and port.
        port: The proxy's port (0 until :meth:`start`; kept by :meth:`cut`).
    """

    def __init__(self, host: str, port: int) -> None:
        """Relay to ``host:port`` once started."""
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        """Listen: on a port the system picks the first time, on the same one after a cut."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        """Refuse new connections and abort the ones relayed (both ends see a reset)."""
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()


def via_proxy(url: str, port: int) -> str:
    """``url`` with its host and port pointed at the proxy on loopback (user, path, query kept)."""
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
