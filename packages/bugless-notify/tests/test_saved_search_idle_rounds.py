"""An idle round of the consumer asks the Model one small call and its queue nothing.

Every round lists the saved-search subscriptions before it reads the feed,
so that each batch is judged against what matched before it
(:mod:`bugless_notify._saved_searches`). It listed every subscription and
read every ``saved_search_seen`` row at each round, idle ones too: with
tens of thousands of subscriptions, every two seconds, a steady load on the
Model and the queue database for nothing. Now a round that left nothing to
seed is reused while the Model's version of the subscriptions stays the
same; any change a list would show (subscribing, unsubscribing, a search
edited) is listed and seeded at the next round. Real Model, Authenticator
and PostgreSQL; the calls and statements are counted where they are sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from grpclib.client import Channel
from notify_support import seed_round

from bugless_core.clients import ActingFor, acting_model
from bugless_dev.processes import spawn
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import NOTIFIER
from bugless_notify._saved_search_store import MatchStore
from bugless_notify._saved_searches import RELIST_SECONDS, Prepared, SavedSearchMatcher
from bugless_notify.queue import DeliveryQueue
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: ``bugless model serve`` as the release before the subscriptions' version.
PREVIOUS = Path(__file__).with_name("model_before_subscriptions_version.py")
SERVE = ("model", "serve", "--port", "0")


class CountedModel(v1.ModelStub):
    """The real Model stub, keeping each ListSavedSearchSubscriptions answer it got."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self.listed: list[v1.ListSavedSearchSubscriptionsResponse] = []

    async def list_saved_search_subscriptions(
        self, message: v1.ListSavedSearchSubscriptionsRequest, **kwargs: Any
    ) -> v1.ListSavedSearchSubscriptionsResponse:
        answer = await super().list_saved_search_subscriptions(message, **kwargs)
        self.listed.append(answer)
        return answer


@asynccontextmanager
async def statements(conn: Any) -> AsyncIterator[list[str]]:
    """The statements ``conn`` sends inside the block (asyncpg's query logger)."""
    sent: list[str] = []

    def logged(record: Any) -> None:
        sent.append(record.query)

    conn.add_query_logger(logged)
    try:
        yield sent
    finally:
        await asyncio.sleep(0.1)  # the logger is called soon after each statement, not in it
        conn.remove_query_logger(logged)


def _keys(prepared: Prepared) -> set[tuple[int, str]]:
    return {(s.saved_search.id, s.user_id) for s in prepared.subscriptions if s.saved_search}


async def _round(matcher: SavedSearchMatcher, conn: Any, schema: str) -> Prepared:
    """One round's preparation, its seeds committed as the consumer commits them."""
    prepared = await matcher.prepare(conn)
    await MatchStore(schema).write(conn, prepared.seeds)
    return prepared


async def test_an_idle_round_asks_one_call_and_reads_no_seen_row_until_a_change(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    """Before, every round listed every page and read every seeded subscription."""
    tag = secrets.token_hex(3)
    sam = v1.Caller(user_id=f"sam-{tag}")
    first, second = [
        await model.create_saved_search(
            v1.CreateSavedSearchRequest(caller=sam, name=f"{n}-{tag}", query="is:open")
        )
        for n in ("first", "second")
    ]

    async def subscribe(search: v1.SavedSearch, subscribed: bool = True) -> None:
        await model.set_saved_search_subscription(
            v1.SetSavedSearchSubscriptionRequest(
                caller=sam, saved_search_id=search.id, subscribed=subscribed
            )
        )

    await subscribe(first)
    now = [1_000_000.0]
    channels = [
        bugless_stack.client_address("model", identity="notify").channel(),
        bugless_stack.client_address("auth", identity="notify").channel(),
    ]
    try:
        counted = CountedModel(channels[0])
        auth = v1.AuthenticatorStub(channels[1])
        acting = acting_model(counted, ActingFor(auth))
        matcher = SavedSearchMatcher(
            counted, acting, auth, NOTIFIER, queue.schema, clock=lambda: now[0]
        )
        async with pool.acquire() as conn:
            await seed_round(matcher, conn, queue.schema)
            before = await _round(matcher, conn, queue.schema)
            assert (first.id, sam.user_id) in _keys(before)

            counted.listed.clear()
            async with statements(conn) as sent:
                idle = await _round(matcher, conn, queue.schema)
            assert [a.subscriptions for a in counted.listed] == [[]], "one call, no rows"
            assert sent == [], "nothing read from the queue"
            assert _keys(idle) == _keys(before)
            assert [s.saved_search.query for s in idle.subscriptions if s.saved_search]

            await subscribe(second)
            counted.listed.clear()
            changed = await _round(matcher, conn, queue.schema)
            assert any(a.subscriptions for a in counted.listed), "listed again"
            assert (second.id, sam.user_id) in changed.seeds.seeded
            assert _keys(changed) == _keys(before) | {(second.id, sam.user_id)}
            await seed_round(matcher, conn, queue.schema)  # settles after the seed
            counted.listed.clear()
            assert _keys(await _round(matcher, conn, queue.schema)) == _keys(changed)
            assert [a.subscriptions for a in counted.listed] == [[]]

            await model.update_saved_search(
                v1.UpdateSavedSearchRequest(
                    caller=sam,
                    saved_search=v1.SavedSearch(id=first.id, query="is:closed"),
                    update_mask=FieldMask(paths=["query"]),
                )
            )
            edited = await _round(matcher, conn, queue.schema)
            queries = {
                s.saved_search.id: s.saved_search.query
                for s in edited.subscriptions
                if s.saved_search
            }
            assert queries[first.id] == "is:closed", "the edited query is judged at once"

            await subscribe(second, subscribed=False)
            left = await _round(matcher, conn, queue.schema)
            assert (second.id, sam.user_id) in left.seeds.forgotten
            assert (second.id, sam.user_id) not in _keys(left)

            await seed_round(matcher, conn, queue.schema)
            now[0] += RELIST_SECONDS
            counted.listed.clear()
            await _round(matcher, conn, queue.schema)
            assert any(a.subscriptions for a in counted.listed), "listed whole after a minute"
            counted.listed.clear()
            matcher.forget_settled()
            await _round(matcher, conn, queue.schema)
            assert any(a.subscriptions for a in counted.listed), "and when the consumer relocks"
    finally:
        for channel in channels:
            channel.close()


async def test_a_model_before_the_version_is_listed_whole_at_every_round(
    bugless_stack: LocalStack,
    model: v1.ModelStub,
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    tmp_path: Path,
) -> None:
    """A notifier upgraded before its Model: each round lists every subscription, as before."""
    tag = secrets.token_hex(3)
    sam = v1.Caller(user_id=f"sam-{tag}")
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(caller=sam, name=f"old-{tag}", query="is:open")
    )
    ready = tmp_path / "previous-model.json"
    process = spawn(
        "model-previous",
        [sys.executable, str(PREVIOUS), *SERVE, "--ready-file", str(ready)],
        bugless_stack.env,
        tmp_path / "previous-model.log",
        ready_file=ready,
    )
    previous = await asyncio.to_thread(bugless_stack.wait_started, "model", process)
    address = bugless_stack.client_address("model", identity="notify")
    channels = [
        dataclasses.replace(address, port=previous.port).channel(),
        bugless_stack.client_address("auth", identity="notify").channel(),
    ]
    try:
        counted = CountedModel(channels[0])
        auth = v1.AuthenticatorStub(channels[1])
        matcher = SavedSearchMatcher(
            counted, acting_model(counted, ActingFor(auth)), auth, NOTIFIER, queue.schema
        )
        async with pool.acquire() as conn:
            await seed_round(matcher, conn, queue.schema)
            for _ in range(2):
                counted.listed.clear()
                async with statements(conn) as sent:
                    await _round(matcher, conn, queue.schema)
                assert all(a.version == 0 for a in counted.listed)
                assert sum(len(a.subscriptions) for a in counted.listed) > 0, "listed whole"
                assert sent, "what is seeded is read"
            await model.set_saved_search_subscription(
                v1.SetSavedSearchSubscriptionRequest(
                    caller=sam, saved_search_id=search.id, subscribed=True
                )
            )
            prepared = await _round(matcher, conn, queue.schema)
            assert (search.id, sam.user_id) in prepared.seeds.seeded, "and sees a new one"
    finally:
        for channel in channels:
            channel.close()
        await asyncio.to_thread(bugless_stack.stop_service, previous)
