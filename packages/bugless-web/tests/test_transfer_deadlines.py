"""Transfers outlast the call timeout while they move; a stalled upload fails, clearly.

A real ``bugless web serve`` (with ``/metrics``) on the session's Model, its
call timeout made short (every other backend call must still answer within
it) and its idle limits a little longer. A browser is played by httpx feeding
an upload's body slowly, by a raw HTTP/1.1 connection that sends part of a
body and then nothing, as a browser on a dropped link does, and by one that
reads a download slowly (or not at all, or from a Model that dies). What the
server logs of a download cut short is read back from its log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from browser_support import start_web_server
from transfer_support import (
    BLOCK,
    DOWNLOAD,
    client_calls,
    downloads_reach,
    logged_since,
    raw_download,
    signed_in,
    uploaded_file,
)
from web_support import World, create_issue

from bugless_core.clients import call
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_web.transfers import ResponseCut, only_cuts

#: Every backend call's deadline on this server: the pages and sign-in must fit
#: in it on a loaded machine too (at 2 s, a Model that stalled 2 s failed them).
CALL_TIMEOUT = 5.0
#: How long an upload may move no byte.
IDLE = 6.0
#: The slow upload: pieces, each after a pause well under IDLE, over more than
#: CALL_TIMEOUT (and IDLE) in all.
PIECES, PIECE, PAUSE = 28, 64 * 1024, 0.25
#: What the stalled uploads declare; they send only STALLED_AFTER of it.
DECLARED, STALLED_AFTER = 1024 * 1024, 64 * 1024


@pytest.fixture(scope="module")
def web(world: World) -> Iterator[RunningService]:
    env = {
        "BUGLESS_WEB_METRICS_PORT": "0",
        "BUGLESS_WEB_CALL_TIMEOUT_SECONDS": str(CALL_TIMEOUT),
        "BUGLESS_WEB_UPLOAD_IDLE_SECONDS": str(IDLE),
        "BUGLESS_WEB_DOWNLOAD_IDLE_SECONDS": str(IDLE),
    }
    server = start_web_server(world.stack, extra_env=env)
    try:
        yield server
    finally:
        world.stack.stop_service(server)


async def _names(model: v1.ModelStub, world: World, issue: v1.Issue) -> list[str]:
    listed = await call(
        model.list_attachments,
        v1.ListAttachmentsRequest(caller=world.caller("bob"), issue_id=issue.id),
    )
    return [a.name for a in listed.attachments]


async def test_an_upload_that_keeps_moving_outlasts_the_call_timeout(
    web: RunningService, world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "A slow upload")
    before = await client_calls(web, "UploadAttachment", "OK")

    async def slowly() -> AsyncIterator[bytes]:
        for i in range(PIECES):
            await asyncio.sleep(PAUSE)
            yield bytes([i]) * PIECE

    async with httpx.AsyncClient(base_url=str(web.url), timeout=60) as client:
        csrf = await signed_in(client)
        started = time.monotonic()
        response = await client.post(
            f"/issues/{issue.id}/attachments",
            content=slowly(),
            headers={
                "x-csrf-token": csrf,
                "x-file-name": "slow.bin",
                "content-length": str(PIECES * PIECE),
            },
        )
        took = time.monotonic() - started
    assert response.status_code == 201, response.text
    assert response.json()["size"] == PIECES * PIECE
    assert took > CALL_TIMEOUT  # by construction (the pauses): the case this is about
    assert await _names(model, world, issue) == ["slow.bin"]
    assert await client_calls(web, "UploadAttachment", "OK") == before + 1


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: str, body: bytes
) -> bytes:
    try:
        writer.write(request.encode() + b"\r\n" + body)
        await writer.drain()
        # The server answers, then closes (Connection: close). The bound only
        # keeps a server that never answers (the bug) from hanging the suite.
        async with asyncio.timeout(120):
            return await reader.read()
    finally:
        writer.close()


async def test_a_stalled_upload_fails_with_a_clear_408_and_attaches_nothing(
    web: RunningService, world: World, model: v1.ModelStub
) -> None:
    issue = await create_issue(model, world, "A stalled upload")
    before = await client_calls(web, "UploadAttachment", "DEADLINE_EXCEEDED")
    async with httpx.AsyncClient(base_url=str(web.url), timeout=60) as client:
        csrf = await signed_in(client)
        cookies = client.cookies
    reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
    head = (
        f"POST /issues/{issue.id}/attachments HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n"
        f"Cookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nX-File-Name: stalled.bin\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {DECLARED}\r\n"
        "Connection: close\r\n"
    )
    answer = await _answer(reader, writer, head, b"x" * STALLED_AFTER)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408 "), answer[:500]
    assert f'"error":"the upload stalled: nothing arrived for {IDLE:g} s'.encode() in body, body

    # The no-script form: an error page, not a traceback.
    boundary = "bugless-stall"
    form_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n{csrf}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="stalled-form.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
    head = (
        f"POST /issues/{issue.id}/attachments/form HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n"
        f"Cookie: {cookie}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(form_head) + DECLARED}\r\nConnection: close\r\n"
    )
    answer = await _answer(reader, writer, head, form_head + b"x" * STALLED_AFTER)
    status, _, page = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408 "), answer[:500]
    assert b"text/html" in status.lower()
    assert b"<title>Took too long &middot; bugless</title>" in page
    assert f"the upload stalled: nothing arrived for {IDLE:g} s".encode() in page
    assert b"Traceback" not in page

    assert await _names(model, world, issue) == []
    assert await client_calls(web, "UploadAttachment", "DEADLINE_EXCEEDED") == before + 2


async def _download(
    web: RunningService,
    url: str,
    cookie: str,
    *,
    pause: float = 0.0,
    stall_until: Callable[[], Awaitable[object]] | None = None,
) -> bytearray:
    """GET ``url`` as a slow browser: ``pause`` s after each MiB.

    With ``stall_until``, the browser reads nothing of the body until that
    returns (a stall ended by what the server did, not by a length of time).
    """
    received = bytearray()
    async with raw_download(web.port, url, cookie) as (head, reader):
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert f"content-length: {DOWNLOAD}\r\n".encode() in head.lower(), head
        async with asyncio.timeout(120):  # only against a server that hangs
            if stall_until is not None:
                await stall_until()
            while chunk := await reader.read(BLOCK):
                received += chunk
                if len(received) % BLOCK < len(chunk):  # another MiB: rest a while
                    await asyncio.sleep(pause)
    return received


async def test_a_download_read_slowly_outlasts_the_call_timeout(
    web: RunningService, world: World, model: v1.ModelStub
) -> None:
    """Before, the Model stream had the call's deadline: cut after ~13 of 32 MiB."""
    url, cookie = await uploaded_file(web, world, model)
    before = await client_calls(web, "DownloadAttachment", "OK")
    started = time.monotonic()
    received = await _download(web, url, cookie, pause=PAUSE)
    took = time.monotonic() - started
    assert len(received) == DOWNLOAD
    assert all(
        received[i * BLOCK : (i + 1) * BLOCK] == bytes([i]) * BLOCK
        for i in range(DOWNLOAD // BLOCK)
    )
    assert took > CALL_TIMEOUT  # by construction (the pauses): the case this is about
    assert await downloads_reach(web, "OK", before + 1) == before + 1


async def test_a_stalled_download_releases_the_model_call(
    web: RunningService, world: World, model: v1.ModelStub
) -> None:
    """A browser that reads nothing for longer than the idle limit gets a body cut short.

    Its Model call was released at the idle limit, and the web logged why
    then, in one line; what the browser reads after is only what was
    already in buffers on the way. An ordinary event: no traceback (before,
    uvicorn logged "Exception in ASGI application" with Litestar's
    "Exception caught after response started" and the whole chain).
    """
    url, cookie = await uploaded_file(web, world, model)
    attachment_id = url.split("/")[-2]
    before = await client_calls(web, "DownloadAttachment", "DEADLINE_EXCEEDED")
    logged_before = web.log.stat().st_size
    # The browser comes back once the web has counted the released call: a
    # fixed stall (it was 2 * IDLE) raced the idle timer, which only starts
    # once the socket's buffers are full, late on a loaded machine.
    received = await _download(
        web,
        url,
        cookie,
        stall_until=lambda: downloads_reach(web, "DEADLINE_EXCEEDED", before + 1),
    )
    assert 0 < len(received) < DOWNLOAD
    assert await client_calls(web, "DownloadAttachment", "DEADLINE_EXCEEDED") == before + 1
    # uvicorn logs what the app raised before it closes the connection, so
    # all of it is in the log by now.
    lines = logged_since(web, logged_before)
    about = [line for line in lines if f"attachment {attachment_id}:" in line]
    assert len(about) == 1, lines
    assert " WARNING bugless.web: " in about[0], about
    assert f"the download stalled: the browser read nothing for {IDLE:g} s" in about[0], about
    assert not [line for line in lines if "Traceback" in line or "ASGI" in line], lines


def test_only_a_cut_body_is_kept_out_of_the_servers_log() -> None:
    """A cut as the server sees it is recognised; anything beside it is a real failure."""
    cut = ResponseCut("attachment 1: the browser stalled")
    group = BaseExceptionGroup("unhandled errors in a TaskGroup", [cut])
    wrapped = RuntimeError("Exception caught after response started")
    wrapped.__cause__ = group
    assert only_cuts(cut)
    assert only_cuts(group)
    assert only_cuts(wrapped)
    assert not only_cuts(RuntimeError("a bug"))
    assert not only_cuts(BaseExceptionGroup("both", [cut, RuntimeError("a bug")]))
    context_only = RuntimeError("raised while handling a cut")
    context_only.__context__ = cut
    assert not only_cuts(context_only)


async def test_a_model_that_dies_mid_download_is_one_error_line(
    world: World, web: RunningService, model: v1.ModelStub
) -> None:
    """A Model stream broken mid-body: the body is cut short, the log says so in one line.

    A Model replica of this test's own (on the session's database) serves a
    second web; it is killed once the download has started.
    """
    url, cookie = await uploaded_file(web, world, model)
    attachment_id = url.split("/")[-2]
    own = await asyncio.to_thread(
        world.stack.start, "model", ["model", "serve", "--port", "0"], name="model-dying"
    )
    other = None
    try:
        other = await asyncio.to_thread(
            world.stack.start_web,
            "--model",
            f"127.0.0.1:{own.port}",
            env={"BUGLESS_WEB_DRAIN_SECONDS": "0.2"},
        )
        received = bytearray()
        async with raw_download(other.port, url, cookie) as (head, reader):
            assert head.startswith(b"HTTP/1.1 200 "), head
            async with asyncio.timeout(120):  # only against a server that hangs
                received += await reader.readexactly(BLOCK)
                own.process.kill()
                while chunk := await reader.read(BLOCK):
                    received += chunk
        assert BLOCK <= len(received) < DOWNLOAD
        lines = other.log.read_text().splitlines()
        about = [line for line in lines if f"attachment {attachment_id}:" in line]
        assert len(about) == 1, lines
        assert " ERROR bugless.web: " in about[0], about
        assert "the download broke after" in about[0], about
        assert "UNAVAILABLE" in about[0], about
        assert not [line for line in lines if "Traceback" in line or "ASGI" in line], lines
    finally:
        if other is not None:
            world.stack.stop_service(other)
        world.stack.stop_service(own)
