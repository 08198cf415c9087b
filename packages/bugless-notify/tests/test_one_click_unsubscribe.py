"""A mail carries its recipient's one-click unsubscribe link for its issue (RFC 8058).

The Model, the Authenticator and ``bugless notify serve`` run as processes;
the mail arrives at a real SMTP sink, and the link's token is checked with
the Authenticator the way the web redeems it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from notify_support import until

from bugless_core.clients import call
from bugless_dev.processes import spawn
from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)
PUBLIC_URL = "https://bugs.example.test"
#: ``bugless auth serve`` as the release before one-click unsubscribe links.
PREVIOUS = Path(__file__).with_name("authenticator_before_unsubscribe.py")


@pytest.fixture
async def notifier(bugless_stack: LocalStack, smtp_sink: SmtpSink) -> AsyncIterator[RunningService]:
    service = await asyncio.to_thread(
        bugless_stack.start_notify,
        *("--schema", f"notify_{secrets.token_hex(4)}", "--smtp-host", "127.0.0.1"),
        *("--smtp-port", str(smtp_sink.port), "--smtp-security", "none"),
        *("--public-url", PUBLIC_URL),
        name=f"notify-{secrets.token_hex(3)}",
    )
    try:
        yield service
    finally:
        await asyncio.to_thread(bugless_stack.stop_service, service)


async def test_a_mail_names_a_one_click_link_that_grants_its_recipient_and_issue_only(
    bugless_stack: LocalStack, model: v1.ModelStub, notifier: RunningService, smtp_sink: SmtpSink
) -> None:
    """The header, the Post header and the footer carry one link; it mutes that issue for bob.

    Before, ``List-Unsubscribe`` named the settings page and a client's
    "unsubscribe" could not stop anything by itself.
    """
    tag = secrets.token_hex(3)
    bob = await asyncio.to_thread(
        bugless_stack.add_user, f"bob{tag}", "pw-" + tag * 3, email=f"bob{tag}@example.test"
    )
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"one-click-{tag}")
    )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(
                title=f"Loud {tag}", component_id=component.id, assignee=bob["user_id"]
            ),
            idempotency_key=secrets.token_hex(8),
        )
    )
    address = f"bob{tag}@example.test"
    await until(
        lambda: any(address in m.recipients for m in smtp_sink.mails), "bob's mail to arrive"
    )
    message = next(m for m in smtp_sink.mails if address in m.recipients).message
    header = message["List-Unsubscribe"].strip()  # folded onto its own line: a long token
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    found = re.fullmatch(rf"<{re.escape(PUBLIC_URL)}/unsubscribe/([A-Za-z0-9_.-]+)>", header)
    assert found is not None, header
    link = header[1:-1]
    for part in ("plain", "html"):
        body = message.get_body(preferencelist=(part,))
        assert body is not None
        assert link in body.get_content(), part

    channel = bugless_stack.client_address("auth", identity="web").channel()
    try:
        grant = await call(
            v1.AuthenticatorStub(channel).redeem_unsubscribe_token,
            v1.RedeemUnsubscribeTokenRequest(token=found.group(1), check_only=True),
        )
    finally:
        channel.close()
    assert (grant.user_id, grant.issue_id) == (bob["user_id"], issue.id)


async def test_an_authenticator_before_one_click_links_leaves_the_settings_link_not_a_stall(
    bugless_stack: LocalStack, model: v1.ModelStub, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    """Upgraded out of docs/upgrades.md's order, the notifier still mails, naming the settings page.

    Before, each batch that mailed someone failed on the missing
    ``IssueUnsubscribeTokens`` and was retried: no mail went out until the
    Authenticator was upgraded.
    """
    ready = tmp_path / "previous-auth.json"
    process = spawn(
        "auth-previous",
        [sys.executable, str(PREVIOUS), "auth", "serve", "--port", "0", "--ready-file", str(ready)],
        bugless_stack.env,
        tmp_path / "previous-auth.log",
        ready_file=ready,
    )
    previous = bugless_stack.wait_started("auth", process)
    notifier: RunningService | None = None
    try:
        notifier = await asyncio.to_thread(
            bugless_stack.start_notify,
            *("--schema", f"notify_{secrets.token_hex(4)}", "--smtp-host", "127.0.0.1"),
            *("--smtp-port", str(smtp_sink.port), "--smtp-security", "none"),
            *("--public-url", PUBLIC_URL, "--auth", f"127.0.0.1:{previous.port}"),
            name=f"notify-{secrets.token_hex(3)}",
        )
        tag = secrets.token_hex(3)
        bob = await asyncio.to_thread(
            bugless_stack.add_user, f"bob{tag}", "pw-" + tag * 3, email=f"bob{tag}@example.test"
        )
        component = await model.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"one-click-old-{tag}")
        )
        await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(
                    title=f"Loud {tag}", component_id=component.id, assignee=bob["user_id"]
                ),
                idempotency_key=secrets.token_hex(8),
            )
        )
        address = f"bob{tag}@example.test"
        await until(
            lambda: any(address in m.recipients for m in smtp_sink.mails), "bob's mail to arrive"
        )
        message = next(m for m in smtp_sink.mails if address in m.recipients).message
        assert message["List-Unsubscribe"].strip() == f"<{PUBLIC_URL}/settings/notifications>"
        assert "List-Unsubscribe-Post" not in message
        plain = message.get_body(preferencelist=("plain",))
        assert plain is not None
        assert "/unsubscribe/" not in plain.get_content()
    finally:
        if notifier is not None:
            await asyncio.to_thread(bugless_stack.stop_service, notifier)
        await asyncio.to_thread(bugless_stack.stop_service, previous)
