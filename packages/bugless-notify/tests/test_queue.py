"""The delivery queue's rules, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random

import asyncpg
import asyncpg.pool
import pytest
from hypothesis import given
from hypothesis import strategies as st
from notify_support import mail_delivery, webhook_delivery

from bugless_core.errors import InvalidArgument
from bugless_core.migrations import quote_schema
from bugless_core.notification_channel import NotificationMessage
from bugless_notify.digest import digest_items, digest_message
from bugless_notify.queue import (
    ClaimedDelivery,
    DeliveryQueue,
    DeliveryState,
    NewDelivery,
)
from bugless_notify.retry import RetryPolicy


async def _claim(
    conn: asyncpg.pool.PoolConnectionProxy,
    queue: DeliveryQueue,
    *,
    worker: str = "w1",
    limit: int = 10,
    lease: float = 60.0,
    channels: tuple[str, ...] = ("email",),
) -> list[ClaimedDelivery]:
    return await queue.claim(
        conn, worker_id=worker, channels=channels, limit=limit, lease_seconds=lease
    )


async def test_enqueueing_the_same_key_twice_queues_it_once(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    async with pool.acquire() as conn:
        assert await queue.enqueue(conn, [mail_delivery(1), mail_delivery(2)]) == 2
        assert await queue.enqueue(conn, [mail_delivery(2), mail_delivery(3)]) == 1
        counts = await queue.counts(conn)
    assert counts == {DeliveryState.PENDING: 3, DeliveryState.DELIVERED: 0, DeliveryState.DEAD: 0}


async def test_enqueue_belongs_to_the_callers_transaction(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS public.feed_cursor (position bigint)")
        tx = conn.transaction()
        await tx.start()
        await queue.enqueue(conn, [mail_delivery(1)])
        await conn.execute("INSERT INTO public.feed_cursor VALUES (42)")
        await tx.rollback()
        assert await queue.get(conn, mail_delivery(1).delivery_id) is None
        async with conn.transaction():
            await queue.enqueue(conn, [mail_delivery(1)])
            await conn.execute("INSERT INTO public.feed_cursor VALUES (43)")
        assert await queue.get(conn, mail_delivery(1).delivery_id) is not None
        await conn.execute("DROP TABLE public.feed_cursor")


async def test_a_malformed_delivery_is_refused_and_nothing_is_queued(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    bad = dataclasses.replace(mail_delivery(2), recipient="")
    async with pool.acquire() as conn:
        with pytest.raises(InvalidArgument, match=r"deliveries\[1\]\.recipient"):
            await queue.enqueue(conn, [mail_delivery(1), bad])
        with pytest.raises(InvalidArgument, match=r"deliveries\[0\]\.delivery_id"):
            await queue.enqueue(
                conn, [dataclasses.replace(mail_delivery(1), delivery_id="x" * 256)]
            )
        assert (await queue.counts(conn))[DeliveryState.PENDING] == 0


async def test_a_claim_counts_the_attempt_and_keeps_others_off_for_the_lease(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [mail_delivery(n) for n in range(3)])
        claims = await _claim(conn, queue, worker="w1")
        assert [c.notification.recipient for c in claims] == [
            "user0@example.com",
            "user1@example.com",
            "user2@example.com",
        ]
        assert {c.notification.attempt for c in claims} == {1}
        assert await _claim(conn, queue, worker="w2") == []
        record = await queue.get(conn, claims[0].delivery_id)
    assert record is not None
    assert record.claimed_by == "w1"
    assert record.attempts == 1
    assert record.lease_until is not None


async def test_concurrent_claimers_skip_each_others_rows_without_waiting(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    async with pool.acquire() as setup:
        await queue.enqueue(setup, [mail_delivery(n) for n in range(10)])
    async with pool.acquire() as first, pool.acquire() as second:
        async with first.transaction():
            mine = await _claim(first, queue, worker="w1", limit=4)
            # w1's claim is not committed: its rows are locked; w2 must skip them.
            theirs = await asyncio.wait_for(_claim(second, queue, worker="w2", limit=10), 5)
        ids_mine = {c.delivery_id for c in mine}
        ids_theirs = {c.delivery_id for c in theirs}
    assert len(ids_mine) == 4
    assert len(ids_theirs) == 6
    assert not ids_mine & ids_theirs


async def test_an_expired_lease_lets_another_worker_take_the_row(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [mail_delivery(1)])
        (first,) = await _claim(conn, queue, worker="dead-worker", lease=0.2)
        await asyncio.sleep(0.4)
        (second,) = await _claim(conn, queue, worker="w2")
        assert second.delivery_id == first.delivery_id
        assert second.notification.attempt == 2
        # The first holder's late report cannot undo the second claim ...
        assert not await queue.schedule_retry(conn, first, delay_seconds=1, error="late")
        assert not await queue.move_to_dead_letters(conn, first, error="late")
        # ... but its success is still a success (the mail is out).
        assert await queue.mark_delivered(conn, first)
        assert not await queue.mark_delivered(conn, second)
        record = await queue.get(conn, first.delivery_id)
    assert record is not None
    assert record.state is DeliveryState.DELIVERED
    assert record.claimed_by is None


async def test_a_retry_is_due_again_after_its_delay_with_the_error_kept(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [mail_delivery(1)])
        (claim,) = await _claim(conn, queue)
        # One transaction: now() is the same in the three statements, so
        # "not due yet" is checked at the moment the retry was scheduled,
        # however long a loaded machine takes between them (0.3 s did).
        async with conn.transaction():
            assert await queue.schedule_retry(conn, claim, delay_seconds=0.3, error="SMTP 451")
            assert await _claim(conn, queue) == []
            due_in = await queue.seconds_until_due(conn, ["email"])
        assert due_in is not None
        assert 0 < due_in <= 0.3
        await asyncio.sleep(0.35)
        (again,) = await _claim(conn, queue)
        record = await queue.get(conn, claim.delivery_id)
    assert again.notification.attempt == 2
    assert record is not None
    assert record.last_error == "SMTP 451"


async def test_only_the_claimers_channels_are_claimed(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    webhook = dataclasses.replace(mail_delivery(2), channel="pager", recipient="ops")
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [mail_delivery(1), webhook])
        claims = await _claim(conn, queue, channels=("email",))
        assert [c.channel for c in claims] == ["email"]
        assert await queue.seconds_until_due(conn, ["email"]) is not None  # the claimed row
        (other,) = await _claim(conn, queue, channels=("pager",))
    assert other.notification.recipient == "ops"


async def test_dead_letters_are_listed_newest_first_in_pages_and_requeued(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [mail_delivery(n) for n in range(5)])
        for claim in await _claim(conn, queue):
            await queue.move_to_dead_letters(conn, claim, error=f"SMTP 550 for {claim.delivery_id}")
            await asyncio.sleep(0.01)  # distinct finish times
        first = await queue.list_dead(conn, limit=3)
        assert len(first.records) == 3
        assert first.next_before is not None
        rest = await queue.list_dead(conn, limit=3, before=first.next_before)
        names = [r.recipient for r in first.records + rest.records]
        assert names == [f"user{n}@example.com" for n in (4, 3, 2, 1, 0)]
        assert rest.next_before is None
        assert first.records[0].last_error.startswith("SMTP 550")
        assert first.records[0].subject == "[bugless] b/1004: Disk full on /var"
        assert (await queue.list_dead(conn, channel="webhook")).records == []

        moved = await queue.requeue(conn, [first.records[0].delivery_id, "no-such-key"])
        assert moved == 1
        (claim,) = await _claim(conn, queue)
        assert claim.delivery_id == first.records[0].delivery_id
        assert claim.notification.attempt == 1
        assert await queue.discard(conn, [r.delivery_id for r in rest.records]) == 2
        counts = await queue.counts(conn)
    assert counts[DeliveryState.DEAD] == 2
    assert counts[DeliveryState.PENDING] == 1


async def test_released_claims_are_due_at_once_and_not_counted(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [mail_delivery(1), mail_delivery(2)])
        claims = await _claim(conn, queue)
        assert await queue.release(conn, claims) == 2
        again = await _claim(conn, queue)
    assert {c.notification.attempt for c in again} == {1}


async def test_old_delivered_rows_are_purged_and_recent_ones_kept(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [mail_delivery(n) for n in range(4)])
        for claim in await _claim(conn, queue):
            await queue.mark_delivered(conn, claim)
        old = [mail_delivery(0).delivery_id, mail_delivery(1).delivery_id]
        await conn.execute(
            f"UPDATE {queue.schema}.deliveries SET finished_at = now() - interval '20 days' "
            "WHERE delivery_id = ANY($1)",
            old,
        )
        purged = await queue.purge_delivered(conn, older_than_seconds=15 * 86400, batch=1)
        counts = await queue.counts(conn)
    assert purged == 2
    assert counts[DeliveryState.DELIVERED] == 2


async def test_migrating_twice_changes_nothing_and_a_bad_schema_name_is_refused(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    # queue, cursor, matches, digests, component webhooks, delivery revisions, seen searches,
    # the query each was seeded with
    assert await queue.migrate(pool) == 8
    with pytest.raises(InvalidArgument, match="schema"):
        DeliveryQueue("Robert'); DROP TABLE students;--")


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.01, max_value=100),
    spread=st.floats(min_value=1, max_value=1000),
    seed=st.integers(),
)
def test_backoff_grows_exponentially_within_its_jitter_band(
    attempt: int, base: float, spread: float, seed: int
) -> None:
    policy = RetryPolicy(base_seconds=base, max_seconds=base * spread, max_attempts=5)
    cap = min(policy.max_seconds, base * 2.0 ** (attempt - 1))
    delay = policy.backoff(attempt, random.Random(seed))
    assert cap / 2 <= delay <= cap


def test_a_retry_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_seconds"):
        RetryPolicy(base_seconds=10, max_seconds=1)


async def test_a_delivered_digest_keeps_its_mail_but_not_its_items(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    """A digest mail's items (each listed mail whole) are dropped once it is out.

    They are kept to put the digest together again after a redaction, which
    a mail already sent cannot use; kept for the delivered rows' retention
    they doubled what each digest stored. A waiting digest keeps them, and
    another delivery's data is left alone.
    """
    items = [(mail_delivery(n).delivery_id, mail_delivery(n).message) for n in (1, 2)]
    digest = NewDelivery(
        delivery_id="digest-u7-42/email/u7",
        channel="email",
        recipient="u7@example.com",
        recipient_name="U 7",
        message=digest_message("u7", items),
    )
    waiting = dataclasses.replace(digest, delivery_id="digest-u8-43/email/u8")
    hook = webhook_delivery("change-123-4/webhook/e1", "e1")
    stored = f"SELECT message::text FROM {quote_schema(queue.schema)}.deliveries "

    async def kept(conn: asyncpg.pool.PoolConnectionProxy, delivery_id: str) -> NotificationMessage:
        text = await conn.fetchval(stored + "WHERE delivery_id = $1", delivery_id)
        return NotificationMessage.from_json(json.loads(text))

    async with pool.acquire() as conn:
        await queue.enqueue(conn, [digest, waiting, hook])
        claimed = await _claim(conn, queue, channels=("email", "webhook"))
        by_id = {c.delivery_id: c for c in claimed}
        assert await queue.mark_delivered(conn, by_id[digest.delivery_id])
        assert await queue.mark_delivered_many(conn, [by_id[hook.delivery_id]]) == 1
        sent = await kept(conn, digest.delivery_id)
        assert "items" not in sent.data
        assert (sent.subject, sent.text, sent.html) == (
            digest.message.subject,
            digest.message.text,
            digest.message.html,
        )
        assert [i for i, _ in digest_items(await kept(conn, waiting.delivery_id))] == [
            i for i, _ in items
        ]
        assert (await kept(conn, hook.delivery_id)).data == hook.message.data
        record = await queue.get(conn, digest.delivery_id)
    assert record is not None
    assert record.state is DeliveryState.DELIVERED
