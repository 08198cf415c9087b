"""A response's head goes out joined to its body: one socket write, not two.

Over a real TCP connection on loopback. The real transport is wrapped in a
recorder that passes every write on and remembers its bytes, which is how
the grouping into writes (what the change is about) is seen; the peer reads
what arrived, which must be the bytes written, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from bugless_web.http_protocol import HELD_WRITE_BYTES, HeadHoldingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


@dataclass
class Recorder:
    """Passes every call to the real transport; remembers the bytes of each write."""

    transport: asyncio.Transport
    writes: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@dataclass
class Link:
    """Both ends of a loopback connection: the writer's transport and the peer's reader."""

    recorder: Recorder
    held: HeadHoldingTransport
    peer: asyncio.StreamReader


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(reader)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    recorder = Recorder(cast("asyncio.Transport", writer.transport))
    peer = await accepted.get()
    yield Link(recorder, HeadHoldingTransport(cast("asyncio.Transport", recorder)), peer)
    writer.transport.abort()
    server.close()
    await server.wait_closed()


async def test_a_head_and_its_body_written_in_one_step_are_one_write(link: Link) -> None:
    link.held.write(HEAD)
    assert link.recorder.writes == []
    link.held.write(b"hello")
    assert link.recorder.writes == [HEAD + b"hello"]
    assert await link.peer.readexactly(len(HEAD) + 5) == HEAD + b"hello"
    await asyncio.sleep(0)  # the turn the head would have been flushed in: nothing more
    assert link.recorder.writes == [HEAD + b"hello"]


async def test_a_lone_small_write_goes_out_on_the_next_loop_turn(link: Link) -> None:
    link.held.write(HEAD)
    await asyncio.sleep(0)
    assert link.recorder.writes == [HEAD]
    assert await link.peer.readexactly(len(HEAD)) == HEAD


async def test_a_large_write_is_never_held(link: Link) -> None:
    body = b"x" * (HELD_WRITE_BYTES + 1)
    link.held.write(body)
    link.held.write(body)
    assert link.recorder.writes == [body, body]
    assert await link.peer.readexactly(2 * len(body)) == 2 * body


async def test_closing_sends_what_is_held_first(link: Link) -> None:
    link.held.write(HEAD)
    link.held.close()
    assert link.recorder.writes == [HEAD]
    assert await link.peer.read() == HEAD
