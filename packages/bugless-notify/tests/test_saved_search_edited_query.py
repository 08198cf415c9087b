"""A saved search whose query is edited is seeded again before a batch is judged against it.

A subscription is seeded once, when the notifier first sees it, so the issues
that matched before are not mailed as new matches. Its matches were then kept
when its owner edited the query: they were the old query's, and the first
change to each issue of the new query's was mailed as a new match though it
had matched all along (and each of the old query's as no longer matching).
The notifier now records the query it seeded with (``saved_search_seen.query``)
and seeds a subscription again when its query is not that one. Real Model,
Authenticator and PostgreSQL queue.
"""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
from notify_support import judge_batch, seed_round

from bugless_core.clients import ActingFor, acting_model
from bugless_dev.stack import LocalStack
from bugless_notify._deliveries import NOTIFIER
from bugless_notify._saved_search_store import MatchStore
from bugless_notify._saved_searches import SavedSearchMatcher
from bugless_notify.queue import DeliveryQueue
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

ADMIN = v1.Caller(user_id="test-admin", admin=True)


async def _matches(conn: Any, schema: str, search_id: int) -> set[int]:
    rows = await conn.fetch(
        f'SELECT issue_id FROM "{schema}".saved_search_matches WHERE saved_search_id = $1',
        search_id,
    )
    return {r["issue_id"] for r in rows}


async def test_an_edited_query_is_seeded_again_and_its_issues_are_not_mailed_as_new(
    bugless_stack: LocalStack, model: v1.ModelStub, pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    tag = secrets.token_hex(3)
    sam_id = bugless_stack.add_user(
        f"sam{tag}", "pw-" + secrets.token_hex(8), email=f"sam{tag}@example.test"
    )["user_id"]
    sam = v1.Caller(user_id=sam_id)
    component = await model.create_component(
        v1.CreateComponentRequest(caller=ADMIN, name=f"edited-{tag}")
    )

    async def create(title: str, priority: v1.Priority) -> v1.Issue:
        return await model.create_issue(
            v1.CreateIssueRequest(
                caller=sam,
                fields=v1.IssueFields(
                    title=f"{title} {tag}", component_id=component.id, priority=priority
                ),
            )
        )

    urgent, later = await create("urgent", v1.Priority.P1), await create("later", v1.Priority.P2)
    search = await model.create_saved_search(
        v1.CreateSavedSearchRequest(
            caller=sam, name=f"mine-{tag}", query=f"componentid:{component.id} p:p1"
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
        stub = v1.ModelStub(channels[0])
        auth = v1.AuthenticatorStub(channels[1])
        matcher = SavedSearchMatcher(
            stub, acting_model(stub, ActingFor(auth)), auth, NOTIFIER, queue.schema
        )
        async with pool.acquire() as conn:
            await seed_round(matcher, conn, queue.schema)
            assert await _matches(conn, queue.schema, search.id) == {urgent.id}

            await model.update_saved_search(
                v1.UpdateSavedSearchRequest(
                    caller=sam,
                    saved_search=v1.SavedSearch(
                        id=search.id, query=f"componentid:{component.id} p:p2"
                    ),
                    update_mask=FieldMask(paths=["query"]),
                )
            )
            subscriptions = await seed_round(matcher, conn, queue.schema)
            assert await _matches(conn, queue.schema, search.id) == {later.id}, (
                "seeded again with the edited query"
            )
            told, _ = await judge_batch(
                matcher, conn, queue.schema, [urgent.id, later.id], subscriptions
            )
            assert [who for people in told.values() for who in people if sam_id in who] == [], (
                "neither issue changed whether it matches the query sam subscribed to as it is now"
            )
            # The next round, with no edit: nothing to seed, forget or record.
            assert not (await matcher.prepare(conn)).seeds.seeds_anything()
            # Seeded by an earlier notifier (no query recorded): taken as is, and recorded.
            seen = f'"{queue.schema}".saved_search_seen'
            await conn.execute(
                f"UPDATE {seen} SET query = NULL WHERE saved_search_id = $1", search.id
            )
            matcher.forget_settled()
            taken = await matcher.prepare(conn)
            key = (search.id, sam_id)
            assert (taken.seeds.seeded, taken.seeds.forgotten) == (set(), set())
            assert taken.seeds.queries == {key: f"componentid:{component.id} p:p2"}
            assert key in {
                (s.saved_search.id, s.user_id) for s in taken.subscriptions if s.saved_search
            }
            await MatchStore(queue.schema).write(conn, taken.seeds)
            recorded = await conn.fetchval(
                f"SELECT query FROM {seen} WHERE saved_search_id = $1", search.id
            )
            assert recorded == f"componentid:{component.id} p:p2"
            assert await _matches(conn, queue.schema, search.id) == {later.id}
    finally:
        for channel in channels:
            channel.close()
