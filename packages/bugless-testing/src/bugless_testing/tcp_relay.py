"""TCP relays on loopback a test controls: a link it can cut, replies it can hold back.

Point one service at the relay instead of another (``--auth
127.0.0.1:RELAY``), let them talk, then :meth:`TcpRelay.cut`: the connections
relayed are dropped and new ones refused, as when a network path fails,
while both processes keep running; or :meth:`TcpRelay.hold`: the
connections stay open and nothing more is delivered either way, as when a
path drops packets without a reset (a call then waits for its deadline);
or :meth:`TcpRelay.delay`: every byte arrives that much later, a slow path.
Nothing is faked on either side: each
sees exactly what a real outage shows it (a dropped connection, then
refused ones). The relay runs its own event loop in a thread of its own, so
it relays whatever the test's loop is doing (an in-process app may hold it).

:class:`ReplyHoldingRelay` passes requests on and holds the replies while
the test says so: a server has done what a call asked (started a session)
and its client does not know yet, a window in which the test changes the
world under them (ends that session).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import Self


class TcpRelay:
    """Relays connections to ``127.0.0.1:target`` from a loopback port of its own.

    Attributes:
        port: The relay's port (0 until :meth:`start`).
    """

    def __init__(self, target: int) -> None:
        """Relay to ``target`` once started."""
        self.port = 0
        self._target = target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        #: Set while bytes flow; cleared by :meth:`hold`. Used on the relay's loop only.
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._latency = 0.0

    def start(self) -> None:
        """Listen on a port the system picks (:attr:`port`)."""
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0), self._loop
        ).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target_reader, target_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers += [writer, target_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            loop = asyncio.get_running_loop()
            arrived: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def deliver() -> None:
                while (item := await arrived.get())[1]:
                    due, data = item
                    await asyncio.sleep(due - loop.time())  # the path's latency
                    await self._flowing.wait()  # kept, not delivered, while held
                    sink.write(data)
                    await sink.drain()

            delivering = asyncio.ensure_future(deliver())
            with contextlib.suppress(ConnectionError, OSError):
                try:
                    while data := await source.read(65536):
                        arrived.put_nowait((loop.time() + self._latency, data))
                finally:
                    arrived.put_nowait((0.0, b""))
                    await delivering
            sink.close()

        await asyncio.gather(pipe(reader, target_writer), pipe(target_reader, writer))

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
        self._flowing.set()
        for writer in self._writers:
            # abort, not close: close waits to flush what the peer has not
            # read, so a delivery blocked in drain() (a peer that stopped
            # reading) kept its relay pending, and stop() then closed the loop
            # under it ("Task was destroyed but it is pending!", reported by
            # pytest at a later test's setup). A cut path loses what it held.
            writer.transport.abort()
        # Every task of this loop but this one: the relays (one whose
        # connection was just accepted too) and their deliver() tasks.
        this = asyncio.current_task()
        while pending := [task for task in asyncio.all_tasks() if task is not this]:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _hold(self) -> None:
        self._flowing.clear()

    def hold(self) -> None:
        """Deliver nothing more either way, keeping every connection open (a blackhole).

        New connections are still accepted, and held too. :meth:`cut` ends it.
        """
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._hold(), self._loop).result(timeout=10)

    def delay(self, seconds: float) -> None:
        """Deliver each chunk ``seconds`` after it arrived, either way (a slow path's latency).

        Chunks keep their order and are not spaced out: a burst arrives
        together, ``seconds`` late, as over a long link.
        """
        self._latency = seconds

    def cut(self) -> None:
        """Refuse new connections and drop the ones relayed."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(timeout=10)

    def stop(self) -> None:
        """Cut, then end the relay's loop and thread."""
        self.cut()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Self:
        """Started."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stopped."""
        self.stop()


class ReplyHoldingRelay:
    """Relays connections to ``127.0.0.1:target``; replies can be held back, requests never.

    Between two services (the API and an Authenticator): a request whose
    answer is held reaches the server, which does its work (starts a
    session), while the client waits for the answer; the test acts in
    between (ends that session) and releases it. Under TLS the relay cannot
    tell one reply from the next, so :meth:`release_until_next_request`
    holds again once the client has sent a request's worth of bytes after
    the release: its next request, whose answer is then held in its turn.

    It runs on the test's event loop (the services it sits between are
    in-process ones or subprocesses, neither holding that loop for long).

    Attributes:
        port: The relay's port (0 until :meth:`start`).
    """

    def __init__(self, target: int) -> None:
        """Relay to ``target`` once started, replies flowing."""
        self.port = 0
        self._target = target
        self._flowing = asyncio.Event()
        self._flowing.set()
        #: Request bytes after which replies are held again (None: not armed).
        self._hold_after: int | None = None
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        """Listen on a port the system picks (:attr:`port`)."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def hold(self) -> None:
        """Hold every reply from now on (a reply under way stops where it is)."""
        self._hold_after = None
        self._flowing.clear()

    def release(self) -> None:
        """Let the held replies and every later one through."""
        self._hold_after = None
        self._flowing.set()

    def release_until_next_request(self, request_bytes: int = 256) -> None:
        """Let the held replies through, and hold again at the client's next request.

        The next request is told from what a client sends on its own once
        it reads a reply (HTTP/2 flow-control and ping frames, a few dozen
        bytes each under TLS) by its size: replies are held again once
        ``request_bytes`` have come from the client since the release (a
        gRPC request's headers and message; the certificate the API passes
        to the Authenticator is several hundred alone). That request goes
        on; its answer is held.
        """
        self._hold_after = request_bytes
        self._flowing.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target_reader, target_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers += [writer, target_writer]

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, replies: bool
        ) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    if replies:
                        await self._flowing.wait()
                    elif self._hold_after is not None:
                        self._hold_after -= len(data)
                        if self._hold_after <= 0:
                            self.hold()
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(
            pipe(reader, target_writer, replies=False), pipe(target_reader, writer, replies=True)
        )

    async def close(self) -> None:
        """Release what is held, refuse new connections and drop the ones relayed."""
        self.release()
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
