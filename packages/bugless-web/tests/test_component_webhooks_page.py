"""``/components/ID/webhooks``: a component's admins manage its webhook endpoints.

Real components: the notifier process (which holds the endpoints and checks
the person through the Model), the web app reaching it over the stack's
mutual TLS, and a real HTTP server receiving the signed POSTs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import World, csrf_of, sign_in

from bugless_core.clients import call
from bugless_dev.stack import RunningService
from bugless_notify.webhook import SIGNATURE_HEADER, verify_signature
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink
from bugless_web import WebSettings, create_app

SECRET = "web-hook-secret-" + secrets.token_hex(16)


@dataclasses.dataclass
class Received:
    path: str
    body: dict[str, object]
    signed: bool


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Received]]]:
    """A real HTTP server recording POSTs (and whether each is signed with SECRET)."""
    got: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            signed = verify_signature(SECRET, body, self.headers.get(SIGNATURE_HEADER))
            got.append(Received(self.path, json.loads(body), signed))
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def notifier(world: World) -> AsyncIterator[RunningService]:
    with SmtpSink() as sink:
        service = await asyncio.to_thread(
            world.stack.start_notify,
            *("--schema", f"notify_{secrets.token_hex(4)}", "--smtp-host", "127.0.0.1"),
            *("--smtp-port", str(sink.port), "--smtp-security", "none"),
            name=f"notify-{secrets.token_hex(3)}",
        )
        try:
            yield service
        finally:
            await asyncio.to_thread(world.stack.stop_service, service)


async def test_component_admins_add_and_disable_webhooks_and_others_may_not(
    world: World,
    model: v1.ModelStub,
    web_settings: WebSettings,
    notifier: RunningService,
    receiver: tuple[str, list[Received]],
) -> None:
    base, got = receiver
    component = await call(
        model.create_component,
        v1.CreateComponentRequest(
            caller=world.admin,
            name=f"Hooked {secrets.token_hex(3)}",
            acl=[
                v1.AclEntry(principal=v1.Principal(user=world.users["carol"]), role=v1.Role.ADMIN),
                v1.AclEntry(principal=v1.Principal(user=world.users["bob"]), role=v1.Role.EDITOR),
            ],
        ),
    )
    settings = dataclasses.replace(
        web_settings, notify=world.stack.client_address("notify", identity="web")
    )
    page_url = f"/components/{component.id}/webhooks"
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as web:
        await sign_in(web, "carol")
        shown = await web.get(f"/components/{component.id}")
        assert page_url in shown.text
        page = await web.get(page_url)
        assert page.status_code == 200, page.text
        assert "No webhooks yet." in page.text
        added = await web.post(
            page_url,
            data={
                "_csrf": csrf_of(page.text),
                "url": f"{base}/hook/path-secret",
                "secret": SECRET,
                "payload_format": "json",
            },
        )
        assert added.status_code == 200, added.text
        assert "Added webhook" in added.text
        assert SECRET not in added.text
        assert "path-secret" not in added.text
        assert f"…{SECRET[-4:]}" in added.text
        short = await web.post(
            page_url, data={"_csrf": csrf_of(page.text), "url": base, "secret": "short"}
        )
        assert short.status_code == 400
        title = f"Hooked issue {secrets.token_hex(3)}"
        await call(
            model.create_issue,
            v1.CreateIssueRequest(
                caller=world.caller("bob"),
                fields=v1.IssueFields(title=title, component_id=component.id),
                idempotency_key=secrets.token_hex(8),
            ),
        )
        deadline = time.monotonic() + 90
        while not got:
            assert time.monotonic() < deadline, "no webhook delivery"
            await asyncio.sleep(0.5)
        assert got[0].path == "/hook/path-secret"
        assert got[0].signed
        issue = got[0].body["issue"]
        assert isinstance(issue, dict)
        assert issue["title"] == title
        name = added.text.split("Added webhook ", 1)[1].split(" ", 1)[0]
        disabled = await web.post(
            f"{page_url}/{name}", data={"_csrf": csrf_of(page.text), "action": "disable"}
        )
        assert disabled.status_code == 200, disabled.text
        assert "disabled" in disabled.text
        assert "disable" in disabled.text.split("History", 1)[1]
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as other:
        await sign_in(other, "bob")
        assert (await other.get(page_url)).status_code == 403
        page = await other.get(f"/components/{component.id}")
        refused = await other.post(
            page_url,
            data={"_csrf": csrf_of(page.text), "url": f"{base}/bob", "secret": SECRET},
        )
        assert refused.status_code == 403
    assert not notifier.process.exited


async def test_without_a_notifier_the_page_says_how_to_configure_one(
    world: World, client: AsyncTestClient[Litestar]
) -> None:
    await sign_in(client, "alice")
    page = await client.get(f"/components/{world.components['Platform']}/webhooks")
    assert page.status_code == 200, page.text
    assert "--notify HOST:PORT" in page.text
    await sign_in(client, "bob")
    refused = await client.get(f"/components/{world.components['Platform']}/webhooks")
    assert refused.status_code == 403
