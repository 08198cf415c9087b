"""``/dev/mail``: the dev SMTP sink's mails on a page, and nowhere outside dev mode.

The end-to-end test runs what ``bugless dev`` runs: the real notifier
(``bugless notify serve`` through the stack library) mailing to
:class:`bugless_dev.mailsink.MailSink` (aiosmtpd on loopback, writing a
directory), and a web app given that directory as ``--dev-mailbox``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from web_support import SESSION_KEY, World, create_issue, sign_in

from bugless_dev.mailsink import MailSink
from bugless_proto import v1
from bugless_web import WebSettings, create_app


async def test_the_page_does_not_exist_without_a_mailbox(
    client: AsyncTestClient[Litestar],
) -> None:
    await sign_in(client, "alice")
    assert (await client.get("/dev/mail")).status_code == 404
    assert (await client.get("/dev/mail/00000000000000000001-000001.eml")).status_code == 404


def test_a_mailbox_needs_dev_mode(world: World, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--dev-mailbox is for development only"):
        WebSettings(
            model=world.stack.model,
            auth=world.stack.auth,
            session_keys=(SESSION_KEY,),
            dev=False,
            dev_mailbox=tmp_path,
        )


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[MailSink]:
    """The dev SMTP sink on this test's loop, writing under ``tmp_path``."""
    mail_sink = MailSink(tmp_path / "mail")
    await mail_sink.start()
    try:
        yield mail_sink
    finally:
        await mail_sink.stop()


async def test_a_change_produces_a_mail_on_the_dev_page(
    world: World, model: v1.ModelStub, sink: MailSink, web_settings: WebSettings
) -> None:
    stack = world.stack
    notifier = await asyncio.to_thread(
        stack.start_notify,
        *("--schema", f"notify_{secrets.token_hex(4)}", "--smtp-host", "127.0.0.1"),
        *("--smtp-port", str(sink.port), "--smtp-security", "none"),
        *("--public-url", "http://127.0.0.1:8080"),
        name=f"notify-{secrets.token_hex(3)}",
    )
    try:
        title = f"Dev mail {secrets.token_hex(4)}"
        # bob files it for alice: alice (alice@example.com) is mailed.
        issue = await create_issue(model, world, title, assignee=world.users["alice"])
        app = create_app(_with_mailbox(web_settings, sink.directory))
        async with AsyncTestClient(app, base_url="http://testserver.local") as client:
            await sign_in(client, "alice")
            deadline = time.monotonic() + 90
            while True:
                page = await client.get("/dev/mail")
                assert page.status_code == 200, page.text
                if title in page.text:
                    break
                assert time.monotonic() < deadline, "no mail reached the dev page"
                await asyncio.sleep(0.5)
            assert "alice@example.com" in page.text
            names = sorted(p.name for p in sink.directory.glob("*.eml"))
            one = await client.get(f"/dev/mail/{names[-1]}")
            assert one.status_code == 200
            assert title in one.text
            assert f"http://127.0.0.1:8080/issues/{issue.id}" in one.text
            assert (await client.get("/dev/mail/..%2Fsecrets")).status_code == 404
        # Everyone's mail: not for people who are not admins.
        async with AsyncTestClient(
            create_app(_with_mailbox(web_settings, sink.directory)),
            base_url="http://testserver.local",
        ) as other:
            await sign_in(other, "bob")
            assert (await other.get("/dev/mail")).status_code == 403
    finally:
        await asyncio.to_thread(stack.stop_service, notifier)


def _with_mailbox(settings: WebSettings, mailbox: Path) -> WebSettings:
    return dataclasses.replace(settings, dev_mailbox=mailbox)
