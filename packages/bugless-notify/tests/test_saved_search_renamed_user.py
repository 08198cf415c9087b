"""A saved search naming a person renamed since keeps its matches: no false "stopped matching".

A query's usernames are resolved when it runs; once a person it names is
renamed, ``cc:old-name`` names nobody and the query no longer resolves,
through no act of its subscriber. The matcher took that for "matches
nothing" and told the subscriber that each issue it matched stopped
matching (and dropped the match rows). Real Model, Authenticator and
PostgreSQL; the rename is the ``bugless auth user rename`` command's.
"""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
from notify_support import judge_batch, seed_round

from bugless_core.clients import ActingFor, acting_model
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import NOTIFIER
from bugless_notify._saved_searches import SavedSearchMatcher
from bugless_notify.queue import DeliveryQueue
from bugless_proto import v1

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def test_a_person_the_query_names_renamed_keeps_the_matches(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    tag = secrets.token_hex(3)
    users = {}
    for name in ("sam", "zed"):
        created = await asyncio.to_thread(bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3)
        users[name] = str(created["user_id"])
    sam = v1.Caller(user_id=users["sam"])
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"renamed-{tag}")
    )
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=sam,
            name=f"zed-or-urgent-{tag}",
            query=f"componentid:{component.id} (cc:zed{tag} OR p:p0)",
        )
    )
    await model.set_saved_search_subscription(
        v1.SetSavedSearchSubscriptionRequest(caller=sam, saved_search_id=search.id, subscribed=True)
    )
    channels = [
        bugless_stack.client_address("model", identity="notify").channel(),
        bugless_stack.client_address("auth", identity="notify").channel(),
    ]
    try:
        notifier_model = v1.ModelStub(channels[0])
        auth = v1.AuthenticatorStub(channels[1])

        def matcher() -> SavedSearchMatcher:
            acting = acting_model(notifier_model, ActingFor(auth))
            return SavedSearchMatcher(notifier_model, acting, auth, NOTIFIER, queue.schema)

        async with pool.acquire() as conn:
            # Subscribed before the issue: seeded without it, as a round does.
            subscriptions = await seed_round(matcher(), conn, queue.schema)
            issue = await model.create_issue(
                v1.CreateIssueRequest(
                    caller=sam,
                    fields=v1.IssueFields(
                        title=f"urgent {tag}", component_id=component.id, priority=v1.Priority.P0
                    ),
                )
            )
            key = (search.id, sam.user_id, issue.id)
            told, first = await judge_batch(
                matcher(), conn, queue.schema, [issue.id], subscriptions
            )
            assert key in first.added
            assert (sam.user_id, search.name) in told[issue.id]
            await asyncio.to_thread(
                bugless_stack.run_bugless, "auth", "user", "rename", f"zed{tag}", f"zoe{tag}"
            )
            for _ in range(100):  # the Authenticator's replicas hear of it from their feed
                found = await auth.lookup_users(v1.LookupUsersRequest(usernames=[f"zed{tag}"]))
                if not found.users:
                    break
                await asyncio.sleep(0.1)
            assert not found.users, "the old name names nobody now"

            told, after = await judge_batch(
                matcher(), conn, queue.schema, [issue.id], subscriptions
            )
            assert (sam.user_id, search.name) not in told.get(issue.id, [])
            assert key not in after.removed
    finally:
        for channel in channels:
            channel.close()
