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

import httpx
import pytest
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
from web_support import World, create_issue, grpc_in_flight

from bugless_core.clients import call
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_testing.stack import paused

#: Every backend call's deadline on this web: the sign-in and its home page
#: must fit in it while a loaded machine runs the Model late (3 s did not
#: always). Longer than IDLE, so the download test shows that the first
#: message waits for this, not for the idle limit.
CALL_TIMEOUT = 6.0
#: How long a transfer may move no byte, either way; the uploads that set up
#: a download must not stall this long on a loaded machine (2 s was tight).
IDLE = 4.0


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
    """A web on ``own_model``, with metrics, a short call timeout and short idle limits.

    One for the module: its tests share its connection to the Model, which
    every pause and reset stream must leave working (a bugless server
    releases a stream reset before its handler task started,
    ``bugless_core._compat.grpclib``).
    """
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


#: An upload far larger than what a gRPC stream's window lets the web send
#: a Model that reads nothing (a few MiB).
UPLOAD = 16 * 1024 * 1024


async def _names(model: v1.ModelStub, world: World, issue: v1.Issue) -> list[str]:
    listed = await call(
        model.list_attachments,
        v1.ListAttachmentsRequest(caller=world.caller("bob"), issue_id=issue.id),
    )
    return [a.name for a in listed.attachments]


async def test_an_upload_the_model_stops_taking_is_a_503_naming_it_and_attaches_nothing(
    web: RunningService, own_model: RunningService, world: World, model: v1.ModelStub
) -> None:
    """Both upload routes: the script's gets the reason as JSON, the no-script form a page.

    Counted as the transfer limits are, DEADLINE_EXCEEDED.
    """
    issue = await create_issue(model, world, "An upload to a paused Model")
    before = await client_calls(web, "UploadAttachment", "DEADLINE_EXCEEDED")
    reason = f"the model service took nothing of the upload for {IDLE:g} s; nothing was attached"
    async with httpx.AsyncClient(base_url=str(web.url), timeout=120) as client:
        csrf = await signed_in(client)
        with paused(own_model):
            answer = await client.post(
                f"/issues/{issue.id}/attachments",
                content=bytes(UPLOAD),
                headers={"x-csrf-token": csrf, "x-file-name": "paused.bin"},
            )
            page = await client.post(
                f"/issues/{issue.id}/attachments/form",
                data={"_csrf": csrf},
                files={"file": ("paused-form.bin", bytes(UPLOAD), "application/octet-stream")},
                follow_redirects=False,
            )
    assert answer.status_code == 503, answer.text
    assert answer.json() == {"error": reason}
    assert page.status_code == 503, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>Service unavailable &middot; bugless</title>" in page.text
    assert reason in page.text
    assert "Traceback" not in page.text
    assert await client_calls(web, "UploadAttachment", "DEADLINE_EXCEEDED") == before + 2
    # Continued, the Model finds both calls reset: it kept nothing.
    assert await _names(model, world, issue) == []


async def test_a_download_the_model_does_not_start_is_a_503_naming_it(
    web: RunningService, own_model: RunningService, world: World, model: v1.ModelStub
) -> None:
    """Before the response starts, a Model that sends nothing is a 503 page, not a hang."""
    url, cookie = await uploaded_file(web, world, model)
    before = await client_calls(web, "DownloadAttachment", "UNAVAILABLE")
    headers = {"cookie": cookie}
    async with httpx.AsyncClient(base_url=str(web.url), timeout=120, headers=headers) as client:
        with paused(own_model):
            response = await client.get(url)
    assert response.status_code == 503, response.text
    assert "<title>Service unavailable &middot; bugless</title>" in response.text
    reason = f"the model service did not start the download within {CALL_TIMEOUT:g} s"
    assert reason in response.text
    assert await client_calls(web, "DownloadAttachment", "UNAVAILABLE") == before + 1


async def test_a_download_the_model_stops_sending_is_cut_short_with_one_error_line(
    web: RunningService, own_model: RunningService, world: World, model: v1.ModelStub
) -> None:
    """After the response started, the body ends short and the log says why, once."""
    url, cookie = await uploaded_file(web, world, model)
    attachment_id = url.split("/")[-2]
    before = await client_calls(web, "DownloadAttachment", "UNAVAILABLE")
    logged_before = web.log.stat().st_size
    received = bytearray()
    async with raw_download(web.port, url, cookie) as (head, reader):
        assert head.startswith(b"HTTP/1.1 200 "), head
        async with asyncio.timeout(120):  # only against a server that hangs
            received += await reader.readexactly(BLOCK)
            with paused(own_model):
                while chunk := await reader.read(BLOCK):
                    received += chunk
    assert BLOCK <= len(received) < DOWNLOAD
    assert await downloads_reach(web, "UNAVAILABLE", before + 1) == before + 1
    lines = logged_since(web, logged_before)
    about = _about(lines, attachment_id)
    assert len(about) == 1, lines
    assert " ERROR bugless.web: " in about[0], about
    assert "the download broke after" in about[0], about
    reason = f"UNAVAILABLE: the model service sent nothing of the download for {IDLE:g} s"
    assert reason in about[0], about
    _no_traceback(lines)
