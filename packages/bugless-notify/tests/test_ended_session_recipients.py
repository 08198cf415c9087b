"""A recipient whose sessions an operator ended is mailed at once, not after their held assertion.

The notifier holds each recipient's assertion (``IssueAssertion``, a session
of its own) until shortly before it expires, 5 minutes. ``bugless auth user
sessions NAME --end-all`` (or ``disable``) ends that session too, and the
Model then refuses the whole ``GetNotificationViews`` naming the assertion;
sent again as it was, every try failed and the mail of that issue, and of
every issue after it, waited until the held assertion ran out. Real
processes: the Model, the Authenticator, ``bugless notify serve`` and the
CLI; an SMTP sink.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from notifier_process_support import People, addr, recipients, settle

from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink

#: The Model's refresh of ended sessions (``--assertion-refresh-seconds``), and a little more.
MODEL_LEARNS_SECONDS = 7.0


async def test_a_recipient_whose_sessions_were_ended_is_mailed_at_once(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    people: People,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    tag, ids = people.ids["_tag"], people.ids
    component = await model.create_component(
        v1.CreateComponentRequest(caller=v1.Caller(user_id="test-admin", admin=True), name=tag)
    )
    alice = people.caller("alice")
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=alice,
            fields=v1.IssueFields(
                title="Flaky DNS", component_id=component.id, assignee=ids["dave"]
            ),
            cc=[ids["frank"]],
        )
    )
    created = await settle(smtp_sink, 2)  # the notifier holds dave's assertion now
    assert recipients(created) == Counter(addr(people, n) for n in ("dave", "frank"))
    smtp_sink.clear()

    ended = await asyncio.to_thread(
        bugless_stack.run_bugless, "auth", "user", "sessions", f"dave{tag}", "--end-all", "--json"
    )
    assert json.loads(ended.stdout)["sessions_ended"] >= 1  # the notifier's for dave among them
    await asyncio.sleep(MODEL_LEARNS_SECONDS)
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=alice, issue_id=issue.id, expected_version=issue.version, comment="Any news?"
        )
    )
    # Well before the held assertion would have run out (about 4.5 minutes on).
    commented = await settle(smtp_sink, 2, seconds=60.0)
    assert recipients(commented) == Counter(addr(people, n) for n in ("dave", "frank"))
