"""A notifier starting on an empty queue database seeds thousands of subscriptions in a few rounds.

A round seeded one wave (SEEDS_PER_ROUND, 16) of new subscriptions before
its feed read, about every two seconds: a notifier starting on an empty
queue database (restored, or a new deployment) with thousands of
subscriptions took minutes, and an unseeded subscription mails nothing
meanwhile. A round now goes on seeding, SEARCHES_AT_ONCE in flight, while
its SeedBudget lasts (seconds since its first seed, matches found), and
leaves the rest to the rounds after. Rounds are counted, not seconds: the
budget is set per test. Real Model, Authenticator and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
import secrets

import asyncpg
from notify_support import until
from prometheus_client import CollectorRegistry

from bugless_core.clients import ActingFor, acting_model
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import NOTIFIER
from bugless_notify._saved_search_store import MatchStore
from bugless_notify._saved_searches import SEEDS_PER_ROUND, SavedSearchMatcher, SeedBudget
from bugless_notify.consumer import ConsumerOptions, FeedConsumer
from bugless_notify.queue import DeliveryQueue
from bugless_proto import v1

ADMIN = v1.Caller(user_id="test-admin", admin=True)
#: Subscriptions of the test's subscriber: more than a dozen waves.
SUBSCRIPTIONS = 200


async def _subscribed(bugless_stack: LocalStack, model: v1.ModelStub) -> set[tuple[int, str]]:
    """SUBSCRIPTIONS subscriptions of one person, each search matching the one issue made."""
    tag = secrets.token_hex(3)
    created = await asyncio.to_thread(bugless_stack.add_user, f"many{tag}", "pw-" + tag * 3)
    user = v1.Caller(user_id=str(created["user_id"]))
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"many-{tag}")
    )
    await model.create_issue(
        v1.CreateIssueRequest(
            caller=ADMIN, fields=v1.IssueFields(title=f"one {tag}", component_id=component.id)
        )
    )

    async def subscription(n: int) -> tuple[int, str]:
        search = await model.create_saved_search(
            v1.CreateSavedSearchRequest(
                caller=user, name=f"many-{tag}-{n}", query=f"componentid:{component.id}"
            )
        )
        await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=user, saved_search_id=search.id, subscribed=True
            )
        )
        return (search.id, user.user_id)

    mine: set[tuple[int, str]] = set()
    for start in range(0, SUBSCRIPTIONS, 20):
        mine |= set(await asyncio.gather(*(subscription(n) for n in range(start, start + 20))))
    return mine


async def _rounds_until_seeded(
    bugless_stack: LocalStack,
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    mine: set[tuple[int, str]],
    budget: SeedBudget,
) -> list[int]:
    """How many of ``mine`` each round seeds, on a fresh queue, until all are."""
    channels = [
        bugless_stack.client_address(name, identity="notify").channel()
        for name in ("model", "auth")
    ]
    try:
        notifier_model, auth = v1.ModelStub(channels[0]), v1.AuthenticatorStub(channels[1])
        acting = acting_model(notifier_model, ActingFor(auth))
        matcher = SavedSearchMatcher(
            notifier_model, acting, auth, NOTIFIER, queue.schema, seed_budget=budget
        )
        per_round: list[int] = []
        seeded: set[tuple[int, str]] = set()
        async with pool.acquire() as conn:
            while not mine <= seeded and len(per_round) < 1000:
                prepared = await matcher.prepare(conn)
                await MatchStore(queue.schema).write(conn, prepared.seeds)
                per_round.append(len(prepared.seeds.seeded & mine))
                unseeded = mine - seeded - prepared.seeds.seeded
                assert prepared.backlog >= len(unseeded), "what is left is counted"
                seeded |= prepared.seeds.seeded
        return per_round
    finally:
        for channel in channels:
            channel.close()


async def test_a_fresh_queue_seeds_every_subscription_in_one_round_its_budget_allows(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    """200 subscriptions (and the session's others, all new to this queue) in one round.

    One wave a round needed at least 13 rounds for these 200 alone.
    """
    mine = await _subscribed(bugless_stack, model)
    per_round = await _rounds_until_seeded(
        bugless_stack, pool, queue, mine, SeedBudget(seconds=600.0)
    )
    waves = math.ceil(SUBSCRIPTIONS / SEEDS_PER_ROUND)
    assert per_round == [SUBSCRIPTIONS], f"one wave a round took {waves} rounds"


async def test_a_round_starts_no_more_seeds_once_its_seeds_found_the_rows_it_allows(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    """With time to spare but room for one match, a round seeds its first wave and little more.

    The round's seeds are committed in one transaction: a backlog whose
    searches match many issues is spread over rounds, not written at once.
    Every one is seeded in the end, each round seeding something.
    """
    mine = await _subscribed(bugless_stack, model)
    per_round = await _rounds_until_seeded(
        bugless_stack, pool, queue, mine, SeedBudget(seconds=600.0, rows=1)
    )
    assert sum(per_round) == SUBSCRIPTIONS
    assert per_round[0] < SUBSCRIPTIONS, "the first round stopped at its rows"
    assert len(per_round) > 1


async def test_the_consumer_exports_its_seed_backlog_until_it_is_seeded(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    """bugless_notify_saved_search_seed_backlog: what an operator watches shrink.

    Before, the backlog a round left was an info log line only: a restored
    queue database's subscriptions mailing nothing until seeded showed on no
    dashboard. The real consumer, on the test's own registry, with room for
    150 matches a round: the 200 subscriptions (one match each, and the module's
    others) take rounds.
    """
    mine = await _subscribed(bugless_stack, model)
    registry = CollectorRegistry()
    channels = [
        bugless_stack.client_address(name, identity="notify").channel()
        for name in ("model", "auth")
    ]
    consumer = FeedConsumer(
        pool,
        queue,
        v1.ModelStub(channels[0]),
        v1.AuthenticatorStub(channels[1]),
        ConsumerOptions(public_url="https://bugs.example.test", schema=queue.schema),
        metrics_registry=registry,
        seed_budget=SeedBudget(seconds=600.0, rows=150),
    )
    seen: list[float] = []

    def backlog() -> float:
        value = registry.get_sample_value("bugless_notify_saved_search_seed_backlog")
        assert value is not None, "the gauge is registered with the consumer"
        if not seen or seen[-1] != value:
            seen.append(value)
        return value

    assert backlog() == 0
    running = asyncio.ensure_future(consumer.run())
    try:
        await until(lambda: backlog() > 0, "a backlog left by the first round")
        await until(lambda: backlog() == 0, "the backlog seeded")
    finally:
        consumer.stop()
        await asyncio.wait_for(running, 30)
        for channel in channels:
            channel.close()
    # 0 before the first round, then shrinking round by round, then 0.
    assert seen[0] == seen[-1] == 0, seen
    assert seen[1:-1] == sorted(seen[1:-1], reverse=True), seen
    seeded = {
        (row["saved_search_id"], row["user_id"])
        for row in await pool.fetch(
            f"SELECT saved_search_id, user_id FROM {queue.schema}.saved_search_seen"
        )
    }
    assert mine <= seeded
