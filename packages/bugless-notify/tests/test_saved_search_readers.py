"""A subscriber who may no longer read a shared saved search is told nothing more of it.

The Model keeps a subscription when its subscriber stops being a reader
(the owner takes them out of ``readers``, or they leave the group that was
one): it cannot tell who is in a group. The notifier judged it anyway and
mailed them the matches of a query they could no longer read. Now each
listing asks, as each subscriber, which searches they may read
(``bugless_notify._readable``), and leaves the others out: not judged,
their matches forgotten. Real Model, Authenticator (its CLI moves the
group) and PostgreSQL queue; the second test reads a running notifier's mail.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
from notifier_process_support import until_notifier_seeded
from notify_support import judge_batch, seed_round, until

from bugless_core.clients import ActingFor, acting_model
from bugless_dev.stack import LocalStack, RunningService
from bugless_notify._deliveries import NOTIFIER
from bugless_notify._saved_searches import SavedSearchMatcher
from bugless_notify.queue import DeliveryQueue
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.smtp import SmtpSink

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def test_a_reader_taken_out_directly_or_by_leaving_the_group_is_told_no_more(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    tag = secrets.token_hex(3)
    group = f"readers-{tag}"
    ids = {
        name: bugless_stack.add_user(
            f"{name}{tag}",
            "pw-" + secrets.token_hex(8),
            email=f"{name}{tag}@example.test",
            groups=[group] if name in ("carol", "dave") else [],
        )["user_id"]
        for name in ("sam", "bob", "carol", "dave")
    }
    sam = v1.Caller(user_id=ids["sam"])
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"readers-{tag}")
    )
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=sam,
            name=f"shared-{tag}",
            query=f"componentid:{component.id} p:p1",
            readers=[v1.Principal(user=ids["bob"]), v1.Principal(group=group)],
        )
    )
    for name, user_id in ids.items():  # the fixture's Model signs the groups the caller names
        groups = [group] if name in ("carol", "dave") else []
        await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=v1.Caller(user_id=user_id, groups=groups),
                saved_search_id=search.id,
                subscribed=True,
            )
        )
    seen = f'"{queue.schema}".saved_search_seen'
    channels = [
        bugless_stack.client_address("model", identity="notify").channel(),
        bugless_stack.client_address("auth", identity="notify").channel(),
    ]
    try:
        stub = v1.ModelStub(channels[0])
        auth = v1.AuthenticatorStub(channels[1])
        matcher = SavedSearchMatcher(
            stub, acting_model(stub, ActingFor(auth)), auth, NOTIFIER, queue.schema
        )
        async with pool.acquire() as conn:

            async def subscribers() -> set[str]:
                subscriptions = await seed_round(matcher, conn, queue.schema)
                return {
                    s.user_id
                    for s in subscriptions
                    if s.saved_search is not None and s.saved_search.id == search.id
                }

            assert await subscribers() == set(ids.values())

            # The owner takes bob out; carol leaves the group (her sessions end).
            await model.update_saved_search(
                v1.UpdateSavedSearchRequest(
                    caller=sam,
                    saved_search=v1.SavedSearch(id=search.id, readers=[v1.Principal(group=group)]),
                    update_mask=FieldMask(paths=["readers"]),
                )
            )
            assert ids["bob"] not in await subscribers(), "the edit moves the version: next round"
            bugless_stack.run_bugless(
                "auth", "user", "update", f"carol{tag}", "--remove-group", group
            )
            # The notifier's cached assertion for carol still names the group
            # until the Model learns her sessions ended (its assertion refresh,
            # seconds); no version moves, so the relist after that counts it.
            deadline = time.monotonic() + 30
            while ids["carol"] in await subscribers():
                assert time.monotonic() < deadline, "carol still judged 30 s after leaving"
                await asyncio.sleep(1)
                matcher.forget_settled()  # as RELIST_SECONDS would, without the minute
            subscriptions = await seed_round(matcher, conn, queue.schema)
            still = {
                r["user_id"]
                for r in await conn.fetch(
                    f"SELECT user_id FROM {seen} WHERE saved_search_id = $1", search.id
                )
            }
            assert still == {ids["sam"], ids["dave"]}, "bob's and carol's matches are forgotten"

            issue = await model.create_issue(
                v1.CreateIssueRequest(
                    caller=sam,
                    fields=v1.IssueFields(
                        title=f"urgent {tag}", component_id=component.id, priority=v1.Priority.P1
                    ),
                )
            )
            told, _ = await judge_batch(matcher, conn, queue.schema, [issue.id], subscriptions)
            assert sorted(who for who, name in told.get(issue.id, []) if name == search.name) == (
                sorted([ids["sam"], ids["dave"]])
            ), "the owner and the remaining reader are told; bob and carol are not"

            # Shared with bob again: seeded afresh (no mail for what already matched).
            await model.update_saved_search(
                v1.UpdateSavedSearchRequest(
                    caller=sam,
                    saved_search=v1.SavedSearch(
                        id=search.id,
                        readers=[v1.Principal(user=ids["bob"]), v1.Principal(group=group)],
                    ),
                    update_mask=FieldMask(paths=["readers"]),
                )
            )
            assert ids["bob"] in await subscribers()
            again = await seed_round(matcher, conn, queue.schema)
            told, _ = await judge_batch(matcher, conn, queue.schema, [issue.id], again)
            assert [who for who, _ in told.get(issue.id, [])] == []
    finally:
        for channel in channels:
            channel.close()


async def test_a_running_notifier_mails_a_match_to_the_owner_and_readers_left_not_one_taken_out(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    notify_process: tuple[RunningService, list[str]],
    smtp_sink: SmtpSink,
) -> None:
    tag = secrets.token_hex(3)
    group = f"readers-{tag}"
    ids = {
        name: bugless_stack.add_user(
            f"{name}{tag}",
            "pw-" + secrets.token_hex(8),
            email=f"{name}{tag}@example.test",
            groups=[group] if name == "dave" else [],
        )["user_id"]
        for name in ("alice", "sam", "bob", "dave")
    }
    sam = v1.Caller(user_id=ids["sam"])
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"mailed-{tag}")
    )
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=sam,
            name=f"shared-{tag}",
            query=f"componentid:{component.id} p:p1",
            readers=[v1.Principal(user=ids["bob"]), v1.Principal(group=group)],
        )
    )
    for name in ("sam", "bob", "dave"):
        await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=v1.Caller(user_id=ids[name], groups=[group] if name == "dave" else []),
                saved_search_id=search.id,
                subscribed=True,
            )
        )
    for name in ("sam", "bob", "dave"):
        await until_notifier_seeded(bugless_stack, notify_process[1], search.id, ids[name])
    await model.update_saved_search(
        v1.UpdateSavedSearchRequest(
            caller=sam,
            saved_search=v1.SavedSearch(id=search.id, readers=[v1.Principal(group=group)]),
            update_mask=FieldMask(paths=["readers"]),
        )
    )
    flags = notify_process[1]
    schema = flags[flags.index("--schema") + 1]
    conn = await asyncpg.connect(bugless_stack.model_database_url)
    try:

        async def forgotten() -> bool:
            return (
                await conn.fetchval(
                    f'SELECT 1 FROM "{schema}".saved_search_seen '
                    "WHERE saved_search_id = $1 AND user_id = $2",
                    search.id,
                    ids["bob"],
                )
                is None
            )

        await until(forgotten, "the notifier to forget bob's subscription")
    finally:
        await conn.close()

    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=v1.Caller(user_id=ids["alice"]),
            fields=v1.IssueFields(
                title=f"urgent {tag}", component_id=component.id, priority=v1.Priority.P1
            ),
        )
    )
    await smtp_sink.wait_for_async(2, 60)
    await asyncio.sleep(3.0)  # bob's would go with them
    told = sorted(
        (m.recipients[0].split("@")[0], m.message["X-Bugless-Reason"], m.message["Subject"])
        for m in smtp_sink.mails
        if str(issue.id) in str(m.message["Subject"])
    )
    subject = f"[bugless] b/{issue.id}: urgent {tag}"
    assert told == [
        ("dave" + tag, "saved_search", subject),
        ("sam" + tag, "saved_search", subject),
    ], "the owner and the reader still in the group are mailed; bob, taken out, is not"
