"""A live issue page whose Model accepts the watch and never starts it, or ends it.

The web awaited the Model's first watch message without bound: a Model that
accepted the call and sent nothing held the watch, and the page's event
stream (live in name only, every change missed), for as long as the page
stayed open. It now awaits it for ``--call-timeout-seconds``, as a call's
answer, then releases the watch and ends the stream, so the browser connects
again (EventSource's ``retry``) and gets what it missed from the history. A
watch the Model ends (a Model stopping) ends the stream the same way; before,
the stream went on with no watch behind it.

Everything but the watch goes to the stack's Model; the watch goes to a real
gRPC server on a loopback port, whose ``Watch`` handler waits until cancelled
or sends the ``subscribed`` marker and ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, create_issue, sign_in

from bugless_core.grpc import CorkedChannel, CorkedServer, listening_port
from bugless_proto import v1
from bugless_web import WebSettings, create_app
from bugless_web.frontend import Frontend

#: The web's call timeout here: the bound on the watch's start.
CALL_TIMEOUT = 2.0
#: Generous for a stream due to end within CALL_TIMEOUT (it never ended before).
WITHIN = 20.0


class SilentWatches(v1.ModelBase):
    """Accepts watches and sends nothing (or, ``ending``, the marker and the end); counts them."""

    def __init__(self, *, ending: bool = False) -> None:
        self.ending = ending
        self.opened = 0
        self.released = 0

    async def watch(self, message: v1.WatchRequest) -> AsyncIterator[v1.WatchEvent]:
        self.opened += 1
        try:
            if self.ending:
                yield v1.WatchEvent(subscribed=True, position=1)
                return
            await asyncio.Event().wait()
        finally:
            self.released += 1
        yield v1.WatchEvent()  # never reached


@dataclass
class SilentServer:
    """The silent Model server and a web's channel to it, on the web app's loop."""

    watches: SilentWatches
    frontend: Frontend
    server: CorkedServer | None = None
    channel: CorkedChannel | None = None

    async def start(self) -> None:
        """Serve, and send the web's watches here.

        Run on the app's loop (the test client's portal): a channel binds
        the loop it is made on, and a server on the test's loop would not
        read while the test waits for the web's answer.
        """
        self.server = CorkedServer([self.watches])
        await self.server.start("127.0.0.1", 0)
        self.channel = CorkedChannel("127.0.0.1", listening_port(self.server))
        self.frontend.backends.model_stream = v1.ModelStub(self.channel)

    async def rescue(self) -> None:
        """End a stream that would not end: the web drains, the server goes."""
        self.frontend.drain.start("the test's stream did not end")
        await self.stop()

    async def stop(self) -> None:
        """Close the channel and the server (once; a later call does nothing)."""
        channel, self.channel = self.channel, None
        server, self.server = self.server, None
        if channel is not None:
            channel.close()
        if server is not None:
            server.close()
            await server.wait_closed()


async def _live_stream(
    world: World, model: v1.ModelStub, watches: SilentWatches, url: str = ""
) -> tuple[str, float]:
    """A signed-in page's event stream, its watch on ``watches``: its text, how long it took.

    ``url``: the stream's (a search list's); by default a new issue's page's.
    """
    if not url:
        issue = await create_issue(model, world, "Watched by a Model that does not go on")
        url = f"/issues/{issue.id}/events"
    settings = WebSettings(
        model=world.stack.model,
        auth=world.stack.auth,
        session_keys=(SESSION_KEY,),
        dev=True,
        call_timeout_seconds=CALL_TIMEOUT,
    )
    app = create_app(settings)
    async with AsyncTestClient(app) as client:
        await sign_in(client, "bob")
        server = SilentServer(watches, app.state["frontend"])
        portal = client.blocking_portal
        portal.call(server.start)
        loop = asyncio.get_running_loop()
        # The test client answers on its own loop and blocks this one until
        # the response ends: a stream that never ends is ended from a thread,
        # so that the old code fails, not hangs.
        rescue = threading.Timer(WITHIN, portal.call, args=(server.rescue,))
        started = loop.time()
        rescue.start()
        try:
            events = await client.get(url, headers={"accept": "text/event-stream"})
            waited = loop.time() - started
            rescue.cancel()
            async with asyncio.timeout(WITHIN):
                while watches.released < 1:  # noqa: ASYNC110 - a counter of the server's handler
                    await asyncio.sleep(0.02)
        finally:
            rescue.cancel()
            rescue.join()
            portal.call(server.stop)
    assert events.status_code == 200
    assert ": watching" in events.text
    assert "event: entry" not in events.text
    assert "event: issue" not in events.text
    assert waited < WITHIN, "ended by the test's rescue, not by the web"
    assert (watches.opened, watches.released) == (1, 1)
    return events.text, waited


async def test_a_watch_the_model_never_starts_ends_the_stream_after_the_call_timeout(
    world: World, model: v1.ModelStub, caplog: pytest.LogCaptureFixture
) -> None:
    """On the old code the stream was still open at 20 s, when the test ended it."""
    with caplog.at_level(logging.INFO, logger="bugless.web"):
        _, waited = await _live_stream(world, model, SilentWatches())
    assert waited >= CALL_TIMEOUT
    said = [record.getMessage() for record in caplog.records if record.name == "bugless.web"]
    warned = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("bugless.web") and record.levelno == logging.WARNING
    ]
    assert any(
        "did not start the watch of issue" in line and "--call-timeout-seconds" in line
        for line in warned
    ), said


async def test_a_watch_the_model_ends_ends_the_stream(
    world: World, model: v1.ModelStub, caplog: pytest.LogCaptureFixture
) -> None:
    """On the old code the stream went on, watching nothing, until the test ended it at 20 s."""
    with caplog.at_level(logging.INFO, logger="bugless.web.live"):
        await _live_stream(world, model, SilentWatches(ending=True))
    ended = [r.getMessage() for r in caplog.records if r.name == "bugless.web.live"]
    assert any("the model service ended the watch" in line for line in ended), ended


async def test_a_list_watch_the_model_never_starts_ends_the_stream_after_the_call_timeout(
    world: World, model: v1.ModelStub, caplog: pytest.LogCaptureFixture
) -> None:
    """A search page's stream has the same bound, logged as such (bugless_web.routes.live_list).

    Before, the bound's TimeoutError (an OSError) was raised inside
    call_errors and logged as "the model service is unreachable: ".
    """
    with caplog.at_level(logging.INFO, logger="bugless.web"):
        _, waited = await _live_stream(world, model, SilentWatches(), "/search/events?q=is:open")
    assert waited >= CALL_TIMEOUT
    warned = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("bugless.web") and record.levelno == logging.WARNING
    ]
    assert any(
        "did not start the watch of a list" in line and "--call-timeout-seconds" in line
        for line in warned
    ), warned


async def test_a_list_watch_the_model_ends_ends_the_stream(
    world: World, model: v1.ModelStub, caplog: pytest.LogCaptureFixture
) -> None:
    """A search page's stream ends with its watch too, so the browser resumes elsewhere."""
    with caplog.at_level(logging.INFO, logger="bugless.web.live"):
        await _live_stream(world, model, SilentWatches(ending=True), "/search/events?q=is:open")
    ended = [r.getMessage() for r in caplog.records if r.name == "bugless.web.live"]
    assert any("the model service ended the watch" in line for line in ended), ended
