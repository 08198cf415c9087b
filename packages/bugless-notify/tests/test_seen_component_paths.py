"""A notification names a component by the path its recipient sees (real processes).

A component's own entries can open it to someone below a parent they may not
view; the Model gives them its path as ``…>Net`` (never the parent's name),
and so must every mail, digest and webhook payload about an issue in it. The
Model, the Authenticator and ``bugless notify serve`` run as processes; mail
goes to an aiosmtpd sink and webhooks to a real HTTP receiver.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

import pytest
from notify_support import SECRET, WebhookReceiver

from bugless_core.clients import ActingFor, acting_as, call
from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1
from bugless_testing.smtp import ReceivedMail, SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


@pytest.fixture
async def notifier(bugless_stack: LocalStack, smtp_sink: SmtpSink) -> AsyncIterator[RunningService]:
    """A notifier sending digests every 3 seconds."""
    service = await asyncio.to_thread(
        bugless_stack.start_notify,
        *("--schema", f"notify_{secrets.token_hex(4)}", "--smtp-host", "127.0.0.1"),
        *("--smtp-port", str(smtp_sink.port), "--smtp-security", "none"),
        *("--public-url", "https://bugs.example.test", "--digest-interval-seconds", "3"),
        name=f"notify-{secrets.token_hex(3)}",
    )
    try:
        yield service
    finally:
        await asyncio.to_thread(bugless_stack.stop_service, service)


def _shown(mail: ReceivedMail) -> str:
    """A mail's plain-text and HTML bodies, decoded."""
    parts = [mail.message.get_body((kind,)) for kind in ("plain", "html")]
    text = "\n".join(part.get_content() for part in parts if part is not None)
    return text.replace("\r\n", "\n")


async def _mail_to(sink: SmtpSink, address: str) -> ReceivedMail:
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        found = [m for m in sink.mails if address in m.recipients]
        if found:
            return found[0]
        assert asyncio.get_running_loop().time() < deadline, address
        await asyncio.sleep(0.5)


async def test_mails_digests_and_webhooks_name_no_component_the_recipient_may_not_view(
    *,
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    web_to_notifier: v1.NotifierStub,
    as_person: ActingFor,
    receiver: WebhookReceiver,
    smtp_sink: SmtpSink,
) -> None:
    """``…>Net`` to bob, dora (her digest) and dana's endpoint; alice reads ``Secret>Net``.

    Net's own entries open it to bob (subscribed to it), dora (CC'd, a daily
    digest) and dana (its admin, who added a webhook); Secret above it is
    alice's alone. alice subscribed to Secret with its subtree and added an
    endpoint too: she may view both, so hers say the whole path.
    """
    tag = secrets.token_hex(3)
    ids = {}
    for name in ("alice", "bob", "dora", "dana"):
        created = await asyncio.to_thread(
            bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3, email=f"{name}{tag}@ex.test"
        )
        ids[name] = created["user_id"]

    def entry(name: str, role: v1.Role) -> v1.AclEntry:
        return v1.AclEntry(principal=v1.Principal(user=ids[name]), role=role)

    secret = await model.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN, name=f"secret-{tag}", acl=[entry("alice", v1.Role.ADMIN)]
        )
    )
    net = await model.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN,
            parent_id=secret.id,
            name=f"net-{tag}",
            acl=[
                entry("bob", v1.Role.EDITOR),
                entry("dora", v1.Role.VIEWER),
                entry("dana", v1.Role.ADMIN),
            ],
        )
    )
    whole, seen = f"secret-{tag}>net-{tag}", f"…>net-{tag}"
    assert net.path == whole
    for name, component, subtree in (("alice", secret, True), ("bob", net, False)):
        await model.set_component_subscription(
            v1.SetComponentSubscriptionRequest(
                caller=v1.Caller(user_id=ids[name]),
                component_id=component.id,
                subscribed=True,
                include_subtree=subtree,
            )
        )
    await model.update_notification_settings(
        v1.UpdateNotificationSettingsRequest(
            caller=v1.Caller(user_id=ids["dora"]),
            settings=v1.NotificationSettings(channel="email", digest=v1.DigestMode.DAILY),
        )
    )
    for name in ("alice", "dana"):
        with acting_as(await as_person.assertion(ids[name])):
            await call(
                web_to_notifier.add_component_webhook,
                v1.AddComponentWebhookRequest(
                    component_id=net.id, url=receiver.url(f"/{name}"), secret=SECRET
                ),
            )
    await model.create_issue(
        v1.CreateIssueRequest(
            caller=v1.Caller(user_id=ids["dana"]),
            fields=v1.IssueFields(title=f"Routing loop {tag}", component_id=net.id),
            cc=[ids["dora"]],
            idempotency_key=secrets.token_hex(8),
        )
    )

    bob = _shown(await _mail_to(smtp_sink, f"bob{tag}@ex.test"))
    assert f"Component: {seen}\n" in bob
    assert f"you subscribed to its component, {seen}." in bob
    assert f"secret-{tag}" not in bob
    digest = _shown(await _mail_to(smtp_sink, f"dora{tag}@ex.test"))
    assert f"Component: {seen}\n" in digest
    assert f"secret-{tag}" not in digest
    alice = _shown(await _mail_to(smtp_sink, f"alice{tag}@ex.test"))
    assert f"Component: {whole}\n" in alice
    assert f"you subscribed to secret-{tag} (this issue is in {whole})." in alice

    for name, path in (("dana", seen), ("alice", whole)):
        got = await asyncio.to_thread(receiver.wait_for, f"/{name}", 1, 90.0)
        body = json.loads(got[0].body)
        assert body["issue"]["component"] == {"id": net.id, "path": path}, name
        changed = {c["field"]: c for c in body["entry"]["changes"]}
        assert changed["component_id"]["new"]["path"] == path, changed["component_id"]
    assert f"secret-{tag}" not in receiver.received("/dana")[0].body.decode()
