"""A change its recipient can see nothing of is no mail to them.

The notifier runs in this process on the stack's real Model and
Authenticator, a real PostgreSQL and an SMTP sink. A hotlist another person
keeps private is hidden from everyone else on the issue: its addition used
to reach them as "gina commented on b/N" over nothing (the walk's bob, who
had starred the issue, got one when alice filed it on her private
"Reorg candidates").
"""

from __future__ import annotations

import asyncio
import secrets

from notify_support import stack_notifier_settings, until
from prometheus_client import CollectorRegistry

from bugless_dev.stack import LocalStack
from bugless_notify.service import start_notifier
from bugless_proto import v1
from bugless_testing.smtp import ReceivedMail, SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def test_a_private_hotlist_of_someone_else_mails_nobody_and_a_shared_one_is_named(
    bugless_stack: LocalStack, model: v1.ModelStub, notify_database: str, smtp_sink: SmtpSink
) -> None:
    tag = secrets.token_hex(3)
    ids = {}
    for name in ("ivan", "gina", "bert"):
        created = await asyncio.to_thread(
            bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3, email=f"{name}{tag}@ex.test"
        )
        ids[name] = str(created["user_id"])
    gina = v1.Caller(user_id=ids["gina"])
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"hidden-{tag}")
    )
    settings = stack_notifier_settings(
        bugless_stack,
        database_url=notify_database,
        schema=f"notify_hidden_{tag}",
        smtp_port=smtp_sink.port,
    )
    notifier = await start_notifier(settings, metrics_registry=CollectorRegistry())
    to_ivan = f"ivan{tag}@ex.test"

    def ivans() -> list[str]:
        return [
            str(m.message["Subject"]) + "\n" + _text(m)
            for m in smtp_sink.mails
            if to_ivan in m.recipients
        ]

    try:
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=v1.Caller(user_id=ids["bert"]),
                fields=v1.IssueFields(title=f"Hidden {tag}", component_id=component.id),
                cc=[ids["ivan"]],
                idempotency_key=secrets.token_hex(8),
            )
        )
        private = await model.create_hotlist(
            v1.CreateHotlistRequest(caller=gina, name=f"Reorg {tag}", private=True)
        )
        shared = await model.create_hotlist(
            v1.CreateHotlistRequest(caller=gina, name=f"Launch {tag}")
        )
        for hotlist in (private, shared):
            await model.add_hotlist_items(
                v1.AddHotlistItemsRequest(caller=gina, hotlist_id=hotlist.id, issue_ids=[issue.id])
            )
        # The shared hotlist's entry comes after the private one's: once its
        # mail is here, the private one's was decided.
        await until(lambda: len(ivans()) >= 2, "ivan's mail about the shared hotlist")
        await asyncio.sleep(1.0)  # anything sent after the shared one would show now

        mails = ivans()
        assert len(mails) == 2, mails
        # Two batches are mailed by concurrent workers: arrival order is not
        # promised (ci85 had the hotlist's mail first), so pick each by its text.
        creation, named = sorted(mails, key=lambda text: "created b/" not in text)
        assert f"created b/{issue.id}" in creation, creation
        assert f"Hotlists: + Launch {tag}" in named, named
        assert f"Reorg {tag}" not in "".join(mails)
        assert "commented on" not in "".join(mails), mails
    finally:
        await notifier.close()


def _text(mail: ReceivedMail) -> str:
    body = mail.message.get_body(preferencelist=("plain",))
    return "" if body is None else str(body.get_content())
