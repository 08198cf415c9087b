"""An issue with more candidate recipients than one Model or Authenticator call takes: all mailed.

The Model checks at most MAX_NOTIFICATION_VIEWS recipients per
GetNotificationViews and the Authenticator looks up at most MAX_USER_LOOKUP
people per GetUsers; the notifier asked about all of an issue's recipients
in one call of each, so an issue with more (a large component's
subscribers) was refused (INVALID_ARGUMENT) and its batch failed at every
try: no mail for anyone went out after it. Real people (created with the
Authenticator's CreateLocalUser), real subscriptions, and the real Model
and Authenticator over mutual TLS as the notifier reaches them.
"""

from __future__ import annotations

import asyncio
import secrets

from bugless_core.clients import ActingFor, call
from bugless_core.limits import MAX_NOTIFICATION_VIEWS, MAX_USER_LOOKUP
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import Batch, IssueDeliveries
from bugless_notify.render import Reason
from bugless_proto import v1

ADMIN = v1.Caller(user_id="test-admin", admin=True)
#: More people than either call takes.
PEOPLE = max(MAX_NOTIFICATION_VIEWS, MAX_USER_LOOKUP) + 7


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
