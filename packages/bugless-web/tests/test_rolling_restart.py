"""A rolling restart of the Model: pages and refused writes get through to the next replica.

Two real Model replicas (``bugless model serve`` subprocesses on the session's
database) take turns on one port, as a pod and its replacement do behind a
Service. The web's connection is open to the old one when it drains; a long
call in progress there (a ``Watch``, as a live issue page holds) keeps it in
its grace period, so it no longer listens. It sends the web a graceful
GOAWAY, and the web's next calls go down a new connection, to the new
replica, which listens on the same port. Most tests here follow a web that
does not say it honours the GOAWAY (``refusing``: a web from before, or a
call that raced the GOAWAY), whose calls the old replica answers with
UNAVAILABLE tagged ``DRAINING``, which the web sends again. What each replica
did is read from its own Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from grpclib.client import Channel
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import World, create_issue, grpc_calls, grpc_in_flight, sign_in

from bugless_core.clients import acting_as, call
from bugless_core.limits import MAX_PAGE_SIZE
from bugless_dev.processes import ServiceProcess
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_testing.goaway import without_goaway
from bugless_testing.polling import eventually
from bugless_web import WebSettings, create_app


@dataclass
class Replica:
    service: RunningService

    @property
    def process(self) -> ServiceProcess:
        return self.service.process

    @property
    def metrics_port(self) -> int:
        assert self.service.metrics_port is not None
        return self.service.metrics_port


def _start_model(world: World, port: int, name: str) -> Replica:
    """A Model replica on ``port`` (0: any), with metrics, that drains slowly."""
    args = ["model", "serve", "--port", str(port), "--metrics-port", "0"]
    args += ["--drain-seconds", "0", "--grace-seconds", "60"]
    return Replica(world.stack.start("model", args, name=name))


@dataclass
class Restart:
    """A signed-in web client whose Model connection is open to the ``old`` replica.

    :meth:`roll` drains ``old`` while a ``Watch`` (on a channel of the test's
    own) keeps it in its grace period, and starts ``new`` on the same port.
    """

    world: World
    client: AsyncTestClient[Litestar]
    csrf: str
    issue: v1.Issue
    port: int
    old: Replica
    watch_channel: Channel
    new: Replica | None = None
    watch: asyncio.Task[None] | None = None

    async def roll(self) -> Replica:
        stream = v1.ModelStub(self.watch_channel).watch(
            v1.WatchRequest(caller=self.world.caller("bob"), issue_id=self.issue.id)
        )

        async def follow() -> None:
            async for _ in stream:
                pass

        # The Model takes the caller from an assertion: bob's, carried by the
        # task's copy of the context.
        bob = self.world.caller("bob")
        with acting_as(self.world.stack.assertion_for(bob.user_id, groups=bob.groups)):
            self.watch = asyncio.create_task(follow())
        metrics = self.old.metrics_port

        async def watching() -> bool:
            if self.watch is not None and self.watch.done():
                self.watch.result()  # raises what ended it
                raise AssertionError("the Watch ended")
            return await grpc_in_flight(metrics, "Watch") > 0

        await eventually(watching, "the Watch", within=20)
        self.old.process.signal(signal.SIGTERM)
        await eventually(
            lambda: _logged(self.old, "stopped accepting"), "the old replica to drain", within=20
        )
        self.new = await asyncio.to_thread(_start_model, self.world, self.port, "model-new")
        return self.new


@pytest.fixture
async def restart(
    world: World, web_settings: WebSettings, model: v1.ModelStub
) -> AsyncIterator[Restart]:
    old = await asyncio.to_thread(_start_model, world, 0, "model-old")
    port = old.service.port
    address = dataclasses.replace(world.stack.model, port=port)
    app = create_app(dataclasses.replace(web_settings, model=address))
    watch_channel = address.channel()
    rig: Restart | None = None
    try:
        async with AsyncTestClient(app, base_url="http://testserver.local") as client:
            issue = await create_issue(model, world, "Survives a rolling restart")
            csrf = await sign_in(client, "bob")
            first = await client.get(f"/issues/{issue.id}")  # the connection to the old replica
            assert first.status_code == 200, first.text
            # Transfers have a connection of their own (e9f59dcf): open it to the old
            # replica too, as a replica that served attachments before its drain has.
            opened = await client.post(
                f"/issues/{issue.id}/attachments",
                content=b"opens the transfer connection",
                headers={"x-csrf-token": csrf, "x-file-name": "before-the-drain.txt"},
            )
            assert opened.status_code == 201, opened.text
            rig = Restart(world, client, csrf, issue, port, old, watch_channel)
            yield rig
            if rig.new is not None:
                assert not old.process.exited, "the old replica closed too early"
    finally:
        if rig is not None and rig.watch is not None:
            rig.watch.cancel()
            await asyncio.gather(rig.watch, return_exceptions=True)
        watch_channel.close()
        for replica in (old, rig.new if rig else None):
            if replica is not None:
                await asyncio.to_thread(world.stack.stop_service, replica.service)


async def _logged(replica: Replica, text: str) -> bool:
    return text in replica.process.output()


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The web's Model calls meet the drain's DRAINING refusal, not its GOAWAY."""
    without_goaway(monkeypatch)


async def test_a_page_load_during_a_drain_goes_to_the_next_replica_unrefused(
    restart: Restart,
) -> None:
    """The old replica's GOAWAY sent the web's next call down a new connection."""
    new = await restart.roll()
    assert await _logged(restart.old, "graceful GOAWAY")

    page = await restart.client.get(f"/issues/{restart.issue.id}")

    assert page.status_code == 200, page.text
    assert "Survives a rolling restart" in page.text
    assert await grpc_calls(restart.old.metrics_port, "GetIssue", "UNAVAILABLE") == 0
    assert await grpc_calls(new.metrics_port, "GetIssue") == 1


@pytest.mark.usefixtures("refusing")
async def test_a_page_load_refused_by_a_draining_replica_is_served_by_the_next(
    restart: Restart,
) -> None:
    new = await restart.roll()

    page = await restart.client.get(f"/issues/{restart.issue.id}")

    assert page.status_code == 200, page.text
    assert "Survives a rolling restart" in page.text
    assert await grpc_calls(restart.old.metrics_port, "GetIssue", "UNAVAILABLE") == 1
    assert await grpc_calls(new.metrics_port, "GetIssue") == 1


@pytest.mark.usefixtures("refusing")
async def test_a_write_refused_by_a_draining_replica_is_sent_again_and_made_once(
    restart: Restart, world: World, model: v1.ModelStub
) -> None:
    new = await restart.roll()
    name = f"Rolled {restart.port}"

    # Creating a hotlist asks the Authenticator, then writes: the Model's
    # first call after the drain is the write itself.
    created = await restart.client.post(
        "/hotlists", data={"name": name, "_csrf": restart.csrf}, follow_redirects=False
    )

    assert created.status_code == 303, created.text
    assert await grpc_calls(restart.old.metrics_port, "CreateHotlist", "UNAVAILABLE") == 1
    assert await grpc_calls(new.metrics_port, "CreateHotlist") == 1
    bob = world.caller("bob")
    mine = await call(
        model.list_hotlists,
        v1.ListHotlistsRequest(
            caller=bob, member=bob.user_id, page=v1.PageRequest(page_size=MAX_PAGE_SIZE)
        ),
    )
    assert [h.name for h in mine.hotlists if h.name == name] == [name]


async def _attachments_named(model: v1.ModelStub, world: World, issue_id: int, name: str) -> int:
    listed = await call(
        model.list_attachments,
        v1.ListAttachmentsRequest(caller=world.caller("bob"), issue_id=issue_id),
    )
    return sum(1 for attachment in listed.attachments if attachment.name == name)


async def _assert_uploaded_once_by_the_new_replica(
    restart: Restart, new: Replica, world: World, model: v1.ModelStub, name: str
) -> None:
    """The old replica refused the upload once, the new one took it: ``name`` is there once.

    What both upload routes (the raw body and the form) must end with, whatever
    their own answer to the browser.
    """
    assert await grpc_calls(restart.old.metrics_port, "UploadAttachment", "UNAVAILABLE") == 1
    # The old replica's one OK upload is the fixture's, before the drain.
    assert await grpc_calls(restart.old.metrics_port, "UploadAttachment", "OK") == 1
    assert await grpc_calls(new.metrics_port, "UploadAttachment") == 1
    assert await _attachments_named(model, world, restart.issue.id, name) == 1


#: More than one chunk: part of it has gone out when the refusal arrives.
CONTENT = bytes(range(256)) * 4096 * 3  # 3 MiB


@pytest.mark.usefixtures("refusing")
async def test_an_upload_refused_by_a_draining_replica_is_sent_again_and_attached_once(
    restart: Restart, world: World, model: v1.ModelStub
) -> None:
    new = await restart.roll()
    name = f"rolled-{restart.port}.bin"

    uploaded = await restart.client.post(
        f"/issues/{restart.issue.id}/attachments",
        content=CONTENT,
        headers={"x-csrf-token": restart.csrf, "x-file-name": quote(name)},
    )

    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["size"] == len(CONTENT)
    await _assert_uploaded_once_by_the_new_replica(restart, new, world, model, name)


@pytest.mark.usefixtures("refusing")
async def test_a_form_upload_refused_by_a_draining_replica_is_sent_again_and_attached_once(
    restart: Restart, world: World, model: v1.ModelStub
) -> None:
    new = await restart.roll()
    name = f"form-{restart.port}.bin"

    done = await restart.client.post(
        f"/issues/{restart.issue.id}/attachments/form",
        data={"_csrf": restart.csrf},
        files={"file": (name, CONTENT, "application/octet-stream")},
        follow_redirects=False,
    )

    assert done.status_code == 303, done.text
    assert done.headers["location"].endswith(f"/issues/{restart.issue.id}#attachments")
    await _assert_uploaded_once_by_the_new_replica(restart, new, world, model, name)


@pytest.mark.usefixtures("refusing")
async def test_a_download_refused_by_a_draining_replica_is_served_by_the_next(
    restart: Restart,
) -> None:
    """Before its first byte a download is a read like any: refused, it goes to the next replica.

    Before, the refusal was the browser's: a 503 page for a file that the
    next replica served a moment later.
    """
    uploaded = await restart.client.post(
        f"/issues/{restart.issue.id}/attachments",
        content=CONTENT,
        headers={"x-csrf-token": restart.csrf, "x-file-name": "rolled-download.bin"},
    )
    assert uploaded.status_code == 201, uploaded.text
    new = await restart.roll()

    downloaded = await restart.client.get(uploaded.json()["url"])

    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.content == CONTENT
    assert await grpc_calls(restart.old.metrics_port, "DownloadAttachment", "UNAVAILABLE") == 1
    assert await grpc_calls(new.metrics_port, "DownloadAttachment") == 1
