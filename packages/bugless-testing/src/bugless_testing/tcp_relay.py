"""A TCP relay on loopback whose link a test can cut: a real network failure between services.

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
        self._relaying: set[asyncio.Task[None]] = set()
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
        task = asyncio.current_task()
        assert task is not None
        self._relaying.add(task)
        task.add_done_callback(self._relaying.discard)
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
        for writer in self._writers:
            writer.close()
        self._flowing.set()
        for task in self._relaying:
            task.cancel()
        await asyncio.gather(*self._relaying, return_exceptions=True)

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
