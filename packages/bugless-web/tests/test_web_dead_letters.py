"""``/admin/notifications``: failed deliveries on the admin page, retried or discarded.

Real components: the notifier (``bugless notify serve``) mailing to an
aiosmtpd sink that refuses one mailbox (550), a webhook endpoint whose URL
answers 404 from a real HTTP server, and the web app reaching the notifier's
status service over the stack's mutual TLS. A change to an issue mails its
assignee (refused) and its CC (delivered: a refused mailbox blocks nobody
else); the admin page shows both dead letters with their reasons; retry
sends the mail once the mailbox exists, discard removes the webhook's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import World, create_issue, csrf_of, sign_in

from bugless_core.clients import call
from bugless_core.notification_channel import NotificationMessage
from bugless_dev.stack import RunningService
from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.queue import DeliveryQueue, NewDelivery
from bugless_notify.webhook import WebhookEndpoint
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink
from bugless_web import WebSettings, create_app

REFUSED = "carol@example.com"


@pytest.fixture
def not_found_server() -> Iterator[str]:
    """A real HTTP server answering every POST with 404; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/gone"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def refusing_sink() -> Iterator[SmtpSink]:
    """An SMTP sink refusing carol's mailbox."""
    with SmtpSink(refusals={REFUSED: "550 5.1.1 carol: no such mailbox"}) as sink:
        yield sink


@pytest.fixture
async def notifier(
    world: World, refusing_sink: SmtpSink
) -> AsyncIterator[tuple[RunningService, str, SmtpSink]]:
    """A notifier on a schema of its own; yields it, the schema and its sink."""
    schema = f"notify_{secrets.token_hex(4)}"
    service = await asyncio.to_thread(
        world.stack.start_notify,
        *("--schema", schema, "--smtp-host", "127.0.0.1", "--smtp-port"),
        *(str(refusing_sink.port), "--smtp-security", "none"),
        name=f"notify-{secrets.token_hex(3)}",
    )
    try:
        yield service, schema, refusing_sink
    finally:
        await asyncio.to_thread(world.stack.stop_service, service)


async def _page_until(client: AsyncTestClient[Litestar], *texts: str) -> str:
    deadline = time.monotonic() + 90
    while True:
        page = await client.get("/admin/notifications")
        assert page.status_code == 200, page.text
        if all(t in page.text for t in texts):
            return page.text
        assert time.monotonic() < deadline, f"never all of {texts} on the page:\n{page.text}"
        await asyncio.sleep(0.5)


async def test_dead_letters_are_listed_retried_and_discarded(
    world: World,
    model: v1.ModelStub,
    web_settings: WebSettings,
    notifier: tuple[RunningService, str, SmtpSink],
    not_found_server: str,
) -> None:
    stack = world.stack
    service, schema, refusing_sink = notifier
    # A webhook whose URL is gone, queued in the notifier's own tables.
    pool = await asyncpg.create_pool(stack.model_database_url, min_size=1, max_size=1)
    try:
        conn = await pool.acquire()
        await WebhookEndpointStore(pool, schema).put(
            conn, WebhookEndpoint(name="gone", url=not_found_server, secret="s" * 40)
        )
        hook_id = f"test-{secrets.token_hex(4)}/webhook/gone"
        await DeliveryQueue(schema).enqueue(
            conn,
            [
                NewDelivery(
                    delivery_id=hook_id,
                    channel="webhook",
                    recipient="gone",
                    recipient_name="gone",
                    message=NotificationMessage(
                        thread_id="issue-1", subject="Webhook to a gone URL", text="", html=""
                    ),
                )
            ],
        )
        await pool.release(conn)
    finally:
        await pool.close()
    # A change mailing carol (refused) and alice (delivered).
    title = f"Dead letter {secrets.token_hex(4)}"
    await create_issue(model, world, title, assignee=world.users["carol"])
    await call(
        model.create_issue,
        v1.CreateIssueRequest(
            caller=world.caller("bob"),
            fields=v1.IssueFields(
                title=f"{title} cc",
                component_id=world.components["Platform"],
                assignee=world.users["carol"],
            ),
            cc=[world.users["alice"]],
            idempotency_key=secrets.token_hex(8),
        ),
    )
    settings = dataclasses.replace(
        web_settings, notify=stack.client_address("notify", identity="web")
    )
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as web:
        await sign_in(web, "alice")
        page = await _page_until(web, "HTTP 404", "550", title)
        assert "Failed notifications" in page
        # The refused mailbox and the gone URL blocked nobody: alice got hers.
        await refusing_sink.wait_for_async(1, 60)
        assert any("alice@example.com" in m.recipients for m in refusing_sink.mails)
        assert not any(REFUSED in m.recipients for m in refusing_sink.mails)
        assert not_found_server not in page, "a webhook URL is never shown"
        # A screen reader names each box by what it selects, not by an opaque id.
        assert 'aria-label="Select the webhook to gone: Webhook to a gone URL"' in page
        # Retry carol's mails once her mailbox exists.
        refusing_sink.refusals.clear()
        dead = await _dead_ids(web)
        mails = [i for i in dead if i.endswith(f"/email/{world.users['carol']}")]
        assert len(mails) == 2, dead
        token = csrf_of(page)
        done = await web.post(
            "/admin/notifications/dead-letters",
            data={"_csrf": token, "action": "retry", "id": mails},
        )
        assert done.status_code == 200, done.text
        assert "Queued again: 2 of 2." in done.text
        await refusing_sink.wait_for_async(3, 60)
        assert sum(REFUSED in m.recipients for m in refusing_sink.mails) == 2
        # Discard the webhook's.
        done = await web.post(
            "/admin/notifications/dead-letters",
            data={"_csrf": token, "action": "discard", "id": [hook_id]},
        )
        assert "Discarded: 1 of 1." in done.text
        assert hook_id not in done.text
        # A made-up action is refused, nothing changes.
        bad = await web.post(
            "/admin/notifications/dead-letters",
            data={"_csrf": token, "action": "explode", "id": [hook_id]},
        )
        assert bad.status_code == 400
    async with AsyncTestClient(create_app(settings), base_url="http://testserver.local") as other:
        await sign_in(other, "bob")
        assert (await other.get("/admin/notifications")).status_code == 403
    assert not service.process.exited


async def _dead_ids(web: AsyncTestClient[Litestar]) -> list[str]:
    page = await web.get("/admin/notifications")
    return re.findall(r'name="id" value="([^"]+)"', page.text)


async def test_without_a_notifier_the_page_says_how_to_configure_one(
    client: AsyncTestClient[Litestar],
) -> None:
    await sign_in(client, "alice")
    page = await client.get("/admin/notifications")
    assert page.status_code == 200
    assert "--notify HOST:PORT" in page.text
