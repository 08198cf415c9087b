"""A notifier whose cursor is beyond the Model's feed (the Model restored from a backup).

After the Model's database is restored to an earlier moment than the
notifier's queue, the notifier's cursor names a feed position the Model has
not reached. Waiting for the feed to pass it would skip every change until
then; the notifier instead says so and starts again at the head, so the
changes made after the restore are mailed. Real processes: ``bugless notify
serve`` against the session's Model, an aiosmtpd sink.
"""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from bugless_dev.stack import LocalStack, RunningService
from bugless_proto import v1
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


def _start(stack: LocalStack, sink: SmtpSink, schema: str) -> RunningService:
    return stack.start_notify(
        *("--schema", schema, "--smtp-host", "127.0.0.1", "--smtp-port", str(sink.port)),
        *("--smtp-security", "none", "--public-url", "https://bugs.example.test"),
        name=f"notify-{secrets.token_hex(3)}",
    )


async def _mails_to(sink: SmtpSink, address: str, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while len([m for m in sink.mails if address in m.recipients]) < count:
        assert asyncio.get_running_loop().time() < deadline, f"no mail {count} to {address}"
        await asyncio.sleep(0.3)


async def test_a_cursor_beyond_the_feed_head_starts_again_at_the_head_and_mails_what_follows(
    bugless_stack: LocalStack, model: v1.ModelStub, smtp_sink: SmtpSink
) -> None:
    tag = secrets.token_hex(3)
    schema = f"notify_{tag}"
    watcher = await asyncio.to_thread(
        bugless_stack.add_user, f"wanda{tag}", "pw-" + tag * 3, email=f"wanda{tag}@ex.test"
    )
    address = f"wanda{tag}@ex.test"
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"restore-{tag}")
    )
    notifier = await asyncio.to_thread(_start, bugless_stack, smtp_sink, schema)
    try:
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"Before the restore {tag}", component_id=component.id),
                cc=[watcher["user_id"]],
                idempotency_key=secrets.token_hex(8),
            )
        )
        await _mails_to(smtp_sink, address, 1)
    finally:
        await asyncio.to_thread(bugless_stack.stop_service, notifier)

    # The Model's database comes back from a backup older than the queue:
    # to the notifier's cursor, the feed is now 1,000 changes short.
    conn = await asyncpg.connect(bugless_stack.model_database_url)
    try:
        ahead = await conn.fetchval(
            f"UPDATE {schema}.feed_cursor SET position = position + 1000 RETURNING position"
        )
    finally:
        await conn.close()

    notifier = await asyncio.to_thread(_start, bugless_stack, smtp_sink, schema)
    try:
        await model.change_issue(
            v1.ChangeIssueRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=issue.version,
                comment="After the restore, this must reach the CC list.",
            )
        )
        await _mails_to(smtp_sink, address, 2)
        log = notifier.log.read_text(errors="replace")
        assert f"the cursor {ahead} is beyond the Model's feed head" in log
        assert not notifier.process.exited
    finally:
        await asyncio.to_thread(bugless_stack.stop_service, notifier)
