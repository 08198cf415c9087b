"""A queued row that cannot be read: a dead letter on its own, never a delay for the others.

Real PostgreSQL and a real SMTP server (aiosmtpd), as in ``test_worker``.
The rows are spoiled the way a deployment can spoil them: a message another
notifier version wrote, or one an operator edited by hand.
"""

from __future__ import annotations

import json
import logging

import asyncpg
import asyncpg.pool
import pytest
from delivery_worker_support import _count_is, _email, _running, _settings, _until
from notify_support import mail_delivery
from prometheus_client import CollectorRegistry

from bugless_core.migrations import quote_schema
from bugless_notify.queue import UNREADABLE, DeliveryQueue, DeliveryRecord, DeliveryState
from bugless_testing.smtp import SmtpSink

#: A message an older or newer notifier could have written, and what reading it raises.
SPOILT = {
    "empty object": ("{}", "KeyError: 'thread_id'"),
    "not an object": ("[1, 2]", "TypeError: the message is a JSON list, not an object"),
    "subject not text": (
        json.dumps({"thread_id": "t1", "subject": 7, "text": "", "html": ""}),
        "TypeError: message.subject is not a string",
    ),
    "invalid thread id": (
        json.dumps({"thread_id": "no spaces!", "subject": "s", "text": "", "html": ""}),
        "ValueError: thread_id: 'no spaces!' must be",
    ),
}


async def _spoil(
    conn: asyncpg.pool.PoolConnectionProxy, queue: DeliveryQueue, key: str, message: str
) -> None:
    await conn.execute(
        f"UPDATE {quote_schema(queue.schema)}.deliveries SET message = $2::jsonb "
        "WHERE delivery_id = $1",
        key,
        message,
    )


async def _record(pool: asyncpg.Pool, queue: DeliveryQueue, key: str) -> DeliveryRecord:
    async with pool.acquire() as conn:
        record = await queue.get(conn, key)
    assert record is not None
    return record


@pytest.mark.parametrize("kind", sorted(SPOILT))
async def test_a_claim_dead_letters_an_unreadable_row_and_returns_the_others(
    pool: asyncpg.Pool, queue: DeliveryQueue, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    message, error = SPOILT[kind]
    bad, *good = [mail_delivery(n) for n in range(4)]
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [bad, *good])  # the bad row first: due first
        await _spoil(conn, queue, bad.delivery_id, message)
        with caplog.at_level(logging.ERROR, logger="bugless.notify"):
            claim = await queue.claim_due(
                conn, worker_id="w1", channels=["email"], limit=10, lease_seconds=300.0
            )
            again = await queue.claim_due(
                conn, worker_id="w2", channels=["email"], limit=10, lease_seconds=0.0
            )
        page = await queue.list_dead(conn)
    assert [c.delivery_id for c in claim.deliveries] == [d.delivery_id for d in good]
    [unreadable] = claim.unreadable
    assert (unreadable.delivery_id, unreadable.channel) == (bad.delivery_id, "email")
    assert unreadable.error.startswith(f"{UNREADABLE}{error}")
    assert again.deliveries == []
    assert again.unreadable == []
    # Kept, with the reason and when, where admins look for dead letters.
    [record] = page.records
    assert record.delivery_id == bad.delivery_id
    assert record.state is DeliveryState.DEAD
    assert record.last_error == unreadable.error
    assert record.finished_at is not None
    assert (record.claimed_by, record.lease_until) == (None, None)
    # Listed all the same, with the subject where there is one to show.
    assert record.subject == ("s" if kind == "invalid thread id" else "")
    [logged] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert bad.delivery_id in logged.getMessage()
    assert logged.exc_info is not None


async def test_an_unreadable_row_holds_up_no_mail_claimed_beside_it_and_is_delivered_once_fixed(
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad, *good = [mail_delivery(n) for n in range(6)]
    async with pool.acquire() as conn:
        await queue.enqueue(conn, [bad, *good])  # one claim takes all six (8 slots)
        await _spoil(conn, queue, bad.delivery_id, "{}")
    registry = CollectorRegistry()

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    # The lease is far longer than the test may wait: a good mail that had to
    # wait out the bad row's lease would never arrive in time.
    settings = _settings(lease_seconds=3600.0)
    with caplog.at_level(logging.ERROR):
        async with _running(pool, queue, {"email": _email(smtp_sink)}, settings, registry):
            mails = await smtp_sink.wait_for_async(5)
            await _until(lambda: _count_is(pool, queue, DeliveryState.DELIVERED, 5), "recorded")
            dead = await _record(pool, queue, bad.delivery_id)
            goods = [await _record(pool, queue, d.delivery_id) for d in good]
            # A later round (woken by a new mail) leaves the dead letter alone.
            async with pool.acquire() as conn:
                await queue.enqueue(conn, [mail_delivery(6)])
            await _until(lambda: _count_is(pool, queue, DeliveryState.DELIVERED, 6), "the 7th")
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]

            # The operator repairs the row (README: "Unreadable rows") and requeues it.
            async with pool.acquire() as conn:
                await _spoil(conn, queue, bad.delivery_id, json.dumps(bad.message.to_json()))
                assert await queue.requeue(conn, [bad.delivery_id]) == 1
            await _until(lambda: _count_is(pool, queue, DeliveryState.DELIVERED, 7), "repaired")
            later = await smtp_sink.wait_for_async(7)

    assert sorted(m.recipients[0] for m in mails) == sorted(d.recipient for d in good)
    assert all((g.state, g.attempts) == (DeliveryState.DELIVERED, 1) for g in goods)
    assert dead.state is DeliveryState.DEAD
    assert dead.attempts == 1
    assert dead.last_error == f"{UNREADABLE}KeyError: 'thread_id'"
    assert dead.finished_at is not None
    # Claimed once each: nothing was claimed again after a lease ran out.
    assert sample("bugless_notify_claimed_total", channel="email") == 6 + 1
    assert sample("bugless_notify_dead_letters_total", channel="email", reason="unreadable") == 1
    assert sample("bugless_background_failures_total", loop="notify.delivery_worker") == 0
    [logged] = errors
    assert logged.name == "bugless.notify"
    assert bad.delivery_id in logged.getMessage()
    assert sorted(m.recipients[0] for m in later) == sorted(
        f"user{n}@example.com" for n in range(7)
    )
    assert (await _record(pool, queue, bad.delivery_id)).last_error == ""
