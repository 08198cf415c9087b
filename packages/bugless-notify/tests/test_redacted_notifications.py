"""A redacted comment is never mailed afterwards, from any table of the notifier.

The notifier runs in this process on the stack's real Model and
Authenticator, a real PostgreSQL and an SMTP sink. Its delivery worker is
stopped while the changes are made, so their mails wait in the queue as
they would for a retry, and dora's wait for her daily digest (never due
during the test: the digest hour is half a day away). Then an admin redacts
the comment: the mails that go out after that say it was redacted, and the
one that only existed because of an ``@mention`` in the redacted text goes
nowhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import secrets

from notify_support import (
    redaction_world,
    stack_notifier_settings,
    until,
    until_seeded,
    waiting_with,
)
from prometheus_client import CollectorRegistry

from bugless_core.notification_channel import NotificationMessage
from bugless_dev.stack import LocalStack
from bugless_notify.digest import DigestStore
from bugless_notify.queue import DeliveryQueue
from bugless_notify.render import REDACTED, issue_ref
from bugless_notify.service import start_notifier
from bugless_notify.worker import DeliveryWorker
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def test_a_redacted_comment_is_not_mailed_by_a_digest_or_a_retry_afterwards(
    bugless_stack: LocalStack, model: v1.ModelStub, notify_database: str, smtp_sink: SmtpSink
) -> None:
    world = await redaction_world(
        bugless_stack,
        model,
        admin=ADMIN,
        database_url=notify_database,
        smtp_port=smtp_sink.port,
        prefix="redact",
    )
    tag, ids, bert, component = world.tag, world.ids, world.bert, world.component
    schema, settings = world.schema, world.settings
    notifier = await start_notifier(settings, metrics_registry=CollectorRegistry())
    worker: DeliveryWorker | None = None
    try:
        notifier.worker.stop()
        await asyncio.wait_for(notifier.tasks[1], 30)
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=bert,
                fields=v1.IssueFields(title=f"Redaction {tag}", component_id=component.id),
                cc=[ids["dora"], ids["ivan"]],
                idempotency_key=secrets.token_hex(8),
            )
        )
        secret = f"hunter2-{tag}"
        said = await model.change_issue(
            v1.ChangeIssueRequest(
                caller=bert,
                issue_id=issue.id,
                expected_version=issue.version,
                comment=f"the root password is {secret} @gina{tag}",
            )
        )
        assert said.issue is not None
        assert said.entry is not None
        said_version = said.entry.version
        edited_secret = f"hunter3-{tag}"
        edited = await model.edit_comment(
            v1.EditCommentRequest(
                caller=bert,
                issue_id=issue.id,
                expected_version=said.issue.version,
                entry_version=said_version,
                comment=f"the root password is {edited_secret} @gina{tag} @dora{tag} @ivan{tag}",
            )
        )
        assert edited.issue is not None
        pool = notifier.pool

        async def waiting() -> bool:
            return await waiting_with(pool, schema, edited_secret) > 0

        # Rendered and waiting: dora's digest items, ivan's and gina's mails;
        # the edit's for dora and ivan, whom it newly mentions (not gina).
        await until(
            waiting,
            "the edited comment's mails to wait in the queue and for the digest",
        )
        assert await waiting_with(pool, schema, secret) > 0
        await model.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=edited.issue.version,
                target=v1.RedactionTarget.COMMENT,
                entry_version=said_version,
            )
        )

        async def gone() -> bool:
            return await waiting_with(pool, schema, "hunter") == 0

        await until(gone, "the redacted text to leave every waiting message")
        queue = DeliveryQueue(schema)
        assert await DigestStore(schema).send(pool, queue, datetime.datetime.now(datetime.UTC)) == 1
        worker = DeliveryWorker(
            pool,
            queue,
            {"email": notifier.delivery_channels[0]},
            metrics_registry=CollectorRegistry(),
        )
        running = asyncio.ensure_future(worker.run())
        try:
            dora, ivan, gina = (f"{n}{tag}@ex.test" for n in ("dora", "ivan", "gina"))
            await until(
                lambda: (
                    any(dora in m.recipients for m in smtp_sink.mails)
                    and sum(ivan in m.recipients for m in smtp_sink.mails) >= 3
                ),
                "dora's digest and ivan's mails",
            )
            await asyncio.sleep(1.0)  # anything else would have gone out by now
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
        mails = [m for m in smtp_sink.mails if any(tag in r for r in m.recipients)]
        for mail in mails:
            for part in ("plain", "html"):
                body = mail.message.get_body(preferencelist=(part,))
                assert body is not None
                assert "hunter" not in body.get_content(), (mail.recipients, part)
        # gina was told only because the redacted text mentioned her, and
        # dora and ivan of the edit only because it newly mentioned them:
        # an edit whose text a redaction removed mails nobody.
        assert not [m for m in mails if gina in m.recipients]
        digest = [m for m in mails if dora in m.recipients]
        assert len(digest) == 1
        # The creation, the comment (waiting when it was redacted) and the
        # redaction, which says what it was; not the edit.
        assert digest[0].message["Subject"] == "bugless daily digest: 3 changes"
        listed = digest[0].message.get_body(preferencelist=("plain",))
        assert listed is not None
        assert listed.get_content().count(REDACTED) == 1
        assert "edited a comment" not in listed.get_content()
        assert f"redacted a comment of {issue_ref(issue.id)}:" in listed.get_content()
        to_ivan = [m for m in mails if ivan in m.recipients]
        assert len(to_ivan) == 3, [m.message["Subject"] for m in to_ivan]
        plain = [m.message.get_body(preferencelist=("plain",)) for m in to_ivan]
        assert sum(REDACTED in p.get_content() for p in plain if p is not None) == 1
    finally:
        await notifier.close()


async def test_a_recipient_the_rules_no_longer_name_still_gets_the_redacted_mail(
    bugless_stack: LocalStack, model: v1.ModelStub, notify_database: str, smtp_sink: SmtpSink
) -> None:
    """Only a mention in the removed text withdraws a waiting mail, not a later change.

    olga was on CC when the comment was made, and is taken off CC before the
    redaction: the rules computed now no longer name her for the comment, yet
    her mail about it was due, and goes out with the text redacted (and so
    does its edit's). Before, both were withdrawn with the mention-only ones.
    """
    tag = secrets.token_hex(3)
    ids = {}
    for name in ("olga", "bert"):
        created = await asyncio.to_thread(
            bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3, email=f"{name}{tag}@ex.test"
        )
        ids[name] = str(created["user_id"])
    bert = v1.Caller(user_id=ids["bert"])
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"redact-cc-{tag}")
    )
    schema = f"notify_redact_cc_{tag}"
    settings = stack_notifier_settings(
        bugless_stack, database_url=notify_database, schema=schema, smtp_port=smtp_sink.port
    )
    notifier = await start_notifier(settings, metrics_registry=CollectorRegistry())
    worker: DeliveryWorker | None = None
    try:
        notifier.worker.stop()
        await asyncio.wait_for(notifier.tasks[1], 30)
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=bert,
                fields=v1.IssueFields(title=f"Redaction cc {tag}", component_id=component.id),
                cc=[ids["olga"]],
                idempotency_key=secrets.token_hex(8),
            )
        )
        secret = f"hunter2-{tag}"
        said = await model.change_issue(
            v1.ChangeIssueRequest(
                caller=bert,
                issue_id=issue.id,
                expected_version=issue.version,
                comment=f"the root password is {secret}",
            )
        )
        assert said.issue is not None
        assert said.entry is not None
        pool = notifier.pool

        async def rendered() -> bool:
            return await waiting_with(pool, schema, secret) > 0

        # Rendered while olga is on CC, as the rules named her then.
        await until(rendered, "the comment's mail to olga to wait in the queue")
        off = await model.change_issue(
            v1.ChangeIssueRequest(
                caller=bert,
                issue_id=issue.id,
                expected_version=said.issue.version,
                delta=v1.IssueDelta(cc_remove=[ids["olga"]]),
            )
        )
        assert off.issue is not None
        off_version = off.issue.version

        async def waiting() -> bool:
            return bool(
                await pool.fetchval(
                    f"SELECT count(*) FROM {schema}.deliveries WHERE delivery_id LIKE $1",
                    f"change-{issue.id}-{off_version}/%",
                )
            )

        await until(waiting, "the CC removal's mail to wait in the queue")
        await model.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=off_version,
                target=v1.RedactionTarget.COMMENT,
                entry_version=said.entry.version,
            )
        )

        async def gone() -> bool:
            return await waiting_with(pool, schema, "hunter") == 0

        await until(gone, "the redacted text to leave every waiting message")
        queue = DeliveryQueue(schema)
        worker = DeliveryWorker(
            pool,
            queue,
            {"email": notifier.delivery_channels[0]},
            metrics_registry=CollectorRegistry(),
        )
        running = asyncio.ensure_future(worker.run())
        olga = f"olga{tag}@ex.test"
        try:
            await until(
                lambda: sum(olga in m.recipients for m in smtp_sink.mails) >= 3,
                "olga's mails: the creation, the comment and her removal from CC",
            )
            await asyncio.sleep(1.0)  # anything else would have gone out by now
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
        to_olga = [m for m in smtp_sink.mails if olga in m.recipients]
        assert len(to_olga) == 3, [m.message["Subject"] for m in to_olga]
        plain = [m.message.get_body(preferencelist=("plain",)) for m in to_olga]
        texts = [p.get_content() for p in plain if p is not None]
        assert not [t for t in texts if "hunter" in t]
        assert sum(REDACTED in t for t in texts) == 1
    finally:
        await notifier.close()


async def test_a_saved_search_mail_rendered_again_still_names_the_search(
    bugless_stack: LocalStack, model: v1.ModelStub, notify_database: str, smtp_sink: SmtpSink
) -> None:
    """sam is told of a new issue because his saved search matches it; its description is redacted.

    The rendering again passes no saved-search changes (the match is not
    kept per change), so his mail kept its reason but lost the search's
    name: "you subscribed to a saved search". It says which one again.
    """
    tag = secrets.token_hex(3)
    ids = {}
    for name in ("sam", "bert"):
        created = await asyncio.to_thread(
            bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3, email=f"{name}{tag}@ex.test"
        )
        ids[name] = str(created["user_id"])
    sam = v1.Caller(user_id=ids["sam"])
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"redact-search-{tag}")
    )
    search_name = f"Triage {tag}"
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(caller=sam, name=search_name, query=f"c:{component.id}")
    )
    await model.set_saved_search_subscription(
        v1.SetSavedSearchSubscriptionRequest(caller=sam, saved_search_id=search.id, subscribed=True)
    )
    schema = f"notify_redact_search_{tag}"
    settings = stack_notifier_settings(
        bugless_stack, database_url=notify_database, schema=schema, smtp_port=smtp_sink.port
    )
    notifier = await start_notifier(settings, metrics_registry=CollectorRegistry())
    try:
        notifier.worker.stop()
        await asyncio.wait_for(notifier.tasks[1], 30)
        await until_seeded(notify_database, schema, search.id, sam.user_id)
        secret = f"hunter2-{tag}"
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=v1.Caller(user_id=ids["bert"]),
                fields=v1.IssueFields(title=f"Redaction search {tag}", component_id=component.id),
                description=f"the root password is {secret}",
                idempotency_key=secrets.token_hex(8),
            )
        )
        pool = notifier.pool

        async def rendered() -> bool:
            return await waiting_with(pool, schema, secret) > 0

        await until(rendered, "the creation's mail to sam to wait in the queue")
        await model.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=issue.version,
                target=v1.RedactionTarget.DESCRIPTION,
            )
        )

        async def gone() -> bool:
            return await waiting_with(pool, schema, "hunter") == 0

        await until(gone, "the redacted text to leave every waiting message")
        worker = DeliveryWorker(
            pool,
            DeliveryQueue(schema),
            {"email": notifier.delivery_channels[0]},
            metrics_registry=CollectorRegistry(),
        )
        running = asyncio.ensure_future(worker.run())
        to_sam = f"sam{tag}@ex.test"
        try:
            await until(lambda: any(to_sam in m.recipients for m in smtp_sink.mails), "sam's mail")
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
        (mail,) = [m for m in smtp_sink.mails if to_sam in m.recipients]
        assert mail.message["X-Bugless-Reason"] == "saved_search"
        for part in ("plain", "html"):
            body = mail.message.get_body(preferencelist=(part,))
            assert body is not None
            content = body.get_content()
            assert "hunter" not in content
            assert "redacted by an administrator" in content
            assert f"you subscribed to a saved search ({search_name})" in content, content
    finally:
        await notifier.close()


async def test_a_digest_put_together_before_a_redaction_is_put_together_again(
    bugless_stack: LocalStack, model: v1.ModelStub, notify_database: str, smtp_sink: SmtpSink
) -> None:
    """dora's digest mail waits (for its retry, or as a dead letter) when the comment is redacted.

    The consumer reading the redaction puts it together again from its items,
    the comment's rendered again, so no stored copy keeps the text. Before,
    only the worker's check before sending did, and the row kept the text.
    """
    tag = secrets.token_hex(3)
    ids = {}
    for name in ("dora", "bert"):
        created = await asyncio.to_thread(
            bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3, email=f"{name}{tag}@ex.test"
        )
        ids[name] = str(created["user_id"])
    bert = v1.Caller(user_id=ids["bert"])
    await model.update_notification_settings(
        v1.UpdateNotificationSettingsRequest(
            caller=v1.Caller(user_id=ids["dora"]),
            settings=v1.NotificationSettings(channel="email", digest=v1.DigestMode.DAILY),
        )
    )
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"redact-digest-{tag}")
    )
    schema = f"notify_redact_digest_{tag}"
    settings = stack_notifier_settings(
        bugless_stack, database_url=notify_database, schema=schema, smtp_port=smtp_sink.port
    )
    hour = (datetime.datetime.now(datetime.UTC).hour + 12) % 24
    settings = dataclasses.replace(settings, digest_hour_utc=hour)
    notifier = await start_notifier(settings, metrics_registry=CollectorRegistry())
    try:
        notifier.worker.stop()
        await asyncio.wait_for(notifier.tasks[1], 30)
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=bert,
                fields=v1.IssueFields(title=f"Redaction digest {tag}", component_id=component.id),
                cc=[ids["dora"]],
                idempotency_key=secrets.token_hex(8),
            )
        )
        secret = f"hunter2-{tag}"
        said = await model.change_issue(
            v1.ChangeIssueRequest(
                caller=bert,
                issue_id=issue.id,
                expected_version=issue.version,
                comment=f"the root password is {secret}",
            )
        )
        assert said.issue is not None
        assert said.entry is not None
        pool = notifier.pool

        async def kept() -> bool:
            return await waiting_with(pool, schema, secret) > 0

        await until(kept, "the comment's digest item")
        queue = DeliveryQueue(schema)
        assert await DigestStore(schema).send(pool, queue, datetime.datetime.now(datetime.UTC)) == 1
        assert await waiting_with(pool, schema, secret) == 1  # the digest mail
        await model.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=said.issue.version,
                target=v1.RedactionTarget.COMMENT,
                entry_version=said.entry.version,
            )
        )

        async def gone() -> bool:
            return await waiting_with(pool, schema, "hunter") == 0

        await until(gone, "the redacted text to leave the digest mail")
        stored = await pool.fetchval(
            f"SELECT message::text FROM {schema}.deliveries WHERE delivery_id LIKE 'digest-%'"
        )
        message = NotificationMessage.from_json(json.loads(stored))
        assert message.subject == "bugless daily digest: 2 changes"
        assert message.text.count(REDACTED) == 1
        assert f"Redaction digest {tag}" in message.text
    finally:
        await notifier.close()
