"""An issue page's live stream whose browser stops reading: bounded, then told to reload.

A Model replica of this module's own serves a real ``bugless web serve``, so
its ``/metrics`` say whether the web's ``Watch`` is still open. The browser
is a raw HTTP/1.1 connection with a small receive buffer
(:mod:`transfer_support`) that reads the stream's start and then nothing
while the issue gets large comments, as a suspended laptop's tab does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from transfer_support import raw_download, signed_in
from web_support import World, create_issue, grpc_in_flight

from bugless_core.clients import call
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_web.routes.live import LIVE_BACKLOG_EVENTS

#: Each comment's text: near the largest the Model takes, so the stream's
#: events fill loopback's socket buffers after a few dozen.
COMMENT = ("backlog " * 7_500).strip()
#: Comments made at most while the browser reads nothing: about 36 MB of
#: events, far past what the socket buffers and the backlog hold together.
MOST_COMMENTS = 600


@pytest.fixture(scope="module")
def own_model(world: World) -> Iterator[RunningService]:
    """A Model replica of this module's own (its metrics count only this web's calls)."""
    args = ["model", "serve", "--port", "0", "--metrics-port", "0"]
    replica = world.stack.start("model", args, name="model-live-backlog")
    try:
        yield replica
    finally:
        world.stack.stop_service(replica)


@pytest.fixture(scope="module")
def web(world: World, own_model: RunningService) -> Iterator[RunningService]:
    """A web on ``own_model``."""
    server = world.stack.start_web(
        "--model", f"127.0.0.1:{own_model.port}", env={"BUGLESS_WEB_DRAIN_SECONDS": "0.2"}
    )
    try:
        yield server
    finally:
        world.stack.stop_service(server)


async def _watches(own_model: RunningService) -> int:
    assert own_model.metrics_port is not None
    return await grpc_in_flight(own_model.metrics_port, "Watch")


async def _events(reader: asyncio.StreamReader) -> list[tuple[str, str]]:
    """The stream's events (name, data) up to its end (comments and ids left out)."""
    found: list[tuple[str, str]] = []
    async with asyncio.timeout(120):  # only against a server that hangs
        body = await reader.read()
    # Chunked transfer framing aside, every event is "event: NAME\r\ndata: ...".
    name = ""
    for line in body.decode().splitlines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name:
            found.append((name, line.removeprefix("data: ")))
            name = ""
    return found


async def test_a_browser_that_stops_reading_is_told_to_reload_and_the_watch_ends(
    web: RunningService, own_model: RunningService, world: World, model: v1.ModelStub
) -> None:
    """The web keeps at most LIVE_BACKLOG_EVENTS unsent, then ends the Model's watch.

    Before, the stream's queue took every event while the browser read none
    (the web's memory grew with each, without limit) and the watch stayed
    open for as long as the tab did. Now, once the backlog is full, the
    Model's watch is released while the browser still reads nothing, and
    the browser, reading again, gets the entries that were on their way and
    then a ``reload`` event, its stream's last.
    """
    issue = await create_issue(model, world, "Watched by a tab that stopped reading")
    async with httpx.AsyncClient(base_url=str(web.url), timeout=60) as client:
        await signed_in(client)
        cookie = "; ".join(f"{key}={value}" for key, value in client.cookies.items())
    url = f"/issues/{issue.id}/events?after={issue.version}"
    async with raw_download(web.port, url, cookie) as (head, reader):
        assert head.startswith(b"HTTP/1.1 200 "), head
        async with asyncio.timeout(60):
            await reader.readuntil(b": watching")
            while True:  # the web's Watch is open at the Model
                if await _watches(own_model) == 1:
                    break
                await asyncio.sleep(0.05)
        # The browser reads nothing from here on.
        version, made = issue.version, 0
        while made < MOST_COMMENTS and await _watches(own_model) == 1:
            for _ in range(10):
                response = await call(
                    model.change_issue,
                    v1.ChangeIssueRequest(
                        caller=world.caller("carol"),
                        issue_id=issue.id,
                        expected_version=version,
                        comment=COMMENT,
                    ),
                )
                assert response.entry is not None
                version = response.entry.version
            made += 10
        # Released while the browser still reads nothing: the web waits for no one.
        assert await _watches(own_model) == 0, f"still watching after {made} comments"
        assert made > LIVE_BACKLOG_EVENTS
        events = await _events(reader)
    names = [name for name, _ in events]
    assert names[-1] == "reload", names[-5:]
    assert names[:-1] == ["entry"] * (len(names) - 1)
    sent = [json.loads(data)["version"] for _, data in events[:-1]]
    assert sent == sorted(sent)
    assert sent, "some entries reached the socket before it filled"
    assert len(sent) < made  # the rest is for the reloaded page to show
    assert events[-1][1] == f"behind-{issue.id}-{sent[-1]}"
