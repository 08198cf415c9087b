"""A live issue page whose Model accepts the watch and never starts it.

The web awaited the Model's first watch message without bound: a Model that
accepted the call and sent nothing held the watch, and the page's event
stream (live in name only, every change missed), for as long as the page
stayed open. It now awaits it for ``--call-timeout-seconds``, as a call's
answer, then releases the watch and ends the stream, so the browser connects
again (EventSource's ``retry``) and gets what it missed from the history.

Everything but the watch goes to the stack's Model; the watch goes to a real
gRPC server on a loopback port whose ``Watch`` handler waits until cancelled.
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
#: Generous for a stream due to end after CALL_TIMEOUT (it never ended before).
WITHIN = 20.0


class SilentWatches(v1.ModelBase):
    """Accepts watches and never sends a message; counts them and their releases."""

    def __init__(self) -> None:
        self.opened = 0
        self.released = 0

    async def watch(self, message: v1.WatchRequest) -> AsyncIterator[v1.WatchEvent]:
        self.opened += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.released += 1
        yield v1.WatchEvent()  # never reached


@dataclass
class SilentServer:
    """The silent Model server and a web's channel to it, on the web app's loop."""

    watches: SilentWatches
    server: CorkedServer | None = None
    channel: CorkedChannel | None = None

    async def start_for(self, frontend: Frontend) -> None:
        """Serve, and send ``frontend``'s watches here.

        Run on the app's loop (the test client's portal): a channel binds
        the loop it is made on, and a server on the test's loop would not
        read while the test waits for the web's answer.
        """
        self.server = CorkedServer([self.watches])
        await self.server.start("127.0.0.1", 0)
        self.channel = CorkedChannel("127.0.0.1", listening_port(self.server))
        frontend.backends.model_stream = v1.ModelStub(self.channel)

    async def stop(self) -> None:
        """Close the channel and the server (once; a later call does nothing)."""
        channel, self.channel = self.channel, None
        server, self.server = self.server, None
        if channel is not None:
            channel.close()
        if server is not None:
            server.close()
            await server.wait_closed()


async def test_a_watch_the_model_never_starts_ends_the_stream_after_the_call_timeout(
    world: World,
    model: v1.ModelStub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    silent = SilentWatches()
    server = SilentServer(silent)
    issue = await create_issue(model, world, "Watched by a Model that never starts")
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
        frontend: Frontend = app.state["frontend"]
        portal = client.blocking_portal
        portal.call(server.start_for, frontend)
        loop = asyncio.get_running_loop()
        # The test client answers on its own loop and blocks this one until
        # the response ends: a stream that never ends is ended from a thread,
        # by stopping the silent server, so that the old code fails, not hangs.
        rescue = threading.Timer(WITHIN, portal.call, args=(server.stop,))
        started = loop.time()
        rescue.start()
        try:
            with caplog.at_level(logging.INFO, logger="bugless.web"):
                events = await client.get(
                    f"/issues/{issue.id}/events", headers={"accept": "text/event-stream"}
                )
            waited = loop.time() - started
            rescue.cancel()
            async with asyncio.timeout(WITHIN):
                while silent.released < 1:  # noqa: ASYNC110 - a counter of the server's handler
                    await asyncio.sleep(0.02)
        finally:
            rescue.cancel()
            rescue.join()
            portal.call(server.stop)

    assert events.status_code == 200
    assert ": watching" in events.text
    assert "event: entry" not in events.text
    assert CALL_TIMEOUT <= waited < WITHIN, "ended by the bound, not by stopping the server"
    assert (silent.opened, silent.released) == (1, 1)
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
