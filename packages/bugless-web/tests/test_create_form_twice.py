"""One create form sent twice at once, over real HTTP: one issue, one set of files.

Both submissions carry the form's idempotency key, so the Model makes one
issue and hands it to both at its first version; each file is then attached
against the issue's version, and the submission whose upload the Model
refuses as stale finds the other's file and attaches nothing.
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
from collections.abc import AsyncIterator

import httpx
from web_support import PASSWORD, World, csrf_of

from bugless_core.clients import call
from bugless_dev.stack import RunningService
from bugless_proto import v1

#: How long the test waits for the first submission's issue to exist.
CREATED_WITHIN = 30.0


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
        f"This form was sent twice at once: issue {issue_id} was created once, and the other "
        "sending attached the files." in page
    )
