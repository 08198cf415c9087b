"""A rolling restart: calls a draining replica refuses are retried, writes included.

Two real API frontends take turns on one port, as a pod and its replacement
do behind a Service: the old one drains while a client's connection is still
open to it, the new one listens on the same port. The draining replica sends
the client a graceful GOAWAY, and the client's next calls go down a new
connection. A client that does not say it honours one (``refusing``: one
from before, or a call that raced the GOAWAY) has its new calls on that
connection answered with UNAVAILABLE tagged ``DRAINING`` (they did not
run), so it sends even a call that is not idempotent (a
comment) again, down a new connection, and it is applied exactly once, by the
new replica, while the old one is still finishing its calls.
An upload is sent again the same way, its file read again from the start,
but only after that refusal: any other failure stands; a download resumes
down a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_support import Bots, ConnectAs, api_settings
from prometheus_client import CollectorRegistry

from bugless_api.client import RetryPolicy
from bugless_api.server import RunningApi, start_api
from bugless_api.settings import ApiSettings, RateLimitSettings
from bugless_core.errors import Unavailable
from bugless_proto import v1
from bugless_testing.events import EventStream
from bugless_testing.goaway import without_goaway


def _handled(registry: CollectorRegistry, method: str, code: str) -> float:
    value = registry.get_sample_value(
        "grpc_server_handled_total",
        {"grpc_service": "bugless.v1.Issues", "grpc_method": method, "grpc_code": code},
    )
    return value or 0.0


@dataclasses.dataclass
class _Replicas:
    """The old API replica on its port, and the new one that replaces it there."""

    settings: ApiSettings
    old: RunningApi
    old_metrics: CollectorRegistry
    new_metrics: CollectorRegistry = dataclasses.field(default_factory=CollectorRegistry)
    new: RunningApi | None = None

    async def roll(self) -> asyncio.Task[None]:
        """Drain the old replica (its drain task) and start the new one on the same port."""
        draining = asyncio.create_task(self.old.runner.drain())
        await asyncio.sleep(0.2)  # listener closed; the connection stays, refusing
        grpc = dataclasses.replace(self.settings.grpc, port=self.old.port)
        self.new = await start_api(
            dataclasses.replace(self.settings, grpc=grpc), metrics_registry=self.new_metrics
        )
        return draining


@contextlib.asynccontextmanager
async def _replicas(bots: Bots) -> AsyncIterator[_Replicas]:
    """An old replica that drains for up to 15 s once asked; both closed at the end."""
    settings = api_settings(bots.stack, rate_limit=RateLimitSettings(rate=1000.0, burst=1000))
    settings = dataclasses.replace(
        settings, grpc=dataclasses.replace(settings.grpc, drain_seconds=0.0, grace_seconds=15.0)
    )
    old_metrics = CollectorRegistry()
    old = await start_api(settings, metrics_registry=old_metrics)
    replicas = _Replicas(settings, old, old_metrics)
    try:
        yield replicas
    finally:
        await old.close()
        if replicas.new is not None:
            await replicas.new.close()


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot's calls meet the drain's DRAINING refusal, not its GOAWAY."""
    without_goaway(monkeypatch)


@pytest.mark.parametrize("goaway", [True, False], ids=["goaway", "refused"])
async def test_a_comment_during_a_drain_is_made_once_by_the_new_replica(
    bots: Bots,
    connect_as: ConnectAs,
    api: RunningApi,
    goaway: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused, or sent elsewhere at once after the old replica's GOAWAY: made once."""
    if not goaway:
        without_goaway(monkeypatch)
    async with _replicas(bots) as replicas:
        robot = connect_as(
            "robot",
            port=replicas.old.port,
            retry=RetryPolicy(attempts=40, initial_backoff=0.1, max_backoff=0.2),
        )
        component = await robot.create_component(f"Rolling-{secrets.token_hex(3)}")
        issue = await robot.create_issue("rolling restart", component.id)
        # A long call in progress keeps the old replica draining (refusing)
        # for its whole grace period instead of closing at once.
        watch = EventStream(robot.watch(query=f"c:{component.id}"))
        await watch.subscribed()
        assert replicas.old.runner.in_flight >= 1

        draining = await replicas.roll()
        comment = f"said once {secrets.token_hex(4)}"
        changed = await robot.comment(issue.id, comment, expected_version=issue.version)

        # Refused once by the old replica (unless its GOAWAY sent it elsewhere
        # first), then sent down a new connection to the new one, while the
        # old one still finishes its watch.
        refused = 0 if goaway else 1
        assert _handled(replicas.old_metrics, "ChangeIssue", "UNAVAILABLE") == refused
        assert _handled(replicas.old_metrics, "ChangeIssue", "OK") == 0
        assert _handled(replicas.new_metrics, "ChangeIssue", "OK") == 1
        assert not draining.done()
        await watch.close()
        assert changed.issue is not None
        assert changed.issue.version == issue.version + 1
        history = await connect_as("robot").list_history(issue.id)
        assert [e.comment for e in history.entries if e.comment == comment] == [comment]
        assert history.entries[-1].author == "robot"


@pytest.mark.usefixtures("refusing")
async def test_an_upload_refused_by_a_draining_replica_is_read_again_and_attached_once(
    bots: Bots, connect_as: ConnectAs, api: RunningApi, tmp_path: Path
) -> None:
    """The client sends a refused upload once more, from the file's start, to the new replica."""
    async with _replicas(bots) as replicas:
        robot = connect_as(
            "robot", port=replicas.old.port, retry=RetryPolicy(attempts=2, max_backoff=0.2)
        )
        component = await robot.create_component(f"Rolling-{secrets.token_hex(3)}")
        issue = await robot.create_issue("an upload survives a rolling restart", component.id)
        watch = EventStream(robot.watch(query=f"c:{component.id}"))
        await watch.subscribed()
        draining = await replicas.roll()
        # Larger than a stream window: the refusal comes while it is being sent.
        content = secrets.token_bytes(700_000)
        path = tmp_path / "rolled.bin"
        path.write_bytes(content)

        reply = await robot.attach(issue.id, path)

        assert _handled(replicas.old_metrics, "UploadAttachment", "UNAVAILABLE") == 1
        assert _handled(replicas.old_metrics, "UploadAttachment", "OK") == 0
        assert _handled(replicas.new_metrics, "UploadAttachment", "OK") == 1
        assert not draining.done()
        await watch.close()
        assert reply.attachment is not None
        assert reply.attachment.sha256 == hashlib.sha256(content).hexdigest()
        attached = await connect_as("robot").list_attachments(issue.id)
        assert [(a.name, a.size) for a in attached] == [("rolled.bin", len(content))]


@pytest.mark.usefixtures("refusing")
async def test_a_download_refused_by_a_draining_replica_resumes_on_the_new_one(
    bots: Bots, connect_as: ConnectAs, api: RunningApi, tmp_path: Path
) -> None:
    """The refused download goes down a new connection, not back to the draining replica."""
    async with _replicas(bots) as replicas:
        robot = connect_as(
            "robot",
            port=replicas.old.port,
            retry=RetryPolicy(attempts=4, initial_backoff=0.05, max_backoff=0.1),
        )
        component = await robot.create_component(f"Rolling-{secrets.token_hex(3)}")
        issue = await robot.create_issue("a download survives a rolling restart", component.id)
        content = secrets.token_bytes(300_000)
        source = tmp_path / "kept.bin"
        source.write_bytes(content)
        reply = await robot.attach(issue.id, source)
        assert reply.attachment is not None
        watch = EventStream(robot.watch(query=f"c:{component.id}"))
        await watch.subscribed()
        draining = await replicas.roll()

        got = await robot.download_attachment(reply.attachment.id, tmp_path / "got.bin")

        # Refused once by the old replica (sent back to it, it would refuse
        # every attempt), then served whole by the new one.
        assert _handled(replicas.old_metrics, "DownloadAttachment", "UNAVAILABLE") == 1
        assert _handled(replicas.new_metrics, "DownloadAttachment", "OK") == 1
        assert not draining.done()
        await watch.close()
        assert got.sha256 == hashlib.sha256(content).hexdigest()
        assert (tmp_path / "got.bin").read_bytes() == content


async def test_an_upload_in_progress_when_its_replica_drains_finishes_there(
    bots: Bots, connect_as: ConnectAs, api: RunningApi
) -> None:
    """An upload running when its replica drains goes on past the grace, and is attached.

    The replica waits ``drain_transfer_seconds`` for it (``grace_seconds``
    only for other calls) and closes as soon as it ended. Before, the drain
    cancelled it at the grace: a bot (or a person's ``bugless`` command)
    lost an upload to every rollout that met it.
    """
    settings = api_settings(bots.stack, rate_limit=RateLimitSettings(rate=1000.0, burst=1000))
    grpc = dataclasses.replace(
        settings.grpc, drain_seconds=0.0, grace_seconds=0.5, drain_transfer_seconds=60.0
    )
    replica = await start_api(
        dataclasses.replace(settings, grpc=grpc), metrics_registry=CollectorRegistry()
    )
    try:
        robot = connect_as("robot", port=replica.port)
        component = await robot.create_component(f"Rolling-{secrets.token_hex(3)}")
        issue = await robot.create_issue("an upload outlasts the grace", component.id)
        pieces = [secrets.token_bytes(64 * 1024) for _ in range(16)]
        header = v1.UploadAttachmentHeader(
            issue_id=issue.id, name="slow.bin", size=sum(len(piece) for piece in pieces)
        )

        header_sent = asyncio.Event()

        async def slowly() -> AsyncIterator[v1.UploadAttachmentRequest]:
            yield v1.UploadAttachmentRequest(header=header)
            header_sent.set()
            for piece in pieces:
                await asyncio.sleep(0.15)
                yield v1.UploadAttachmentRequest(chunk=piece)

        upload = asyncio.create_task(robot.issues.upload_attachment(slowly(), timeout=60))
        await header_sent.wait()
        loop = asyncio.get_running_loop()
        # The replica reads it: the call is in flight there. Waited for, not
        # slept on: on a loaded machine the header can take longer to be read.
        reached_by = loop.time() + 10
        while replica.runner.in_flight != 1:
            assert loop.time() < reached_by, f"{replica.runner.in_flight} calls in flight"
            await asyncio.sleep(0.01)
        started = loop.time()
        draining = asyncio.create_task(replica.runner.drain())

        reply = await upload
        assert loop.time() - started > grpc.grace_seconds  # the case this is about
        await asyncio.wait_for(draining, timeout=5)  # closed once it ended, not at 60 s
    finally:
        await replica.close()
    assert reply.attachment is not None
    assert reply.attachment.sha256 == hashlib.sha256(b"".join(pieces)).hexdigest()
    attached = await connect_as("robot").list_attachments(issue.id)
    assert [(a.name, a.size) for a in attached] == [("slow.bin", header.size)]


async def test_an_upload_failing_otherwise_is_not_sent_again(
    bots: Bots, connect_as: ConnectAs, api: RunningApi, tmp_path: Path
) -> None:
    """An UNAVAILABLE not tagged DRAINING may have attached the file: it stands, asked once."""
    robot = connect_as("robot")
    component = await robot.create_component(f"Rolling-{secrets.token_hex(3)}")
    issue = await robot.create_issue("an upload with its Model gone", component.id)
    path = tmp_path / "lost.bin"
    path.write_bytes(b"lost")
    # An API frontend whose Model listens nowhere: the port is held but not listened on.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        settings = api_settings(bots.stack, rate_limit=RateLimitSettings(rate=1000.0, burst=1000))
        model = dataclasses.replace(settings.model, port=held.getsockname()[1])
        metrics = CollectorRegistry()
        cut_off = await start_api(
            dataclasses.replace(settings, model=model), metrics_registry=metrics
        )
        try:
            bot = connect_as(
                "robot", port=cut_off.port, retry=RetryPolicy(attempts=4, max_backoff=0.2)
            )
            with pytest.raises(Unavailable) as caught:
                await bot.attach(issue.id, path)
            assert not caught.value.refused_while_draining
            assert _handled(metrics, "UploadAttachment", "UNAVAILABLE") == 1
        finally:
            await cut_off.close()
    assert await robot.list_attachments(issue.id) == []
