"""Right before a mail is sent, the worker checks the text it quotes against redactions.

What no feed consumer rewrote (it had not read the redaction yet, or a
digest mail was put together meanwhile) is rendered again before its
attempt; while the Model cannot say, nothing is sent unchecked. Real
Model, Authenticator, PostgreSQL and SMTP sink.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import socket

import asyncpg
from grpclib.client import Channel
from notify_support import (
    mail_delivery,
    redaction_world,
    until,
    waiting_with,
)
from prometheus_client import CollectorRegistry

from bugless_core.clients import ActingFor
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import IssueDeliveries
from bugless_notify._recheck import RedactionRecheck
from bugless_notify.component_webhooks import ComponentWebhookStore
from bugless_notify.digest import DigestStore
from bugless_notify.mail import EmailChannel, SmtpSecurity, SmtpSettings
from bugless_notify.queue import DeliveryQueue, DeliveryState
from bugless_notify.render import REDACTED
from bugless_notify.retry import RetryPolicy
from bugless_notify.service import RunningNotifier, start_notifier
from bugless_notify.worker import DeliveryWorker, WorkerSettings
from bugless_proto import v1
from bugless_testing.ports import refused_port
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def test_a_mail_rendered_before_a_redaction_is_rendered_again_when_it_is_sent(
    bugless_stack: LocalStack, model: v1.ModelStub, notify_database: str, smtp_sink: SmtpSink
) -> None:
    """What no consumer rewrote is checked right before its attempt.

    The comment's mails wait (the first notifier's worker stopped); dora's
    digest is put together from her items; then the comment is redacted
    while the test holds the feed consumer's lock, so no consumer reads the
    redaction: as when it is behind, restarting or down. A notifier started
    then sends ivan's mail and dora's digest with the text blanked, and
    nothing to gina, whom only the removed text mentioned (counted as a
    ``withdrawn`` delivery). Before, the worker sent what was queued: the
    password in both, and gina's mail.
    """
    world = await redaction_world(
        bugless_stack,
        model,
        admin=ADMIN,
        database_url=notify_database,
        smtp_port=smtp_sink.port,
        prefix="recheck",
    )
    tag, ids, bert, component = world.tag, world.ids, world.bert, world.component
    schema, settings = world.schema, world.settings
    first: RunningNotifier | None = await start_notifier(
        settings, metrics_registry=CollectorRegistry()
    )
    assert first is not None
    later: RunningNotifier | None = None
    pool = await asyncpg.create_pool(notify_database, min_size=1, max_size=2)
    lock = await asyncpg.connect(notify_database)
    try:
        first.worker.stop()
        await asyncio.wait_for(first.tasks[1], 30)
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=bert,
                fields=v1.IssueFields(title=f"Recheck {tag}", component_id=component.id),
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

        async def waiting() -> bool:
            # ivan's and gina's mails, dora's digest item.
            return await waiting_with(pool, schema, secret) == 3

        await until(waiting, "the comment's mails to wait in the queue and for the digest")
        await first.close()
        first = None
        await lock.execute(
            "SELECT pg_advisory_lock(hashtextextended($1, 0))", f"bugless-notify-feed:{schema}"
        )
        queue = DeliveryQueue(schema)
        assert await DigestStore(schema).send(pool, queue, datetime.datetime.now(datetime.UTC)) == 1
        await model.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=said.issue.version,
                target=v1.RedactionTarget.COMMENT,
                entry_version=said.entry.version,
            )
        )
        registry = CollectorRegistry()
        later = await start_notifier(settings, metrics_registry=registry)
        dora, ivan, gina = (f"{n}{tag}@ex.test" for n in ("dora", "ivan", "gina"))
        await until(
            lambda: (
                any(dora in m.recipients for m in smtp_sink.mails)
                and sum(ivan in m.recipients for m in smtp_sink.mails) >= 2
            ),
            "dora's digest and ivan's mails",
        )
        await asyncio.sleep(1.0)  # anything else would have gone out by now
        mails = [m for m in smtp_sink.mails if any(tag in r for r in m.recipients)]
        for mail in mails:
            for part in ("plain", "html"):
                body = mail.message.get_body(preferencelist=(part,))
                assert body is not None
                assert "hunter" not in body.get_content(), (mail.recipients, part)
        assert not [m for m in mails if gina in m.recipients]
        # The creation and the comment: no consumer read the redaction.
        to_ivan = [m for m in mails if ivan in m.recipients]
        assert len(to_ivan) == 2, [m.message["Subject"] for m in to_ivan]
        plain = [m.message.get_body(preferencelist=("plain",)) for m in to_ivan]
        assert sum(REDACTED in p.get_content() for p in plain if p is not None) == 1
        digest = [m for m in mails if dora in m.recipients]
        assert len(digest) == 1
        assert digest[0].message["Subject"] == "bugless daily digest: 2 changes"
        listed = digest[0].message.get_body(preferencelist=("plain",))
        assert listed is not None
        assert listed.get_content().count(REDACTED) == 1
        # Rendered again in place (a retry would send the same), gina's withdrawn.
        assert await waiting_with(pool, schema, "hunter") == 0
        assert not await pool.fetchval(
            f"SELECT count(*) FROM {schema}.deliveries WHERE message::text LIKE '%hunter%'"
        )
        assert not await pool.fetchval(
            f"SELECT count(*) FROM {schema}.deliveries WHERE recipient = $1", gina
        )

        # gina's is an outcome too: withdrawn, no attempt made.
        def counted(outcome: str) -> float | None:
            return registry.get_sample_value(
                "bugless_notify_deliveries_total", {"channel": "email", "outcome": outcome}
            )

        assert counted("withdrawn") == 1
        assert counted("delivered") == 3  # ivan's two mails and dora's digest
    finally:
        if later is not None:
            await later.close()
        if first is not None:
            await first.close()
        await lock.close()
        await pool.close()


async def test_a_mail_is_not_sent_unchecked_while_the_model_cannot_say(
    pool: asyncpg.Pool, queue: DeliveryQueue, smtp_sink: SmtpSink
) -> None:
    """A message quoting a comment waits (retried, then a dead letter) while the Model is away.

    The check is the notifier's own, pointed at a port that refuses
    connections: no mail goes out unchecked, and the dead letter says why.
    """
    queued = mail_delivery(1)
    assert queued.message.quoted_versions == (4,)
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [queued])
    with refused_port() as port:
        model_channel = Channel("127.0.0.1", port)
        auth_channel = Channel("127.0.0.1", port)
        auth = v1.AuthenticatorStub(auth_channel)
        recheck = RedactionRecheck(
            pool,
            queue,
            v1.ModelStub(model_channel),
            IssueDeliveries(
                v1.ModelStub(model_channel),
                auth,
                ActingFor(auth),
                public_url="https://bugs.example.com",
                notify_authors=False,
            ),
            ComponentWebhookStore(queue.schema),
        )
        worker = DeliveryWorker(
            pool,
            queue,
            {
                "email": EmailChannel(
                    SmtpSettings(host="127.0.0.1", port=smtp_sink.port, security=SmtpSecurity.NONE)
                )
            },
            WorkerSettings(
                poll_seconds=0.2,
                retry=RetryPolicy(base_seconds=0.05, max_seconds=0.1, max_attempts=2),
            ),
            metrics_registry=CollectorRegistry(),
            before_send=recheck,
        )
        running = asyncio.ensure_future(worker.run())
        try:

            async def dead() -> bool:
                async with pool.acquire() as conn:
                    record = await queue.get(conn, queued.delivery_id)
                return record is not None and record.state is DeliveryState.DEAD

            await until(dead, "the unchecked mail to become a dead letter")
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
            for channel in worker.channels.values():
                await channel.close()
            model_channel.close()
            auth_channel.close()
    async with pool.acquire() as conn:
        record = await queue.get(conn, queued.delivery_id)
    assert record is not None
    assert record.attempts == 2
    assert "could not check the message against redactions before sending it" in (record.last_error)
    assert not smtp_sink.mails


async def test_a_model_that_never_answers_fails_the_attempt_within_its_timeout(
    pool: asyncpg.Pool, queue: DeliveryQueue, smtp_sink: SmtpSink
) -> None:
    """The check counts in the attempt's time: a silent Model fails it, retried, then dead.

    The Model is a socket that takes the connection and never answers (a
    hung or partitioned Model). Before, the check waited for it forever:
    the attempt held its slot past its lease and never ended, so the mail
    neither went out nor became a dead letter.
    """
    queued = mail_delivery(1)
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [queued])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        model_channel = Channel("127.0.0.1", port)
        auth = v1.AuthenticatorStub(model_channel)
        recheck = RedactionRecheck(
            pool,
            queue,
            v1.ModelStub(model_channel),
            IssueDeliveries(
                v1.ModelStub(model_channel),
                auth,
                ActingFor(auth),
                public_url="https://bugs.example.com",
                notify_authors=False,
            ),
            ComponentWebhookStore(queue.schema),
        )
        worker = DeliveryWorker(
            pool,
            queue,
            {
                "email": EmailChannel(
                    SmtpSettings(host="127.0.0.1", port=smtp_sink.port, security=SmtpSecurity.NONE)
                )
            },
            WorkerSettings(
                poll_seconds=0.2,
                delivery_timeout_seconds=0.5,
                lease_seconds=5.0,
                retry=RetryPolicy(base_seconds=0.05, max_seconds=0.1, max_attempts=2),
            ),
            metrics_registry=CollectorRegistry(),
            before_send=recheck,
        )
        running = asyncio.ensure_future(worker.run())
        try:

            async def dead() -> bool:
                async with pool.acquire() as conn:
                    record = await queue.get(conn, queued.delivery_id)
                return record is not None and record.state is DeliveryState.DEAD

            await until(dead, "the mail the silent Model could not check to become a dead letter")
            assert worker.in_flight == 0
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
            for channel in worker.channels.values():
                await channel.close()
            model_channel.close()
    async with pool.acquire() as conn:
        record = await queue.get(conn, queued.delivery_id)
    assert record is not None
    assert record.attempts == 2
    assert record.last_error == (
        "gave up after 2 attempts; the last: could not check the message against "
        "redactions before sending it: the check took longer than 0.5 s"
    )
    assert not smtp_sink.mails
