"""How a transfer ends when one side stops: a browser going away, a Model that stalls.

A Model replica of this module's own (``bugless model serve`` on the
session's database) serves a real ``bugless web serve`` with short idle
limits. A Model that stops taking or sending is that replica stopped with
SIGSTOP (as a process paused by the kernel, a full disk's I/O or a
debugger is): its connections stay open and say nothing. It is always
continued (SIGCONT) before the test ends. A browser is played by a raw
HTTP/1.1 connection (:mod:`transfer_support`); what the web did is read from
its ``/metrics`` and its log.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
from transfer_support import (
    BLOCK,
    DOWNLOAD,
    downloads_reach,
    logged_since,
    raw_download,
    uploaded_file,
)
from web_support import World, grpc_in_flight

from bugless_dev.stack import RunningService
from bugless_proto import v1

#: Every backend call's deadline on this web (pages and sign-in fit in it).
CALL_TIMEOUT = 3.0
#: How long a transfer may move no byte, either way.
IDLE = 2.0


@pytest.fixture(scope="module")
def own_model(world: World) -> Iterator[RunningService]:
    """A Model replica of this module's own, continued and stopped at the end."""
    args = ["model", "serve", "--port", "0", "--metrics-port", "0"]
    replica = world.stack.start("model", args, name="model-pausing")
    try:
        yield replica
    finally:
        replica.process.signal(signal.SIGCONT)
        world.stack.stop_service(replica)


@pytest.fixture(scope="module")
def web(world: World, own_model: RunningService) -> Iterator[RunningService]:
    """A web on ``own_model``, with metrics, a short call timeout and short idle limits."""
    server = world.stack.start_web(
        "--model",
        f"127.0.0.1:{own_model.port}",
        env={
            "BUGLESS_WEB_DRAIN_SECONDS": "0.2",
            "BUGLESS_WEB_METRICS_PORT": "0",
            "BUGLESS_WEB_CALL_TIMEOUT_SECONDS": str(CALL_TIMEOUT),
            "BUGLESS_WEB_UPLOAD_IDLE_SECONDS": str(IDLE),
            "BUGLESS_WEB_DOWNLOAD_IDLE_SECONDS": str(IDLE),
        },
    )
    try:
        yield server
    finally:
        world.stack.stop_service(server)


def _about(lines: list[str], attachment_id: str) -> list[str]:
    return [line for line in lines if f"attachment {attachment_id}:" in line]


def _no_traceback(lines: list[str]) -> None:
    assert not [line for line in lines if "Traceback" in line or "ASGI" in line], lines


async def test_a_browser_that_goes_away_mid_download_is_one_info_line(
    web: RunningService, own_model: RunningService, world: World, model: v1.ModelStub
) -> None:
    """A browser closing a download (a cancelled save, a closed tab) is ordinary: one line.

    The line names the attachment and what was sent; the call is counted
    as CANCELLED; nothing else is logged about it. Before, nothing at all
    was logged (only the access line, a 200).
    """
    url, cookie = await uploaded_file(web, world, model)
    attachment_id = url.split("/")[-2]
    before = await _cancelled(web)
    logged_before = web.log.stat().st_size
    async with raw_download(web.port, url, cookie) as (head, reader):
        assert head.startswith(b"HTTP/1.1 200 "), head
        async with asyncio.timeout(120):  # only against a server that hangs
            await reader.readexactly(BLOCK)
    # Counted once the web noticed, which is when it ended the call and logged.
    assert await downloads_reach(web, "CANCELLED", before + 1) == before + 1
    lines = logged_since(web, logged_before)
    about = _about(lines, attachment_id)
    assert len(about) == 1, lines
    assert " INFO bugless.web: " in about[0], about
    assert "the browser went away after" in about[0], about
    assert f" of {DOWNLOAD} bytes;" in about[0], about
    _no_traceback(lines)
    # And the Model's side of it ended: nothing left running there.
    assert own_model.metrics_port is not None
    assert await grpc_in_flight(own_model.metrics_port, "DownloadAttachment") == 0


async def _cancelled(web: RunningService) -> float:
    return await downloads_reach(web, "CANCELLED", 0)
