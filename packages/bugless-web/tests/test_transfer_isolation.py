"""A browser that stops reading a download holds up nobody else's pages or downloads.

A real ``bugless web serve`` with the default idle limit (60 s) on the
session's Model. A browser is played by a raw HTTP/1.1 connection that asks
for a 32 MiB attachment and then reads nothing: the web stops reading the
Model's stream, whose unread data fills the stream's HTTP/2 window (4 MiB).
Before, the web reached the Model over one connection whose window was no
larger, so every other call on it (the other people's pages) waited for the
stalled download's idle limit. The bounds below only keep a hang (the bug)
from holding the suite; they are far under the idle limit and assert no speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from browser_support import start_web_server
from transfer_support import DOWNLOAD, raw_download, uploaded_file
from web_support import World, create_issue

from bugless_dev.stack import RunningService
from bugless_proto import v1

#: Far under the idle limit (60 s) that would end the stall.
ANSWER_WITHIN = 20.0
#: How long the stalled browser waits before the others ask: the Model's
#: stream fills the windows on the way within it (a page asked earlier could
#: pass on the old code too, but never fail on the new).
FILL = 2.0


@pytest.fixture(scope="module")
def web(world: World) -> Iterator[RunningService]:
    server = start_web_server(world.stack, extra_env={"BUGLESS_WEB_METRICS_PORT": "0"})
    try:
        yield server
    finally:
        world.stack.stop_service(server)


async def test_a_stalled_download_holds_up_no_page_and_no_other_download(
    web: RunningService, world: World, model: v1.ModelStub
) -> None:
    url, cookie = await uploaded_file(web, world, model)
    issue = await create_issue(model, world, "A page asked for during a stalled download")
    async with raw_download(web.port, url, cookie) as (head, _reader):
        assert head.startswith(b"HTTP/1.1 200 "), head
        await asyncio.sleep(FILL)
        async with httpx.AsyncClient(
            base_url=str(web.url), headers={"cookie": cookie}, timeout=ANSWER_WITHIN
        ) as client:
            async with asyncio.timeout(ANSWER_WITHIN):
                page = await client.get(f"/issues/{issue.id}")
            assert page.status_code == 200, page.text[:500]
            assert "A page asked for during a stalled download" in page.text
            async with asyncio.timeout(ANSWER_WITHIN):
                other = await client.get(url)
            assert other.status_code == 200, other.text[:500]
            assert len(other.content) == DOWNLOAD
