"""``/components/ID/webhooks``: a component's admins manage its webhook endpoints.

Real components: the notifier process (which holds the endpoints and checks
the person through the Model), the web app reaching it over the stack's
mutual TLS, and a real HTTP server receiving the signed POSTs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import World, csrf_of, sign_in

from bugless_core.clients import call
from bugless_dev.stack import RunningService
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink
from bugless_testing.webhooks import WebhookReceiver
from bugless_web import WebSettings, create_app

SECRET = "web-hook-secret-" + secrets.token_hex(16)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP server recording POSTs (and whether each is signed with SECRET)."""
    with WebhookReceiver(SECRET) as server:
        yield server


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
    receiver: WebhookReceiver,
) -> None:
    base = receiver.url
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
        got = await receiver.wait_for(lambda received: len(received) > 0)
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
