"""A notifier process killed mid-stream, and two replicas side by side.

Real ``bugless notify serve`` processes on the real Model and Authenticator
(mutual TLS between them), mailing to an aiosmtpd sink: a replacement for a
killed notifier loses no change and repeats a mail only with the same
Message-ID; two healthy replicas mail each change once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from typing import TYPE_CHECKING

from notifier_process_support import People, settle

from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_dev.stack import LocalStack, RunningService
    from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def test_a_killed_notifier_loses_nothing_and_repeats_only_message_ids(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    service, flags = notify_process
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"kill-{secrets.token_hex(4)}")
    )
    issues = [
        await model.create_issue(
            v1.CreateIssueRequest(
                caller=people.caller("alice"),
                fields=v1.IssueFields(
                    title=f"issue {n}", component_id=component.id, assignee=people.ids["bob"]
                ),
            )
        )
        for n in range(20)
    ]
    await smtp_sink.wait_for_async(20, 60)
    smtp_sink.clear()
    versions = {i.id: i.version for i in issues}

    async def comment(issue_id: int, n: int) -> None:
        await model.change_issue(
            v1.ChangeIssueRequest(
                caller=people.caller("alice"),
                issue_id=issue_id,
                expected_version=versions[issue_id],
                comment=f"change {n}",
            )
        )
        versions[issue_id] += 1

    changes = 0
    for round_ in range(10):
        await asyncio.gather(*(comment(i.id, round_) for i in issues))
        changes += len(issues)
        if round_ == 3:
            service.process.kill()
    replacement = bugless_stack.start_notify(*flags, name=f"notify-{secrets.token_hex(3)}")
    try:
        mails = await smtp_sink.wait_for_async(changes, 120)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ids = {m.message["X-Bugless-Delivery"] for m in smtp_sink.mails}
            if len(ids) >= changes:
                break
            await asyncio.sleep(0.5)
        mails = smtp_sink.mails
        by_delivery: dict[str, set[str]] = {}
        for mail in mails:
            by_delivery.setdefault(mail.message["X-Bugless-Delivery"], set()).add(
                mail.message["Message-ID"]
            )
        assert len(by_delivery) == changes, "every change mailed to the assignee"
        assert all(len(ids) == 1 for ids in by_delivery.values()), (
            "a repeated mail carries the same Message-ID"
        )
    finally:
        bugless_stack.stop_service(replacement)


async def test_two_replicas_deliver_each_change_once(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    _, flags = notify_process
    second = bugless_stack.start_notify(*flags, name=f"notify-{secrets.token_hex(3)}")
    try:
        component = await model.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"two-{secrets.token_hex(4)}")
        )
        for n in range(40):
            await model.create_issue(
                v1.CreateIssueRequest(
                    caller=people.caller("alice"),
                    fields=v1.IssueFields(
                        title=f"pair {n}", component_id=component.id, assignee=people.ids["bob"]
                    ),
                )
            )
        mails = await settle(smtp_sink, 40, 90)
        deliveries = Counter(m.message["X-Bugless-Delivery"] for m in mails)
        assert len(deliveries) == 40
        assert set(deliveries.values()) == {1}, "no mail twice while both replicas are healthy"
    finally:
        bugless_stack.stop_service(second)
