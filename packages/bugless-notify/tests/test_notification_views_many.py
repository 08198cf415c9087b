"""An issue with more recipients or entries than one Model or Authenticator call takes.

The Model checks at most MAX_NOTIFICATION_VIEWS recipients per
GetNotificationViews and the Authenticator looks up at most MAX_USER_LOOKUP
people per GetUsers; the notifier asked about all of an issue's recipients
in one call of each, so an issue with more (a large component's
subscribers) was refused (INVALID_ARGUMENT) and its batch failed at every
try: no mail for anyone went out after it. Real people (created with the
Authenticator's CreateLocalUser), real subscriptions, and the real Model
and Authenticator over mutual TLS as the notifier reaches them. So are
the entries one GetNotificationViews names (at most MAX_NOTIFICATION_VIEWS):
the messages waiting about a busy issue may quote more.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets

import asyncpg
import pytest

from bugless_core.clients import ActingFor, call
from bugless_core.grpc import GrpcServerSettings
from bugless_core.limits import MAX_NOTIFICATION_VIEWS, MAX_USER_LOOKUP
from bugless_core.notification_channel import NotificationMessage
from bugless_core.service_address import ServiceAddress
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import NOTIFIER, Batch, IssueDeliveries
from bugless_notify._recheck import RedactionRecheck
from bugless_notify._redactions import Redaction, WaitingMessages
from bugless_notify.component_webhooks import ComponentWebhookStore
from bugless_notify.digest import MAX_ITEMS, DigestStore, digest_items
from bugless_notify.queue import DeliveryQueue
from bugless_notify.render import REDACTED, Reason
from bugless_notify.settings import NotifierSettings
from bugless_proto import v1

ADMIN = v1.Caller(user_id="test-admin", admin=True)
#: More people than either call takes.
PEOPLE = max(MAX_NOTIFICATION_VIEWS, MAX_USER_LOOKUP) + 7
#: More comments on one issue than one GetNotificationViews names.
COMMENTS = MAX_NOTIFICATION_VIEWS + 5
#: More history entries than one GetNotificationViews names, in one ImportIssue.
IMPORTED = MAX_NOTIFICATION_VIEWS + 3


async def test_every_subscriber_of_a_component_larger_than_one_call_is_mailed(
    bugless_stack: LocalStack, model: v1.ModelStub
) -> None:
    """1,007 subscribers of a component each get the mail of its new issue, and nobody else."""
    tag = secrets.token_hex(3)
    password = "pw-" + tag * 3
    await asyncio.to_thread(bugless_stack.add_user, f"adm{tag}", password, admin=True)
    web = bugless_stack.client_address("auth", identity="web").channel()
    notify = bugless_stack.client_address("auth", identity="notify").channel()
    to_model = bugless_stack.client_address("model", identity="notify").channel()
    try:
        signed_in = await call(
            v1.AuthenticatorStub(web).authenticate_password,
            v1.AuthenticatePasswordRequest(username=f"adm{tag}", password=password),
        )
        component = await model.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name=f"crowded-{tag}")
        )
        limit = asyncio.Semaphore(16)

        async def subscriber(n: int) -> str:
            async with limit:
                user = await call(
                    v1.AuthenticatorStub(web).create_local_user,
                    v1.CreateLocalUserRequest(
                        token=signed_in.token,
                        username=f"sub{tag}n{n:04d}",
                        password=password,
                        email=f"sub{tag}n{n:04d}@example.test",
                    ),
                )
                await model.set_component_subscription(
                    v1.SetComponentSubscriptionRequest(
                        caller=v1.Caller(user_id=user.user_id),
                        component_id=component.id,
                        subscribed=True,
                    )
                )
                return user.email

        addresses = set(await asyncio.gather(*(subscriber(n) for n in range(PEOPLE))))
        issue = await model.create_issue(
            v1.CreateIssueRequest(
                caller=ADMIN,
                fields=v1.IssueFields(title=f"Crowded {tag}", component_id=component.id),
                idempotency_key=secrets.token_hex(8),
            )
        )
        auth = v1.AuthenticatorStub(notify)
        deliveries = IssueDeliveries(
            v1.ModelStub(to_model), auth, ActingFor(auth),
            public_url="https://bugs.example.test", notify_authors=False,
        )  # fmt: skip
        batch = Batch()
        await deliveries.add(issue.id, [(issue.version, ADMIN.user_id)], [], batch)
    finally:
        for channel in (web, notify, to_model):
            channel.close()

    mails = [d for d in batch.deliveries if d.channel == "email"]
    assert len(addresses) == PEOPLE
    assert sorted(d.recipient for d in mails) == sorted(addresses)
    assert {d.message.reason for d in mails} == {Reason.COMPONENT}
    # Each person's own link: the tokens (asked in parts too) all came back.
    assert len({d.message.unsubscribe_url for d in mails}) == PEOPLE


async def test_a_comment_mentioning_more_people_than_one_look_up_takes_is_mailed(
    bugless_stack: LocalStack, model: v1.ModelStub
) -> None:
    """A comment @mentioning 1,007 names (one a real person's, last) mails that person.

    Before, the names went to the Authenticator in one LookupUsers, refused
    above MAX_USER_LOOKUP: the batch failed at every try.
    """
    tag = secrets.token_hex(3)
    await asyncio.to_thread(
        bugless_stack.add_user, f"mia{tag}", "pw-" + tag * 3, email=f"mia{tag}@example.test"
    )
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"chatty-{tag}")
    )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(title=f"Chatty {tag}", component_id=component.id),
            idempotency_key=secrets.token_hex(8),
        )
    )
    names = [f"@nobody{tag}n{n:04d}" for n in range(MAX_USER_LOOKUP + 6)]
    said = await model.change_issue(
        v1.ChangeIssueRequest(
            caller=ADMIN,
            issue_id=issue.id,
            expected_version=issue.version,
            comment=" ".join([*names, f"@mia{tag}"]),
        )
    )
    assert said.entry is not None
    notify = bugless_stack.client_address("auth", identity="notify").channel()
    to_model = bugless_stack.client_address("model", identity="notify").channel()
    try:
        auth = v1.AuthenticatorStub(notify)
        deliveries = IssueDeliveries(
            v1.ModelStub(to_model), auth, ActingFor(auth),
            public_url="https://bugs.example.test", notify_authors=False,
        )  # fmt: skip
        batch = Batch()
        await deliveries.add(issue.id, [(said.entry.version, ADMIN.user_id)], [], batch)
    finally:
        for channel in (notify, to_model):
            channel.close()

    assert [(d.recipient, d.message.reason) for d in batch.deliveries] == [
        (f"mia{tag}@example.test", Reason.MENTIONED)
    ]


async def test_a_digest_holding_more_entries_than_one_call_takes_is_rendered_again_and_checked(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    """dora (daily digest) holds a mail of each of 1,005 comments; the first is redacted.

    The consumer renders again every waiting message about the entries from
    the redacted comment to the redaction (IssueDeliveries.render_again), and
    the worker's check before sending asks which entries its claimed digest
    mails quote are redacted (RedactionRecheck): both named every entry in
    one GetNotificationViews, which the Model refuses above 1,000 entries,
    so the consumer's batch failed at every try, holding up all mail after
    it, and the digests' attempts failed until they were dead letters.
    """
    tag = secrets.token_hex(3)
    dora = await asyncio.to_thread(
        bugless_stack.add_user, f"dora{tag}", "pw-" + tag * 3, email=f"dora{tag}@example.test"
    )
    await model.update_notification_settings(
        v1.UpdateNotificationSettingsRequest(
            caller=v1.Caller(user_id=dora["user_id"]),
            settings=v1.NotificationSettings(channel="email", digest=v1.DigestMode.DAILY),
        )
    )
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"busy-{tag}")
    )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN,
            fields=v1.IssueFields(title=f"Busy {tag}", component_id=component.id),
            cc=[dora["user_id"]],
            idempotency_key=secrets.token_hex(8),
        )
    )
    secret = f"hunter2-{tag}"
    version, versions = issue.version, []
    for n in range(COMMENTS):
        said = await model.change_issue(
            v1.ChangeIssueRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=version,
                comment=f"the password is {secret}" if n == 0 else f"note {n}",
            )
        )
        assert said.issue is not None
        version = said.issue.version
        versions.append(version)
    notify = bugless_stack.client_address("auth", identity="notify").channel()
    to_model = bugless_stack.client_address("model", identity="notify").channel()
    try:
        auth, notifier_model = v1.AuthenticatorStub(notify), v1.ModelStub(to_model)
        deliveries = IssueDeliveries(
            notifier_model, auth, ActingFor(auth),
            public_url="https://bugs.example.test", notify_authors=False,
        )  # fmt: skip
        batch = Batch()
        for start in range(0, COMMENTS, 100):  # as feed batches of 100 changes
            part = versions[start : start + 100]
            await deliveries.add(issue.id, [(v, ADMIN.user_id) for v in part], [], batch)
        assert len(batch.digest) == COMMENTS, "dora's mails, kept for her digest"
        async with pool.acquire() as conn, conn.transaction():
            await DigestStore(queue.schema).add(conn, batch.digest)
        redacted = await model.redact(
            v1.RedactRequest(
                caller=ADMIN,
                issue_id=issue.id,
                expected_version=version,
                target=v1.RedactionTarget.COMMENT,
                entry_version=versions[0],
            )
        )
        assert redacted.entry is not None
        first = f"change-{issue.id}-{versions[0]}/email/{dora['user_id']}"

        # The consumer reads the redaction: every item from the comment on waits.
        async with pool.acquire() as conn:
            waiting, _ = await WaitingMessages(queue.schema).about(
                conn, Redaction(issue.id, versions[0], redacted.entry.version)
            )
        assert len(waiting) == COMMENTS
        again = await deliveries.render_again(issue.id, waiting, webhooks=[], parents={})
        assert sorted(again) == sorted(w.id for ws in waiting.values() for w in ws)
        assert not [i for i, d in again.items() if secret in d.message.text + d.message.html]
        assert REDACTED in again[first].message.text

        # Not stored (as if no consumer had read it): the digest mails put
        # together from the items still quote the comment; the check finds it.
        store, cut = DigestStore(queue.schema), datetime.datetime.now(datetime.UTC)
        while await store.send(pool, queue, cut):
            pass
        async with pool.acquire() as conn:
            claim = await queue.claim_due(
                conn, worker_id="w1", channels=["email"], limit=20, lease_seconds=60
            )
        mails = -(-COMMENTS // MAX_ITEMS)
        assert len(claim.deliveries) == mails
        quoted = {v for c in claim.deliveries for v in _quoted(c.notification.message)}
        assert len(quoted) > MAX_NOTIFICATION_VIEWS
        recheck = RedactionRecheck(
            pool, queue, notifier_model, deliveries, ComponentWebhookStore(queue.schema)
        )
        verdicts = await recheck(claim.deliveries)
    finally:
        for channel in (notify, to_model):
            channel.close()
    holding = [c.delivery_id for c in claim.deliveries if secret in c.notification.message.text]
    assert len(holding) == 1, "the oldest digest lists the comment"
    assert list(verdicts) == holding, "only it is rendered again; the others go as they are"
    replacement = verdicts[holding[0]]
    assert isinstance(replacement, NotificationMessage)
    assert secret not in replacement.text + replacement.html
    assert REDACTED in replacement.text


def _quoted(message: NotificationMessage) -> set[int]:
    """The entries a digest mail's items quote."""
    return {v for _, item in digest_items(message) for v in item.quoted_versions}


async def test_an_import_longer_than_one_call_takes_leaves_the_change_after_it_mailed(
    bugless_stack: LocalStack, model: v1.ModelStub
) -> None:
    """An ImportIssue of 1,003 entries is one feed change; the comment after it mails cara.

    The consumer hands IssueDeliveries.add every entry of a batch's issue
    together, and add read them in one GetNotificationViews, refused above
    MAX_NOTIFICATION_VIEWS entries: --feed-batch bounds the changes of a
    batch (at most 1,000), not the entries of one issue, and an import
    writes the issue's whole history in one change. So its batch failed at
    every try and no mail went out after it. The entries here are the
    feed's own, as the consumer groups them.
    """
    tag = secrets.token_hex(3)
    cara = await asyncio.to_thread(
        bugless_stack.add_user, f"cara{tag}", "pw-" + tag * 3, email=f"cara{tag}@example.test"
    )
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"moved-in-{tag}")
    )
    then = datetime.datetime(2023, 3, 1, 9, 0, tzinfo=datetime.UTC)
    notify = bugless_stack.client_address("auth", identity="notify").channel()
    to_model = bugless_stack.client_address("model", identity="notify").channel()
    to_import = bugless_stack.client_address("model", identity="import").channel()
    try:
        notifier_model = v1.ModelStub(to_model)
        head = await call(
            notifier_model.read_feed, v1.ReadFeedRequest(caller=NOTIFIER, head_only=True)
        )
        importer = bugless_stack.acting_model(v1.ModelStub(to_import), as_requested=True)
        imported = await importer.import_issue(
            v1.ImportIssueRequest(
                caller=v1.Caller(user_id=ADMIN.user_id, admin=True, import_issues=True),
                external_id=f"trac:{tag}",
                fields=v1.IssueFields(title=f"Long story {tag}", component_id=component.id),
                reporter=cara["user_id"],
                cc=[cara["user_id"]],
                created_at=then,
                history=[
                    v1.ImportedEntry(
                        author=cara["user_id"],
                        created_at=then + datetime.timedelta(minutes=n + 1),
                        comment=f"Note {n}.",
                    )
                    for n in range(IMPORTED)
                ],
            )
        )
        assert imported.issue is not None
        said = await model.change_issue(
            v1.ChangeIssueRequest(
                caller=ADMIN,
                issue_id=imported.issue.id,
                expected_version=imported.issue.version,
                comment=f"Still happens here {tag}.",
            )
        )
        assert said.entry is not None
        feed = await call(
            notifier_model.read_feed,
            v1.ReadFeedRequest(
                caller=NOTIFIER, after_position=head.head_position, max_changes=1000
            ),
        )
        entries = [
            (e.version, change.author)
            for change in feed.changes
            for e in change.entries
            if e.issue_id == imported.issue.id
        ]
        one_change = max(
            sum(e.issue_id == imported.issue.id for e in change.entries) for change in feed.changes
        )
        auth = v1.AuthenticatorStub(notify)
        deliveries = IssueDeliveries(
            notifier_model, auth, ActingFor(auth),
            public_url="https://bugs.example.test", notify_authors=False,
        )  # fmt: skip
        batch = Batch()
        await deliveries.add(imported.issue.id, entries, [], batch)
    finally:
        for channel in (notify, to_model, to_import):
            channel.close()

    # One change alone carries more entries of the issue than one call takes.
    assert one_change > MAX_NOTIFICATION_VIEWS
    assert len(entries) == IMPORTED + 2  # the creation, the history, the comment
    assert [(d.recipient, d.delivery_id) for d in batch.deliveries] == [
        (
            f"cara{tag}@example.test",
            f"change-{imported.issue.id}-{said.entry.version}/email/{cara['user_id']}",
        )
    ]
    assert f"Still happens here {tag}." in batch.deliveries[0].message.text


def test_feed_batch_is_bounded_by_what_one_notification_views_call_names() -> None:
    """--feed-batch takes MAX_NOTIFICATION_VIEWS and refuses one more, naming the bound.

    IssueDeliveries._check names an issue's component moves of a batch in
    one GetNotificationViews, relying on a batch holding at most that many
    changes: the bound is the Model's constant, not a copy of its value.
    """
    address = ServiceAddress.parse("127.0.0.1:1")

    def settings(feed_batch: int) -> NotifierSettings:
        return NotifierSettings(
            model=address,
            auth=address,
            database_url="postgresql://nobody@127.0.0.1:1/none",
            secret_keys=(),
            feed_batch=feed_batch,
            grpc=GrpcServerSettings(insecure_local=True),
        )

    assert settings(MAX_NOTIFICATION_VIEWS).feed_batch == MAX_NOTIFICATION_VIEWS
    with pytest.raises(ValueError, match=f"between 1 and {MAX_NOTIFICATION_VIEWS}$"):
        settings(MAX_NOTIFICATION_VIEWS + 1)
