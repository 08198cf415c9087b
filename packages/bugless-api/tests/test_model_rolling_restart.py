"""A rolling restart of the Model under the API: a bot's upload gets through, once.

Two real Model replicas (``bugless model serve`` on the stack's database) take
turns on one port, as a pod and its replacement do behind a Service. The API's
connection is open to the old one when it drains; a bot's ``Watch`` (passed
through to the Model) keeps it in its grace period, so it no longer listens.
The API here does not say it honours a graceful GOAWAY (``refusing``: an API
from before, or a call that raced the GOAWAY), so the old replica refuses
every new call on the API's connection with UNAVAILABLE tagged
``DRAINING``. An upload is a client stream the API relays as it arrives: what
had gone out is sent again, with the rest, on a new connection to the new
replica. What each replica did is read from its own Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_support import Bots, ConnectAs, api_settings
from prometheus_client import CollectorRegistry

from bugless_api.server import RunningApi, start_api
from bugless_api.settings import RateLimitSettings
from bugless_core.errors import NotFound
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_testing.events import EventStream
from bugless_testing.goaway import without_goaway
from bugless_testing.metrics import metric_total
from bugless_testing.polling import eventually

#: An issue that does not exist.
MISSING_ISSUE = 999_999_999
#: More than one chunk: part of it has gone out when the refusal arrives.
CONTENT = bytes(range(256)) * 4096 * 3  # 3 MiB
#: Far more than the windows and socket buffers between the Model and a bot
#: that reads one message: its download stays in flight on the Model.
HELD_CONTENT = bytes(range(256)) * 4096 * 32  # 32 MiB


def _start_model(bots: Bots, port: int, name: str) -> RunningService:
    """A Model replica on ``port`` (0: any), with metrics, that drains slowly."""
    args = ["model", "serve", "--port", str(port), "--metrics-port", "0"]
    args += ["--drain-seconds", "0", "--grace-seconds", "60"]
    return bots.stack.start("model", args, name=name)


async def _metric(replica: RunningService, name: str, **labels: str) -> int:
    return int(await metric_total(replica.metrics_port, name, **labels))


async def _handled(replica: RunningService, method: str, code: str = "OK") -> int:
    return await _metric(replica, "grpc_server_handled_total", grpc_method=method, grpc_code=code)


@pytest.fixture(autouse=True)
def refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's Model calls meet the drain's DRAINING refusal, not its GOAWAY."""
    without_goaway(monkeypatch)


async def test_an_upload_refused_by_a_draining_model_is_sent_again_and_attached_once(
    bots: Bots, connect_as: ConnectAs, api: RunningApi, tmp_path: Path
) -> None:
    stack = bots.stack
    old = await asyncio.to_thread(_start_model, bots, 0, "model-old")
    new: RunningService | None = None
    running: RunningApi | None = None
    watch: EventStream | None = None
    held: AsyncIterator[v1.DownloadAttachmentResponse] | None = None
    try:
        settings = api_settings(stack, rate_limit=RateLimitSettings(rate=1000.0, burst=1000))
        model = dataclasses.replace(settings.model, port=old.port)
        running = await start_api(
            dataclasses.replace(settings, model=model), metrics_registry=CollectorRegistry()
        )
        robot = connect_as("robot", port=running.port)
        component = await robot.create_component(f"Rolling-{secrets.token_hex(3)}")
        issue = await robot.create_issue("an upload survives a rolling restart", component.id)
        watch = EventStream(robot.watch(query=f"c:{component.id}"))
        await watch.subscribed()
        # Uploads go on the API's transfer connection: a download left open keeps
        # that connection to the old replica while it drains, as the watch keeps
        # the calls' one.
        held_path = tmp_path / "held.bin"
        held_path.write_bytes(CONTENT)
        before = await robot.attach(issue.id, held_path)
        assert before.attachment is not None
        held = robot.iter_attachment(before.attachment.id)
        await anext(held)

        async def watching() -> bool:
            return await _metric(old, "grpc_server_in_flight_calls", grpc_method="Watch") > 0

        await eventually(watching, "the Watch open on the old replica", within=20)
        old.process.signal(signal.SIGTERM)

        async def refusing() -> bool:
            return "stopped accepting" in old.process.output()

        await eventually(refusing, "the old replica refusing calls", within=20)
        new = await asyncio.to_thread(_start_model, bots, old.port, "model-new")
        path = tmp_path / "rolled.bin"
        path.write_bytes(CONTENT)

        reply = await robot.attach(issue.id, path)

        assert reply.attachment is not None
        assert reply.attachment.size == len(CONTENT)
        assert reply.attachment.uploader == "robot"  # renamed by the relay, as ever
        assert await _handled(old, "UploadAttachment", "UNAVAILABLE") == 1
        assert await _handled(old, "UploadAttachment") == 1  # the one before the drain
        assert await _handled(new, "UploadAttachment") == 1
        attached = await robot.list_attachments(issue.id)
        assert [a.name for a in attached if a.name == "rolled.bin"] == ["rolled.bin"]
        # Any other refusal stands: the bot gets it, and it was asked once.
        with pytest.raises(NotFound):
            await robot.attach(MISSING_ISSUE, path)
        assert await _handled(new, "UploadAttachment", "NOT_FOUND") == 1
        assert await _handled(old, "UploadAttachment", "NOT_FOUND") == 0
        assert not old.process.exited, "the old replica closed too early"
    finally:
        if held is not None:
            await held.aclose()  # type: ignore[attr-defined]
        if watch is not None:
            await watch.close()
        if running is not None:
            await running.close()
        for replica in (old, new):
            if replica is not None:
                await asyncio.to_thread(stack.stop_service, replica)


async def test_a_download_and_a_watch_refused_by_a_draining_model_are_opened_again(
    bots: Bots, connect_as: ConnectAs, api: RunningApi, tmp_path: Path
) -> None:
    """Downloads and watches have connections of their own, which nothing else moves.

    A download left open keeps the API's transfer connection on the old
    replica, and a watch its watch connection, for the whole drain: a new
    download or watch the old replica refuses there is opened once more on
    a new connection, as a refused upload is sent again, instead of failing
    every try (the client's retries reach the same pinned connection).
    """
    stack = bots.stack
    old = await asyncio.to_thread(_start_model, bots, 0, "model-old")
    new: RunningService | None = None
    running: RunningApi | None = None
    watch: EventStream | None = None
    again: EventStream | None = None
    held: AsyncIterator[v1.DownloadAttachmentResponse] | None = None
    try:
        settings = api_settings(stack, rate_limit=RateLimitSettings(rate=1000.0, burst=1000))
        model = dataclasses.replace(settings.model, port=old.port)
        running = await start_api(
            dataclasses.replace(settings, model=model), metrics_registry=CollectorRegistry()
        )
        robot = connect_as("robot", port=running.port)
        component = await robot.create_component(f"Rolling-{secrets.token_hex(3)}")
        issue = await robot.create_issue("downloads and watches survive a restart", component.id)
        watch = EventStream(robot.watch(query=f"c:{component.id}"))
        await watch.subscribed()
        path = tmp_path / "held.bin"
        path.write_bytes(HELD_CONTENT)
        big = await robot.attach(issue.id, path)
        assert big.attachment is not None
        # Held by a client of its own: its unread window would stall the robot's calls.
        held = connect_as("robot", port=running.port).iter_attachment(big.attachment.id)
        await anext(held)
        path.write_bytes(CONTENT)
        attached = await robot.attach(issue.id, path)
        assert attached.attachment is not None

        async def pinned() -> bool:
            watches = await _metric(old, "grpc_server_in_flight_calls", grpc_method="Watch")
            downloads = await _metric(
                old, "grpc_server_in_flight_calls", grpc_method="DownloadAttachment"
            )
            return watches > 0 and downloads > 0

        await eventually(pinned, "the API's connection pinned to the old replica", within=20)
        old.process.signal(signal.SIGTERM)

        async def refusing() -> bool:
            return "stopped accepting" in old.process.output()

        await eventually(refusing, "the old replica refusing calls", within=20)
        new = await asyncio.to_thread(_start_model, bots, old.port, "model-new")

        got = await robot.download_attachment(attached.attachment.id, tmp_path / "got.bin")
        assert got.size == len(CONTENT)
        assert (tmp_path / "got.bin").read_bytes() == CONTENT
        assert await _handled(old, "DownloadAttachment", "UNAVAILABLE") == 1
        assert await _handled(new, "DownloadAttachment") == 1

        again = EventStream(robot.watch(query=f"c:{component.id}", reconnect=False))
        await again.subscribed()
        await robot.comment(issue.id, "seen by the watch opened during the drain")
        event = await again.next()
        assert event.issue is not None
        assert event.issue.id == issue.id
        assert await _handled(old, "Watch", "UNAVAILABLE") == 1
        assert await _metric(new, "grpc_server_in_flight_calls", grpc_method="Watch") == 1
        assert not old.process.exited, "the old replica closed too early"
    finally:
        if held is not None:
            await held.aclose()  # type: ignore[attr-defined]
        for stream in (watch, again):
            if stream is not None:
                await stream.close()
        if running is not None:
            await running.close()
        for replica in (old, new):
            if replica is not None:
                await asyncio.to_thread(stack.stop_service, replica)
