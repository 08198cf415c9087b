"""A Model outage is logged once by the web tier, not once per page that meets it.

The web tier reaches the real Model of the test stack through a TCP proxy
that the test closes (connections refused, open ones cut) and opens again on
the same port. Pages (unary calls) and streams (a live page's Watch, uploads,
downloads) feed the same log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, create_issue, sign_in

from bugless_proto import v1
from bugless_web import WebSettings, create_app


class _Proxy:
    """A loopback TCP proxy to ``target`` that can be closed and opened again on its port.

    It runs on an event loop of its own, in a thread: the test client waits
    for the app's answer without giving the test's loop a turn.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def open(self) -> None:
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._server is not None:
            self.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        server, self._server = self._server, None
        server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_a_model_outage_is_one_warning_and_one_info_however_many_pages(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    model = world.stack.model
    proxy = _Proxy(model.host, model.port)
    proxy.open()
    settings = WebSettings(
        model=dataclasses.replace(model, host="127.0.0.1", port=proxy.port),
        auth=world.stack.auth,
        session_keys=(SESSION_KEY,),
        dev=True,
        call_timeout_seconds=2.0,
    )
    try:
        async with AsyncTestClient(create_app(settings)) as c:
            await sign_in(c, "bob")
            assert (await c.get("/search?q=is:open")).status_code == 200
            with caplog.at_level(logging.DEBUG, logger="bugless.web"):
                proxy.close()
                for _ in range(6):
                    assert (await c.get("/search?q=is:open")).status_code == 503
                proxy.open()
                assert (await c.get("/search?q=is:open")).status_code == 200
                assert (await c.get("/search?q=is:open")).status_code == 200
    finally:
        proxy.stop()
    web = [r for r in caplog.records if r.name == "bugless.web"]
    warnings = [r for r in web if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].getMessage().startswith("calls to the Model: ")
    assert "pages that need it answer 503" in warnings[0].getMessage()
    infos = [r for r in web if r.levelno == logging.INFO and "working again" in r.getMessage()]
    assert len(infos) == 1, [r.getMessage() for r in web]
    assert infos[0].getMessage().startswith("calls to the Model: working again after ")
    assert infos[0].__dict__["failed_rounds"] >= 6
    # Every page that met it is still in the debug log.
    assert len([r for r in web if r.getMessage().startswith("backend unavailable")]) == 6


async def _upload(client: AsyncTestClient[Any], csrf: str, issue_id: int) -> Any:
    return await client.post(
        f"/issues/{issue_id}/attachments",
        content=b"a log line\n" * 100,
        headers={"x-csrf-token": csrf, "x-file-name": quote("app.log")},
    )


async def test_streams_feed_the_model_outage_log_that_pages_feed(
    world: World, model: v1.ModelStub, caplog: pytest.LogCaptureFixture
) -> None:
    # A live page's Watch cut, then an upload and a download refused, while
    # no page is loaded: one WARNING, and one INFO once a download works.
    issue = await create_issue(model, world, "Streams while the Model is away")
    proxy = _Proxy(world.stack.model.host, world.stack.model.port)
    proxy.open()
    settings = WebSettings(
        model=dataclasses.replace(world.stack.model, host="127.0.0.1", port=proxy.port),
        auth=world.stack.auth,
        session_keys=(SESSION_KEY,),
        dev=True,
        call_timeout_seconds=2.0,
    )
    try:
        async with AsyncTestClient(create_app(settings)) as c:
            csrf = await sign_in(c, "bob")
            uploaded = await _upload(c, csrf, issue.id)
            assert uploaded.status_code == 201, uploaded.text
            download = f"/attachments/{uploaded.json()['id']}/app.log"
            assert (await c.get(download)).status_code == 200
            with caplog.at_level(logging.DEBUG, logger="bugless.web"):
                # The event stream ends when its Watch is cut, a while after it started.
                cut = threading.Timer(1.5, proxy.close)
                cut.start()
                try:
                    events = await c.get(
                        f"/issues/{issue.id}/events", headers={"accept": "text/event-stream"}
                    )
                finally:
                    cut.join()
                assert events.status_code == 200
                assert ": watching" in events.text
                assert (await _upload(c, csrf, issue.id)).status_code == 503
                assert (await c.get(download)).status_code == 503
                proxy.open()
                assert (await c.get(download)).status_code == 200
    finally:
        proxy.stop()
    web = [r for r in caplog.records if r.name == "bugless.web"]
    warnings = [r for r in web if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].getMessage().startswith("calls to the Model: Watch: ")
    failed = [r for r in web if r.getMessage().startswith("calls to the Model: still failing")]
    assert [r.levelno for r in failed] == [logging.DEBUG, logging.DEBUG], "upload, download"
    infos = [r for r in web if r.levelno == logging.INFO and "working again" in r.getMessage()]
    assert len(infos) == 1, [r.getMessage() for r in web]
    assert infos[0].getMessage().startswith("calls to the Model: working again after ")
    assert infos[0].__dict__["failed_rounds"] == 3
