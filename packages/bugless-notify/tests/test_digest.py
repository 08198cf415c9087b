"""Daily digests through ``bugless notify serve`` (real processes, an aiosmtpd sink).

The notifier runs with ``--digest-interval-seconds`` (the entry point that
replaces "once a day at --digest-hour-utc" for tests) so a digest goes out
within seconds. A person who chose the daily digest gets one mail listing
the changes, checked as them (a change on a component they cannot see is
not in it); a person with immediate mails gets one per change.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
from collections.abc import AsyncIterator

import pytest

from bugless_dev.stack import LocalStack, RunningService
from bugless_notify.digest import next_digest_at
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


def test_the_next_digest_time_is_the_next_hour_mark_in_utc() -> None:
    utc = datetime.UTC
    before = datetime.datetime(2026, 3, 1, 6, 59, tzinfo=utc)
    assert next_digest_at(before, 7) == datetime.datetime(2026, 3, 1, 7, 0, tzinfo=utc)
    at = datetime.datetime(2026, 3, 1, 7, 0, tzinfo=utc)
    assert next_digest_at(at, 7) == datetime.datetime(2026, 3, 2, 7, 0, tzinfo=utc)


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


async def test_digest_people_get_one_mail_listing_the_changes_they_may_see(
    bugless_stack: LocalStack, model: v1.ModelStub, notifier: RunningService, smtp_sink: SmtpSink
) -> None:
    tag = secrets.token_hex(3)
    ids = {}
    for name in ("dora", "ivan", "bert"):
        created = await asyncio.to_thread(
            bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3, email=f"{name}{tag}@ex.test"
        )
        ids[name] = created["user_id"]
    dora, bert = v1.Caller(user_id=ids["dora"]), v1.Caller(user_id=ids["bert"])
    await model.update_notification_settings(
        v1.UpdateNotificationSettingsRequest(
            caller=dora,
            settings=v1.NotificationSettings(channel="email", digest=v1.DigestMode.DAILY),
        )
    )
    open_component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"digest-{tag}")
    )
    # dora may not see this one; bert and ivan may.
    closed = await model.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN,
            name=f"digest-closed-{tag}",
            acl=[
                v1.AclEntry(principal=v1.Principal(user=ids["bert"]), role=v1.Role.EDITOR),
                v1.AclEntry(principal=v1.Principal(user=ids["ivan"]), role=v1.Role.EDITOR),
            ],
        )
    )
    titles = [f"Digest one {tag}", f"Digest two {tag}"]
    # Both in one call, so one commit: a digest period (a few seconds here)
    # cannot end between them on a slow moment of the machine, which would
    # rightly send two digests of one change each.
    batch = await model.batch_create_issues(
        v1.BatchCreateIssuesRequest(
            caller=bert,
            items=[
                v1.CreateIssueRequest(
                    fields=v1.IssueFields(title=title, component_id=open_component.id),
                    cc=[ids["dora"], ids["ivan"]],
                    idempotency_key=secrets.token_hex(8),
                )
                for title in titles
            ],
        )
    )
    assert [result.code for result in batch.results] == [0, 0]
    hidden_title = f"Digest hidden {tag}"
    hidden = await model.create_issue(
        v1.CreateIssueRequest(
            caller=bert,
            fields=v1.IssueFields(title=hidden_title, component_id=closed.id),
            cc=[ids["ivan"]],
            idempotency_key=secrets.token_hex(8),
        )
    )
    # dora learns of the hidden issue only by a mention, which must not reach her.
    await model.change_issue(
        v1.ChangeIssueRequest(
            caller=bert,
            issue_id=hidden.id,
            expected_version=hidden.version,
            comment=f"@dora{tag} look at this",
        )
    )
    dora_addr, ivan_addr = f"dora{tag}@ex.test", f"ivan{tag}@ex.test"
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        to_dora = [m for m in smtp_sink.mails if dora_addr in m.recipients]
        to_ivan = [m for m in smtp_sink.mails if ivan_addr in m.recipients]
        if to_dora and len(to_ivan) >= 4:
            break
        assert asyncio.get_running_loop().time() < deadline, (len(to_dora), len(to_ivan))
        await asyncio.sleep(0.5)
    await asyncio.sleep(7)  # two more digest periods: nothing else may come
    to_dora = [m for m in smtp_sink.mails if dora_addr in m.recipients]
    assert len(to_dora) == 1, [m.message["Subject"] for m in to_dora]
    digest = to_dora[0].message
    assert digest["Subject"] == "bugless daily digest: 2 changes"
    assert digest["List-Unsubscribe"] == "<https://bugs.example.test/settings/notifications>"
    body = digest.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert all(t in text for t in titles), text
    assert hidden_title not in text
    html = digest.get_body(preferencelist=("html",))
    assert html is not None
    assert hidden_title not in html.get_content()
    # ivan (immediate) got one mail per change: two open issues, the hidden one, its comment.
    subjects = [str(m.message["Subject"]) for m in smtp_sink.mails if ivan_addr in m.recipients]
    assert len(subjects) == 4, subjects
    assert not any("digest" in s for s in subjects)
    assert not notifier.process.exited
