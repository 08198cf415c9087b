"""A saved search that cannot be run now keeps its matches: an outage is no "stopped matching".

The matcher searches as each subscriber, with an assertion the
Authenticator issues for them. With the Authenticator away (or the Model,
or a call timing out) nothing is known of which issues match; taking that
for "matches nothing" told every subscriber that each issue their search
matched stopped matching, and dropped the match rows. Real Model,
Authenticator and PostgreSQL; the Authenticator away is an address nothing
listens on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket

import asyncpg
import pytest
from notify_support import judge_batch, seed_round

from bugless_core.clients import ActingFor, acting_model
from bugless_core.errors import Unavailable
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import NOTIFIER
from bugless_notify._saved_search_store import MatchChanges, MatchStore
from bugless_notify._saved_searches import SEEDS_PER_ROUND, SavedSearchMatcher, SeedBudget
from bugless_notify.queue import DeliveryQueue
from bugless_proto import v1

ADMIN = v1.Caller(user_id="test-admin", admin=True)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_authenticator_outage_is_retried_not_taken_for_matching_nothing(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    tag = secrets.token_hex(3)
    created = await asyncio.to_thread(bugless_stack.add_user, f"sam{tag}", "pw-" + tag * 3)
    sam = v1.Caller(user_id=str(created["user_id"]))
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"outage-{tag}")
    )
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=sam, name=f"urgent-{tag}", query=f"componentid:{component.id} p:p0"
        )
    )
    await model.set_saved_search_subscription(
        v1.SetSavedSearchSubscriptionRequest(caller=sam, saved_search_id=search.id, subscribed=True)
    )
    model_address = bugless_stack.client_address("model", identity="notify")
    auth_address = bugless_stack.client_address("auth", identity="notify")
    away = dataclasses.replace(auth_address, port=_closed_port())
    channels = [model_address.channel(), auth_address.channel(), away.channel()]
    try:
        notifier_model = v1.ModelStub(channels[0])
        auth, auth_away = (v1.AuthenticatorStub(c) for c in channels[1:])

        def matcher(assertions: v1.AuthenticatorStub) -> SavedSearchMatcher:
            acting = acting_model(notifier_model, ActingFor(assertions))
            return SavedSearchMatcher(notifier_model, acting, auth, NOTIFIER, queue.schema)

        async with pool.acquire() as conn:
            # Subscribed before the issue: seeded without it, as a round does.
            subscriptions = await seed_round(matcher(auth), conn, queue.schema)
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
                matcher(auth), conn, queue.schema, [issue.id], subscriptions
            )
            assert (sam.user_id, search.name) in told[issue.id], "a new match"
            assert key in first.added

            during = MatchChanges()
            with pytest.raises(Unavailable):
                await matcher(auth_away).changes(conn, [issue.id], during, subscriptions)
            assert key not in during.removed

            told, after = await judge_batch(
                matcher(auth), conn, queue.schema, [issue.id], subscriptions
            )
            assert (sam.user_id, search.name) not in told.get(issue.id, [])
            assert key not in after.removed
    finally:
        for channel in channels:
            channel.close()


async def test_a_seed_that_cannot_be_answered_now_holds_up_no_other_subscription(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    """A seed is put off, not raised: raised, it failed every round before the feed was read.

    Seeds run at the start of each round, before ReadFeed. A seed the
    Model could not answer now (its search over every issue timing out, the
    Authenticator away for the names it resolves) was raised as
    ``Unavailable`` and failed the round, at every round while it lasted:
    one subscriber's slow search stopped everyone's mail. Here the names of
    cora's query cannot be resolved (the Authenticator the matcher resolves
    names with is away) while sam's query names no one.
    """
    tag = secrets.token_hex(3)
    users = {
        name: str(
            (await asyncio.to_thread(bugless_stack.add_user, f"{name}{tag}", "pw-" + tag * 3))[
                "user_id"
            ]
        )
        for name in ("sam", "cora")
    }
    sam, cora = (v1.Caller(user_id=users[n]) for n in ("sam", "cora"))
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"seed-away-{tag}")
    )
    issue = await model.create_issue(
        v1.CreateIssueRequest(
            caller=sam,
            fields=v1.IssueFields(
                title=f"urgent {tag}", component_id=component.id, priority=v1.Priority.P0
            ),
        )
    )
    searches = {}
    for caller, query in (
        (sam, f"componentid:{component.id} p:p0"),
        (cora, f"componentid:{component.id} reporter:sam{tag}"),
    ):
        searches[caller.user_id] = await model.create_saved_search(
            v1.CreateSavedSearchRequest(caller=caller, name=f"watch-{tag}", query=query)
        )
        await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=caller, saved_search_id=searches[caller.user_id].id, subscribed=True
            )
        )
    sam_key = (searches[sam.user_id].id, sam.user_id)
    cora_key = (searches[cora.user_id].id, cora.user_id)
    model_address = bugless_stack.client_address("model", identity="notify")
    auth_address = bugless_stack.client_address("auth", identity="notify")
    away = dataclasses.replace(auth_address, port=_closed_port())
    channels = [model_address.channel(), auth_address.channel(), away.channel()]
    try:
        notifier_model = v1.ModelStub(channels[0])
        auth, auth_away = (v1.AuthenticatorStub(c) for c in channels[1:])
        acting = acting_model(notifier_model, ActingFor(auth))
        # Time to seed every subscription new to this queue in one round: the
        # session's earlier tests' come first (lower ids), and a budget spent
        # before sam's (test_saved_search_backlog's 400) left it unseeded.
        whole = SeedBudget(seconds=600.0)
        names_away = SavedSearchMatcher(
            notifier_model, acting, auth_away, NOTIFIER, queue.schema, seed_budget=whole
        )
        async with pool.acquire() as conn:
            prepared = await names_away.prepare(conn)
            ready = {
                (s.saved_search.id, s.user_id) for s in prepared.subscriptions if s.saved_search
            }
            assert sam_key in ready
            assert sam_key in prepared.seeds.seeded
            assert (*sam_key, issue.id) in prepared.seeds.added
            assert cora_key not in ready
            assert cora_key not in prepared.seeds.seeded
            # Put off, not tried again at the next (idle, two-second) round.
            again = await names_away.prepare(conn)
            assert cora_key not in again.seeds.seeded
            # Once the names resolve again, a later round seeds it.
            answered = SavedSearchMatcher(
                notifier_model, acting, auth, NOTIFIER, queue.schema, seed_budget=whole
            )
            later = await answered.prepare(conn)
            assert cora_key in later.seeds.seeded
            assert (*cora_key, issue.id) in later.seeds.added
    finally:
        for channel in channels:
            channel.close()


async def test_a_burst_of_new_subscriptions_is_seeded_a_wave_per_round(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    """A round whose SeedBudget is spent after its first wave seeds SEEDS_PER_ROUND at most.

    Each seed searches every issue as its subscriber; seeding a burst of new
    subscriptions (a script subscribing a team, a notifier database restored)
    in one round held every mail of the notifier until the last was done.
    The rest are seeded in the rounds after, and each is judged once seeded
    (how much more a round seeds while its budget lasts:
    ``test_saved_search_backlog.py``).
    """
    tag = secrets.token_hex(3)
    created = await asyncio.to_thread(bugless_stack.add_user, f"burst{tag}", "pw-" + tag * 3)
    user = v1.Caller(user_id=str(created["user_id"]))
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"burst-{tag}")
    )
    mine: set[tuple[int, str]] = set()
    for n in range(SEEDS_PER_ROUND + 2):
        search = await model.create_saved_search(
            v1.CreateSavedSearchRequest(
                caller=user, name=f"burst-{tag}-{n}", query=f"componentid:{component.id} p:p{n % 5}"
            )
        )
        await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=user, saved_search_id=search.id, subscribed=True
            )
        )
        mine.add((search.id, user.user_id))
    channels = [
        bugless_stack.client_address(name, identity="notify").channel()
        for name in ("model", "auth")
    ]
    try:
        notifier_model, auth = v1.ModelStub(channels[0]), v1.AuthenticatorStub(channels[1])
        acting = acting_model(notifier_model, ActingFor(auth))
        matcher = SavedSearchMatcher(
            notifier_model, acting, auth, NOTIFIER, queue.schema, seed_budget=SeedBudget(0.0)
        )
        seeded: set[tuple[int, str]] = set()
        async with pool.acquire() as conn:
            for _ in range(200):  # the session's other subscriptions are new here too
                prepared = await matcher.prepare(conn)
                assert len(prepared.seeds.seeded) <= SEEDS_PER_ROUND
                await MatchStore(queue.schema).write(conn, prepared.seeds)
                seeded |= prepared.seeds.seeded
                ready = {
                    (s.saved_search.id, s.user_id) for s in prepared.subscriptions if s.saved_search
                }
                assert ready >= prepared.seeds.seeded
                if mine <= seeded:
                    break
        assert mine <= seeded
    finally:
        for channel in channels:
            channel.close()
