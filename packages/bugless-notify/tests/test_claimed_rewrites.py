"""The check before sending stores its rendering only over the message it claimed.

The feed consumer renders a waiting message again when it reads a redaction
(``WaitingMessages.replace``), and the worker's check right before an
attempt does the same from what the Model says then
(``DeliveryQueue.rewrite_claimed`` / ``withdraw_claimed``). The two meet on
one row; these interleave the two statements on a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import asyncpg
from notify_support import mail_delivery, until

from bugless_notify._redactions import WaitingMessages
from bugless_notify.queue import ClaimedDelivery, DeliveryQueue, NewDelivery


def _with_text(delivery: NewDelivery, text: str) -> NewDelivery:
    return dataclasses.replace(delivery, message=dataclasses.replace(delivery.message, text=text))


async def _claim_one(conn: asyncpg.Connection, queue: DeliveryQueue) -> ClaimedDelivery:
    claimed = await queue.claim(conn, worker_id="w1", channels=["email"], limit=1, lease_seconds=60)
    assert len(claimed) == 1
    return claimed[0]


async def _stored_text(conn: asyncpg.Connection, queue: DeliveryQueue, delivery_id: str) -> str:
    text: str = await conn.fetchval(
        f"SELECT message ->> 'text' FROM {queue.schema}.deliveries WHERE delivery_id = $1",
        delivery_id,
    )
    return text


async def test_a_rewrite_waiting_on_the_consumers_transaction_does_not_overwrite_its_rendering(
    notify_database: str, queue: DeliveryQueue
) -> None:
    """The consumer holds the row mid-transaction when the worker's rewrite arrives.

    The worker claimed the queued message and rendered it again from what
    the Model said; meanwhile the consumer read a later redaction and is
    storing its own rendering. The worker's UPDATE waits on the consumer's
    row lock; once the consumer commits, the worker's write finds the
    revision moved and writes nothing: its claim still holds the row (so
    the check says CHANGED, not a lost lease), the consumer's text stays,
    and the next claim gets that one and may store over it. Before, the
    worker's older rendering replaced the consumer's and was sent.
    """
    queued = mail_delivery(1)
    consumer = await asyncpg.connect(notify_database)
    worker = await asyncpg.connect(notify_database)
    try:
        await queue.enqueue(worker, [queued])
        claim = await _claim_one(worker, queue)
        assert claim.revision == 0
        newer = _with_text(queued, "the consumer's rendering, after the second redaction")
        older = _with_text(queued, "the worker's rendering, after the first redaction")
        transaction = consumer.transaction()
        await transaction.start()
        await WaitingMessages(queue.schema).replace(
            consumer, [queued.delivery_id], [], {queued.delivery_id: newer}
        )
        rewrite = asyncio.ensure_future(queue.rewrite_claimed(worker, claim, older.message))
        worker_pid = worker.get_server_pid()

        async def waiting_on_the_lock() -> bool:
            return bool(
                await consumer.fetchval(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                    worker_pid,
                )
            )

        await until(waiting_on_the_lock, "the worker's rewrite to wait on the consumer's row lock")
        assert not rewrite.done()
        await transaction.commit()
        assert await asyncio.wait_for(rewrite, 10) is False
        assert await queue.holds(worker, claim)
        assert await _stored_text(worker, queue, queued.delivery_id) == newer.message.text

        # Given back, claimed again: the consumer's rendering, which may now be rewritten.
        assert await queue.release(worker, [claim]) == 1
        assert not await queue.holds(worker, claim)
        again = await _claim_one(worker, queue)
        assert again.revision == 1
        assert again.notification.message.text == newer.message.text
        assert again.notification.attempt == 1
        final = _with_text(queued, "the worker's rendering of the consumer's")
        assert await queue.rewrite_claimed(worker, again, final.message)
        assert await _stored_text(worker, queue, queued.delivery_id) == final.message.text
    finally:
        await consumer.close()
        await worker.close()


async def test_a_withdrawal_after_the_consumers_rewrite_deletes_nothing(
    notify_database: str, queue: DeliveryQueue
) -> None:
    """A row the consumer rewrote since the claim is not withdrawn on the claim's older view."""
    queued = mail_delivery(2)
    conn = await asyncpg.connect(notify_database)
    try:
        await queue.enqueue(conn, [queued])
        claim = await _claim_one(conn, queue)
        newer = _with_text(queued, "the consumer's rendering")
        async with conn.transaction():
            await WaitingMessages(queue.schema).replace(
                conn, [queued.delivery_id], [], {queued.delivery_id: newer}
            )
        assert await queue.withdraw_claimed(conn, claim) is False
        assert await queue.holds(conn, claim)
        stored = await conn.fetchval(
            f"SELECT message::text FROM {queue.schema}.deliveries WHERE delivery_id = $1",
            queued.delivery_id,
        )
        assert json.loads(stored)["text"] == newer.message.text
    finally:
        await conn.close()
