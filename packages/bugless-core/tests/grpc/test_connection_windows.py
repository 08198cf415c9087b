"""``/metrics`` shows the flow-control windows of the process's gRPC connections.

A real runner over mutual TLS, its real ``/metrics`` endpoint, and a
:class:`~bugless_core.grpc.CorkedChannel`: a client-streaming call sends
request data its handler does not read yet, and the server's inbound window
(and the channel's outbound one) drop by that much until the handler reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request
import weakref
from collections.abc import AsyncIterator, Callable
from typing import ClassVar

import pytest
from grpc_test_server import Pki
from grpclib.const import Cardinality
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bugless_core.grpc import CorkedChannel, GrpcServiceRunner, _windows
from bugless_core.grpc._access import ANY_CLIENT, AccessTable, every_method
from bugless_proto.bugless import v1

#: grpclib's connection window, which every bugless server and channel keeps.
INITIAL_WINDOW = 4 * 1024 * 1024
#: One upload chunk; two (with their framing) are just over half the window,
#: so once both are read h2 gives all of it back in one WINDOW_UPDATE (it
#: sends none until half the window is read).
CHUNK = 1024 * 1024
CHUNKS = 2
UPLOAD = "/bugless.v1.Issues/UploadAttachment"


class HoldingIssues(v1.IssuesBase):
    """``UploadAttachment`` does not read its request until :attr:`read` is set."""

    ACCESS: ClassVar[AccessTable] = every_method("bugless.v1.Issues", {ANY_CLIENT})

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.read = asyncio.Event()
        self.chunks = 0

    async def upload_attachment(
        self, messages: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> v1.UploadAttachmentResponse:
        self.started.set()
        await self.read.wait()
        async for message in messages:
            self.chunks += message.chunk is not None
        return v1.UploadAttachmentResponse()


@pytest.fixture(autouse=True)
def only_this_tests_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gauges are the minimum over every live connection of the process.

    Connections other tests left open (a session's channels, an idle one
    whose peer owes it a few bytes of credit) would be in that minimum, so
    each test here counts only the connections it makes.
    """
    monkeypatch.setattr(
        _windows, "_LIVE", {"server": weakref.WeakSet(), "client": weakref.WeakSet()}
    )


async def _scraped(runner: GrpcServiceRunner) -> dict[tuple[str, str], float]:
    """``(side, direction): bytes`` of the ``min`` gauge, from the runner's ``/metrics``."""
    url = f"http://127.0.0.1:{runner.metrics_port}/metrics"
    with await asyncio.to_thread(urllib.request.urlopen, url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.labels["side"], sample.labels["direction"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "bugless_grpc_connection_window_bytes" and sample.labels["stat"] == "min"
    }


async def _scrape_until(
    runner: GrpcServiceRunner, condition: Callable[[dict[tuple[str, str], float]], bool]
) -> dict[tuple[str, str], float]:
    """Scrape until ``condition`` holds (a bound only: each state is reached at once)."""
    seen: list[dict[tuple[str, str], float]] = []
    try:
        async with asyncio.timeout(10):
            while not condition(windows := await _scraped(runner)):
                seen.append(windows)
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"the windows stayed {seen[-1:]}") from None
    return windows


async def test_a_handler_holding_unread_request_data_shows_in_the_windows(pki: Pki) -> None:
    servicer = HoldingIssues()
    settings = dataclasses.replace(pki.mutual_tls_settings(), metrics_port=0)
    runner = GrpcServiceRunner(
        [servicer], settings, name="test-issues", metrics_registry=CollectorRegistry()
    )
    await runner.start()
    channel = CorkedChannel("127.0.0.1", runner.port, ssl=pki.client_context())
    try:
        async with channel.request(
            UPLOAD,
            Cardinality.STREAM_UNARY,
            v1.UploadAttachmentRequest,
            v1.UploadAttachmentResponse,
            timeout=30,
        ) as call:
            await call.send_request()
            await asyncio.wait_for(servicer.started.wait(), 10)
            # Connected, no request data sent yet: every window is whole.
            idle = await _scrape_until(
                runner, lambda w: w.get(("client", "outbound")) == INITIAL_WINDOW
            )
            assert idle == {
                (side, direction): INITIAL_WINDOW
                for side in ("server", "client")
                for direction in ("inbound", "outbound")
            }

            for _ in range(CHUNKS):
                await call.send_message(v1.UploadAttachmentRequest(chunk=bytes(CHUNK)))
            await _scrape_until(
                runner, lambda w: w[("server", "inbound")] < INITIAL_WINDOW - CHUNKS * CHUNK
            )
            # What the handler holds unread is not given back: both ends agree.
            held = await _scrape_until(
                runner, lambda w: w[("client", "outbound")] == w[("server", "inbound")]
            )
            assert held[("server", "inbound")] > INITIAL_WINDOW - CHUNKS * CHUNK - 100
            assert held[("server", "outbound")] == INITIAL_WINDOW

            servicer.read.set()
            await call.end()
            assert await call.recv_message() == v1.UploadAttachmentResponse()
        assert servicer.chunks == CHUNKS
        # Read, and the call over: the credit is back on both ends (all but
        # the call's last few bytes, which h2 gives back with the next half).
        back = await _scrape_until(
            runner, lambda w: w[("server", "inbound")] == w[("client", "outbound")]
        )
        assert INITIAL_WINDOW - 100 < back[("server", "inbound")] <= INITIAL_WINDOW
    finally:
        channel.close()
        await runner.close()
