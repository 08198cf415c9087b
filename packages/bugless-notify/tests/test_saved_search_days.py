"""A saved search's ``today`` is the day it runs, not the day the notifier first resolved it.

The matcher resolved each query once and kept the result for the process's
life, so ``created>today-1`` held the date of its first run: a notifier up
for a month still found an issue filed a month ago "created since
yesterday", and never told the subscriber it stopped matching. Real
Model, Authenticator and PostgreSQL; the matcher's clock is moved on by a
day, as a notifier running past midnight sees.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
from notify_support import judge_batch, seed_round

from bugless_core.clients import ActingFor, acting_model
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import NOTIFIER
from bugless_notify._saved_searches import SavedSearchMatcher
from bugless_notify.queue import DeliveryQueue
from bugless_proto import v1

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def test_a_relative_day_moves_with_the_clock(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    tag = secrets.token_hex(3)
    created = await asyncio.to_thread(bugless_stack.add_user, f"sam{tag}", "pw-" + tag * 3)
    sam = v1.Caller(user_id=str(created["user_id"]))
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"days-{tag}")
    )
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=sam, name=f"new-{tag}", query=f"created>today-1 component:days-{tag}"
        )
    )
    await model.set_saved_search_subscription(
        v1.SetSavedSearchSubscriptionRequest(caller=sam, saved_search_id=search.id, subscribed=True)
    )
    now = [time.time()]
    channels = [
        bugless_stack.client_address("model", identity="notify").channel(),
        bugless_stack.client_address("auth", identity="notify").channel(),
    ]
    try:
        notifier_model = v1.ModelStub(channels[0])
        auth = v1.AuthenticatorStub(channels[1])
        acting = acting_model(notifier_model, ActingFor(auth))
        matcher = SavedSearchMatcher(
            notifier_model, acting, auth, NOTIFIER, queue.schema, clock=lambda: now[0]
        )
        async with pool.acquire() as conn:
            # Subscribed before the issue: seeded without it, as a round does.
            subscriptions = await seed_round(matcher, conn, queue.schema)
            issue = await model.create_issue(
                v1.CreateIssueRequest(
                    caller=sam,
                    fields=v1.IssueFields(title=f"fresh {tag}", component_id=component.id),
                )
            )
            key = (search.id, sam.user_id, issue.id)
            told, first = await judge_batch(matcher, conn, queue.schema, [issue.id], subscriptions)
            assert key in first.added, "filed today: created since yesterday"
            assert (sam.user_id, search.name) in told[issue.id]

            now[0] += 3 * 86400
            told, later = await judge_batch(matcher, conn, queue.schema, [issue.id], subscriptions)
            assert key in later.removed, "three days on, it was not created since yesterday"
            assert (sam.user_id, search.name) in told[issue.id]
    finally:
        for channel in channels:
            channel.close()
