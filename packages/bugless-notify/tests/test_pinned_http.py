"""The checked transport speaks httpx's public interface, and fails as httpx's own does.

Component webhooks go through :class:`bugless_notify._pinned_http.CheckedTransport`:
httpcore's pool on the checking network backend, under httpx's transport
interface. The channel tells a retry from a permanent failure by httpx's
exception classes, so each way a connection fails is provoked here on real
loopback sockets and the class checked; and the transport must keep no state
of httpx's own transport (it once replaced httpx's private ``_pool``, which a
release of httpx could rename without a word).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from bugless_core.networks import parse_networks
from bugless_notify._pinned_http import CheckedBackend, CheckedTransport, ForbiddenAddress
from bugless_notify.addresses import AddressPolicy
from bugless_testing.ports import refused_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _transport(*, allowed: str = "127.0.0.0/8") -> CheckedTransport:
    policy = AddressPolicy(parse_networks([allowed]))
    return CheckedTransport(
        ssl_context=ssl.create_default_context(),
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
        backend=CheckedBackend(policy),
    )


async def _serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


@pytest.fixture
async def answering() -> AsyncIterator[str]:
    """Answers every request with a body in three chunks (chunked encoding)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test: yes\r\n\r\n")
        for part in (b"one ", b"two ", b"three"):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    async for url in _serve(handler):
        yield url


@pytest.fixture
async def hanging_up() -> AsyncIterator[str]:
    """Reads the request, then closes the connection without an answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.close()

    async for url in _serve(handler):
        yield url


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    """Reads the request and never answers (until the test ends)."""
    done = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        await done.wait()
        writer.close()

    try:
        async for url in _serve(handler):
            yield url
    finally:
        done.set()


def test_the_transport_keeps_no_state_of_httpxs_own() -> None:
    """None of its attributes is one httpx's transport keeps (its private ``_pool``)."""
    theirs = set(vars(httpx.AsyncHTTPTransport(trust_env=False)))
    ours = set(vars(_transport()))
    assert not ours & theirs, ours & theirs


async def test_an_answer_and_its_streamed_body_come_through(answering: str) -> None:
    async with httpx.AsyncClient(transport=_transport()) as client:
        async with client.stream("POST", f"{answering}/hook", content=b"{}") as response:
            assert response.status_code == 200
            assert response.headers["x-test"] == "yes"
            body = b"".join([part async for part in response.aiter_bytes()])
        assert body == b"one two three"
        # The connection is reused for the next request (the pool works).
        assert (await client.post(f"{answering}/again", content=b"{}")).status_code == 200


async def test_failures_are_httpxs_exceptions_as_the_channel_expects(
    hanging_up: str, silent: str
) -> None:
    timeout = httpx.Timeout(5.0, read=0.3)
    async with httpx.AsyncClient(transport=_transport(), timeout=timeout) as client:
        with refused_port() as port, pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{port}/hook")
        # No body: the server read all there was, so it hangs up cleanly (a FIN).
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.post(f"{hanging_up}/hook")
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{silent}/hook", content=b"{}")


async def test_a_forbidden_address_is_not_disguised_as_a_network_error(answering: str) -> None:
    async with httpx.AsyncClient(transport=_transport(allowed="10.0.0.0/8")) as client:
        with pytest.raises(ForbiddenAddress, match=r"127\.0\.0\.1 is a loopback address"):
            await client.post(f"{answering}/hook", content=b"{}")
