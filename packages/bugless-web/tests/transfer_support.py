"""Helpers of the transfer tests: a real ``bugless web serve``'s metrics, log and raw downloads.

The transfer tests play a browser below httpx (a raw HTTP/1.1 connection
with a small receive buffer, so the server's writes wait for the reads) and
read what the server did from its ``/metrics`` and its log file.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
from prometheus_client.parser import text_string_to_metric_families
from web_support import PASSWORD, World, create_issue, csrf_of

if TYPE_CHECKING:
    from bugless_dev.stack import RunningService
    from bugless_proto import v1

#: The large download: far more than loopback's socket buffers and a gRPC
#: stream's window hold, so the server's writes wait for the reader; MiB i
#: is all bytes i.
DOWNLOAD, BLOCK = 32 * 1024 * 1024, 1024 * 1024


async def signed_in(client: httpx.AsyncClient) -> str:
    """Sign ``client`` in as bob through the form; the session's CSRF token."""
    page = await client.get("/signin")
    form = {"username": "bob", "password": PASSWORD, "_csrf": csrf_of(page.text), "next": "/"}
    response = await client.post("/signin", data=form, follow_redirects=True)
    assert response.status_code == 200, response.text
    return csrf_of(response.text)


async def client_calls(web: RunningService, method: str, code: str) -> float:
    """Calls to the Model's ``method`` the web finished with ``code``, from its ``/metrics``."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{web.metrics_port}/metrics", timeout=10)
    labels = {"grpc_method": method, "grpc_code": code}
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "grpc_client_handled_total" and labels.items() <= sample.labels.items()
    )


async def downloads_reach(web: RunningService, code: str, count: float) -> float:
    """Downloads the web finished with ``code``, once they reach ``count`` (or after a minute).

    A download's call ends after its last byte has left (the Model's status
    comes after it), or once the server notices a browser went away, so the
    reader may ask a moment before it is counted.
    """
    async with asyncio.timeout(60):  # only against a count that never comes
        while True:
            seen = await client_calls(web, "DownloadAttachment", code)
            if seen >= count:
                return seen
            await asyncio.sleep(0.05)


async def uploaded_file(
    web: RunningService, world: World, model: v1.ModelStub, name: str = "big.bin"
) -> tuple[str, str]:
    """A new DOWNLOAD-byte attachment, uploaded through ``web``: its URL and bob's cookie."""
    issue = await create_issue(model, world, "A large download")

    async def content() -> AsyncIterator[bytes]:
        for i in range(DOWNLOAD // BLOCK):
            yield bytes([i]) * BLOCK

    async with httpx.AsyncClient(base_url=str(web.url), timeout=60) as client:
        csrf = await signed_in(client)
        response = await client.post(
            f"/issues/{issue.id}/attachments",
            content=content(),
            headers={"x-csrf-token": csrf, "x-file-name": name, "content-length": str(DOWNLOAD)},
        )
        assert response.status_code == 201, response.text
        cookie = "; ".join(f"{key}={value}" for key, value in client.cookies.items())
    return str(response.json()["url"]), cookie


@asynccontextmanager
async def raw_download(
    port: int, url: str, cookie: str
) -> AsyncIterator[tuple[bytes, asyncio.StreamReader]]:
    """GET ``url`` on ``port`` as a browser on a slow link: the response's head, the body's reader.

    The socket's receive buffer is small, so the server's writes wait for
    the reads rather than fill loopback's large default buffers. The
    connection is closed on leaving (the browser goes away if the body was
    not read to its end).
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
    sock.connect(("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(
            f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Cookie: {cookie}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(120):  # only against a server that hangs
            head = await reader.readuntil(b"\r\n\r\n")
        yield head, reader
    finally:
        writer.close()


def logged_since(web: RunningService, offset: int) -> list[str]:
    """The lines ``web`` logged after ``offset`` (its log's size before)."""
    with web.log.open() as log:
        log.seek(offset)
        return log.read().splitlines()
