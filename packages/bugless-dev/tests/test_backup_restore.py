"""The backup and restore of docs/backup.md, done to a real tracker.

A tracker on PostgreSQL gets people, an issue with a comment and an
attachment; its two databases are dumped with ``pg_dump`` the way the guide
says, the services stop, the dumps are restored with ``pg_restore`` into new
databases, and a tracker started on them with the same keys must serve
everything as before: the same issue, history and file bytes, full-text
search, the password and even the session of before, new issues that
do not reuse an id, and the notifier's queue (its schema is in the Model's
database, as the chart puts all three in one) with the mail not yet sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from backup_drill import PASSWORD, drill_stack, dump, restore

from bugless_core.clients import acting_as
from bugless_core.notification_channel import NotificationMessage
from bugless_core.search.build import term
from bugless_dev.pki import LocalPki
from bugless_dev.postgres import ThrowawayPostgres
from bugless_dev.stack import LocalStack
from bugless_notify.queue import DeliveryQueue, DeliveryRecord, DeliveryState, NewDelivery
from bugless_proto import v1

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


async def create(model: v1.ModelStub, caller: v1.Caller, component_id: int, title: str) -> v1.Issue:
    fields = v1.IssueFields(title=title, component_id=component_id)
    return await model.create_issue(v1.CreateIssueRequest(caller=caller, fields=fields))


async def entries(model: v1.ModelStub, caller: v1.Caller, issue_id: int) -> list[v1.HistoryEntry]:
    page = v1.PageRequest(page_size=100)
    request = v1.ListHistoryRequest(caller=caller, issue_id=issue_id, page=page)
    return list((await model.list_history(request)).entries)


async def upload(stack: LocalStack, issue_id: int, caller: v1.Caller) -> v1.Attachment:
    """Attach :data:`PNG` (a stream: the assertion goes with the call, as the web sends it)."""
    header = v1.UploadAttachmentHeader(caller=caller, issue_id=issue_id, name="graph.png")
    parts = [v1.UploadAttachmentRequest(header=header)]
    parts += [v1.UploadAttachmentRequest(chunk=PNG[i : i + 4096]) for i in range(0, len(PNG), 4096)]
    channel = stack.model.channel()
    try:
        with acting_as(stack.assertion_for(caller.user_id, permissions=["admin"])):
            answer = await v1.ModelStub(channel).upload_attachment(parts)
    finally:
        channel.close()
    assert answer.attachment is not None
    return answer.attachment


async def download(stack: LocalStack, attachment_id: int, caller: v1.Caller) -> bytes:
    request = v1.DownloadAttachmentRequest(caller=caller, attachment_id=attachment_id)
    channel = stack.model.channel()
    try:
        with acting_as(stack.assertion_for(caller.user_id, permissions=["admin"])):
            stream = v1.ModelStub(channel).download_attachment(request)
            return b"".join([part.chunk or b"" async for part in stream])
    finally:
        channel.close()


async def queue_mail(database_url: str, issue_id: int) -> DeliveryRecord:
    """A mail about ``issue_id`` waiting in the notifier's queue (its schema migrated first)."""
    queue = DeliveryQueue()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await queue.migrate(pool)
        message = NotificationMessage(
            thread_id=f"issue-{issue_id}", subject="Nightly dump", text="Seen again.", html=""
        )
        mail = NewDelivery(f"change-{issue_id}-2/email/ann", "email", "ann@example.com", message)
        async with pool.acquire() as conn:
            assert await queue.enqueue(conn, [mail]) == 1
            queued = await queue.get(conn, mail.delivery_id)
    finally:
        await pool.close()
    assert queued is not None
    return queued


async def queued_mail(database_url: str, delivery_id: str) -> DeliveryRecord | None:
    """The delivery ``delivery_id`` as the notifier's queue in ``database_url`` holds it."""
    conn = await asyncpg.connect(database_url)
    try:
        return await DeliveryQueue().get(conn, delivery_id)
    finally:
        await conn.close()


async def test_a_restored_dump_with_the_same_keys_serves_the_same_tracker(
    postgres_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    pki = LocalPki.open(tmp_path / "pki")
    before = drill_stack(
        tmp_path / "before",
        pki,
        postgres_server.create_database("backup_model"),
        postgres_server.create_database("backup_auth"),
    )
    try:
        await asyncio.to_thread(before.migrate)
        await asyncio.to_thread(before.start_backends)
        ann = await asyncio.to_thread(before.add_user, "ann", PASSWORD, admin=True)
        caller = v1.Caller(user_id=ann["user_id"], admin=True)
        auth = v1.AuthenticatorStub(before.client_address("auth", "web").channel())
        signed_in = await auth.authenticate_password(
            v1.AuthenticatePasswordRequest(username="ann", password=PASSWORD)
        )
        model = before.acting_model(v1.ModelStub(before.model.channel()))
        component = await model.create_component(
            v1.CreateComponentRequest(caller=caller, name="Backups")
        )
        issue = await create(model, caller, component.id, "Nightly dump misses the blobs")
        await model.change_issue(
            v1.ChangeIssueRequest(
                caller=caller,
                issue_id=issue.id,
                expected_version=issue.version,
                comment="Seen again on the replica.",
            )
        )
        attached = await upload(before, issue.id, caller)
        kept = await entries(model, caller, issue.id)
        assert len(kept) == 3, "created, commented, attached"
        mail = await queue_mail(before.model_database_url, issue.id)
        assert mail.state is DeliveryState.PENDING
        model_dump, auth_dump = tmp_path / "model.dump", tmp_path / "auth.dump"
        await asyncio.to_thread(dump, postgres_server, before.model_database_url, model_dump)
        await asyncio.to_thread(dump, postgres_server, before.auth_database_url, auth_dump)
        token_key = Path(before.env["BUGLESS_AUTH_TOKEN_KEY_FILES"])
    finally:
        await asyncio.to_thread(before.stop)

    # The disaster: the old databases are gone; new, empty ones get the dumps.
    after = drill_stack(
        tmp_path / "after",
        pki,
        postgres_server.create_database("restored_model"),
        postgres_server.create_database("restored_auth"),
        token_key_file=token_key,
    )
    try:
        await asyncio.to_thread(restore, postgres_server, model_dump, after.model_database_url)
        await asyncio.to_thread(restore, postgres_server, auth_dump, after.auth_database_url)
        await asyncio.to_thread(after.migrate)  # at head already: nothing to apply
        await asyncio.to_thread(after.start_backends)
        auth = v1.AuthenticatorStub(after.client_address("auth", "web").channel())
        # The same signing key: the session of before is still valid.
        valid = await auth.validate_token(v1.ValidateTokenRequest(token=signed_in.token))
        assert valid.user is not None
        assert valid.user.user_id == ann["user_id"]
        again = await auth.authenticate_password(
            v1.AuthenticatePasswordRequest(username="ann", password=PASSWORD)
        )
        assert again.token
        model = after.acting_model(v1.ModelStub(after.model.channel()))
        restored = await model.get_issue(v1.GetIssueRequest(caller=caller, issue_id=issue.id))
        assert (restored.title, restored.version) == (issue.title, kept[-1].version)
        assert await entries(model, caller, issue.id) == kept
        assert await download(after, attached.id, caller) == PNG
        query = v1.StructuredQuery(filter=term(v1.SearchField.TEXT, v1.SearchOperator.EQ, "blobs"))
        found = await model.search_issues(v1.SearchIssuesRequest(caller=caller, query=query))
        assert [i.id for i in found.issues] == [issue.id]
        assert await queued_mail(after.model_database_url, mail.delivery_id) == mail
        newer = await create(model, caller, component.id, "After the restore")
        assert newer.id > issue.id, "the id sequences came back with the data"
    finally:
        await asyncio.to_thread(after.stop)
