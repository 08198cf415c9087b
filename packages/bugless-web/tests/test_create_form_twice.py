"""One create form sent twice at once, over real HTTP: one issue, one set of files.

Both submissions carry the form's idempotency key, so the Model makes one
issue and hands it to both at its first version; each file is then attached
against the issue's version, and the submission whose upload the Model
refuses as stale finds the other's copy of it, then sends only the files
the other has not attached: each file once, even when the other stops
half-way (a browser gives up on its first request when the form is sent
again).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from web_support import PASSWORD, World, csrf_of, grpc_in_flight

from bugless_core.clients import call
from bugless_dev.stack import RunningService
from bugless_proto import v1

#: How long the test waits for the first submission's issue to exist.
CREATED_WITHIN = 30.0


@pytest.fixture(scope="module")
def own_model(world: World) -> Iterator[RunningService]:
    """A Model replica of this module's own: its ``/metrics`` show the uploads open on it."""
    args = ["model", "serve", "--port", "0", "--metrics-port", "0"]
    replica = world.stack.start("model", args, name="model-create-twice")
    try:
        yield replica
    finally:
        world.stack.stop_service(replica)


@pytest.fixture(scope="module")
def web_on_own_model(world: World, own_model: RunningService) -> Iterator[RunningService]:
    """A real ``bugless web serve`` on :func:`own_model`."""
    server = world.stack.start_web(
        "--model",
        f"127.0.0.1:{own_model.port}",
        env={"BUGLESS_WEB_DRAIN_SECONDS": "0.2"},
    )
    try:
        yield server
    finally:
        world.stack.stop_service(server)


def _field(boundary: str, name: str, value: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def _file_head(boundary: str, filename: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="attachments"; '
        f'filename="{filename}"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode()


async def _signed_in(client: httpx.AsyncClient, username: str) -> str:
    page = await client.get("/signin")
    response = await client.post(
        "/signin",
        data={"username": username, "password": PASSWORD, "_csrf": csrf_of(page.text), "next": "/"},
    )
    assert response.status_code == 303, response.text
    return csrf_of((await client.get("/")).text)


async def _created(client: httpx.AsyncClient, title: str) -> int:
    """The id of the issue titled ``title``, once search finds it."""
    link = re.compile(rf'href="/issues/(\d+)"[^>]*>{re.escape(title)}</a>')
    async with asyncio.timeout(CREATED_WITHIN):
        while True:
            found = link.search((await client.get("/search", params={"q": f'"{title}"'})).text)
            if found:
                return int(found.group(1))
            await asyncio.sleep(0.05)


async def test_a_create_form_sent_twice_at_once_makes_one_issue_with_its_files_once(
    web_server: RunningService, world: World, model: v1.ModelStub
) -> None:
    """The second gets the issue page, and the file is attached once, not once per submission.

    The first submission's body stops inside its file, after the issue was
    created (search finds it) and while its upload to the Model is open at
    the issue's first version; the second is sent whole meanwhile and
    attaches its file; then the first's file ends. Before, both attached:
    two copies of the file.
    """
    title = f"Sent twice at once {secrets.token_hex(4)}"
    content = b"the engine log\n" * 64
    async with httpx.AsyncClient(base_url=str(web_server.url), timeout=60) as client:
        token = await _signed_in(client, "bob")
        form = {
            "_csrf": token,
            "idempotency_key": secrets.token_hex(8),
            "component_id": str(world.components["Platform"]),
            "title": title,
            "priority": "P2",
            "severity": "S2",
            "type": "BUG",
        }
        boundary = f"bugless{secrets.token_hex(8)}"
        head = b"".join(_field(boundary, n, v) for n, v in form.items())
        head += _file_head(boundary, "engine.log") + content[:100]
        tail = content[100:] + f"\r\n--{boundary}--\r\n".encode()
        release = asyncio.Event()

        async def held() -> AsyncIterator[bytes]:
            yield head
            await release.wait()
            yield tail

        first = asyncio.create_task(
            client.post(
                "/issues/new/with-files",
                content=held(),
                headers={
                    "content-type": f"multipart/form-data; boundary={boundary}",
                    "content-length": str(len(head) + len(tail)),
                },
            )
        )
        try:
            issue_id = await _created(client, title)
            second = await client.post(
                "/issues/new/with-files",
                data=form,
                files={"attachments": ("engine.log", content, "text/plain")},
            )
            assert second.status_code == 303, second.text
            assert second.headers["location"] == f"/issues/{issue_id}"
            second_page = (await client.get(second.headers["location"])).text
            assert f"Created issue {issue_id} with 1 file attached." in second_page
        finally:
            release.set()
            answer = await first
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"/issues/{issue_id}"
        page = html.unescape((await client.get(answer.headers["location"])).text)
    listed = await call(
        model.list_attachments,
        v1.ListAttachmentsRequest(caller=world.caller("bob"), issue_id=issue_id),
    )
    assert [(a.name, a.size) for a in listed.attachments] == [("engine.log", len(content))]
    assert (
        f"This form was sent twice at once: issue {issue_id} was created once, and each file "
        "attached once (1 by the other sending)." in page
    )
    assert f"Created issue {issue_id} with 1 file attached." in page
    assert "Not attached" not in page


def _form(token: str, world: World, title: str) -> dict[str, str]:
    return {
        "_csrf": token,
        "idempotency_key": secrets.token_hex(8),
        "component_id": str(world.components["Platform"]),
        "title": title,
        "priority": "P2",
        "severity": "S2",
        "type": "BUG",
    }


async def _uploads_reach(metrics_port: int, count: int) -> None:
    async with asyncio.timeout(CREATED_WITHIN):
        while True:
            if await grpc_in_flight(metrics_port, "UploadAttachment") == count:
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "first_file",
    [
        ("a.log", "a.log"),
        # A macOS screenshot's name: the Model stores its narrow no-break
        # space as a space, so the file is looked for by the stored name.
        ("Shot 10.00\u202fAM.log", "Shot 10.00 AM.log"),
    ],
)
async def test_a_sending_that_stops_half_way_leaves_its_other_files_to_the_other_sending(
    web_on_own_model: RunningService,
    own_model: RunningService,
    world: World,
    model: v1.ModelStub,
    first_file: tuple[str, str],
) -> None:
    """Both files attached once when the sending that attached the first one goes away.

    The form (a.log, b.log) is sent twice at once: both sendings get the
    issue at its first version and open a.log's upload against it. The
    first sends a.log whole (attached), then goes away inside b.log, as a
    browser abandons its first request when the form is sent again. The
    second's a.log is then refused as stale: it finds the first's copy and
    goes on to attach b.log. Before, it stopped there, its page saying the
    other sending had attached the files, and b.log was never attached.
    A first file whose name the Model tidies was not found by the name sent
    and was reported "Not attached", though the first sending had attached it.
    """
    first_name, first_stored = first_file  # as sent, as the Model stores it
    title = f"Sent twice, one gone {secrets.token_hex(4)}"
    a_log, b_log = b"first file\n" * 64, b"second file\n" * 64
    metrics = own_model.metrics_port
    assert metrics is not None
    async with httpx.AsyncClient(base_url=str(web_on_own_model.url), timeout=60) as client:
        form = _form(await _signed_in(client, "bob"), world, title)
        boundary = f"bugless{secrets.token_hex(8)}"
        fields = b"".join(_field(boundary, n, v) for n, v in form.items())
        headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
        inside_a = fields + _file_head(boundary, first_name) + a_log[:100]
        first_rest = a_log[100:] + b"\r\n" + _file_head(boundary, "b.log") + b_log[:100]
        second_rest = (
            a_log[100:]
            + b"\r\n"
            + _file_head(boundary, "b.log")
            + b_log
            + f"\r\n--{boundary}--\r\n".encode()
        )
        first_go, second_go = asyncio.Event(), asyncio.Event()

        async def first_body() -> AsyncIterator[bytes]:
            yield inside_a
            await first_go.wait()
            yield first_rest
            await asyncio.Event().wait()  # goes away inside b.log: cancelled

        async def second_body() -> AsyncIterator[bytes]:
            yield inside_a
            await second_go.wait()
            yield second_rest

        first = asyncio.create_task(
            client.post("/issues/new/with-files", content=first_body(), headers=headers)
        )
        second = asyncio.create_task(
            client.post("/issues/new/with-files", content=second_body(), headers=headers)
        )
        try:
            await _uploads_reach(metrics, 2)  # both made a.log's upload at the first version
            first_go.set()
            issue_id = await _created(client, title)
            async with asyncio.timeout(CREATED_WITHIN):  # the first attached a.log
                while True:
                    if await _names(model, world, issue_id):
                        break
                    await asyncio.sleep(0.05)
        finally:
            first.cancel()
            second_go.set()
            with contextlib.suppress(asyncio.CancelledError):
                await first
        answer = await second
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"/issues/{issue_id}"
        page = html.unescape((await client.get(answer.headers["location"])).text)
    assert sorted(await _names(model, world, issue_id)) == [
        (first_stored, len(a_log)),
        ("b.log", len(b_log)),
    ]
    assert f"Created issue {issue_id} with 2 files attached." in page
    assert "each file attached once (1 by the other sending)" in page
    assert "Not attached" not in page


async def _names(model: v1.ModelStub, world: World, issue_id: int) -> list[tuple[str, int]]:
    listed = await call(
        model.list_attachments,
        v1.ListAttachmentsRequest(caller=world.caller("bob"), issue_id=issue_id),
    )
    return [(a.name, a.size) for a in listed.attachments]
