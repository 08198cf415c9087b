"""A worker process killed (SIGKILL) in the middle of a batch, then another started.

Every delivery must arrive; a mail may arrive twice only if the killed worker
had handed it to the relay without recording it, and then both copies carry
the same Message-ID (the recipient's mail system drops the second).
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from pathlib import Path

import asyncpg
from notify_support import mail_delivery

from bugless_notify.queue import DeliveryQueue, DeliveryState
from bugless_testing.smtp import SmtpSink

WORKER = Path(__file__).with_name("notify_worker_process.py")
MAILS = 200


async def _start(
    database: str, queue: DeliveryQueue, port: int, name: str
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        database,
        queue.schema,
        str(port),
        name,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"ready"
    return proc


async def test_a_worker_killed_mid_batch_loses_nothing_and_a_duplicate_keeps_its_message_id(
    notify_database: str, queue: DeliveryQueue
) -> None:
    keys = [mail_delivery(n).delivery_id for n in range(MAILS)]
    conn = await asyncpg.connect(notify_database)
    try:
        await queue.enqueue(conn, [mail_delivery(n) for n in range(MAILS)])
        # A slow relay, so the victim always has mails in flight.
        with SmtpSink(data_delay_seconds=0.05) as sink:
            victim = await _start(notify_database, queue, sink.port, "victim")
            try:
                await sink.wait_for_async(MAILS // 4, 120)
            finally:
                victim.kill()
                await victim.wait()
            held = await conn.fetchval(
                f"SELECT count(*) FROM {queue.schema}.deliveries "
                "WHERE claimed_by = 'victim' AND state = 'pending'"
            )
            assert held > 0, "the worker was not killed in the middle of a batch"

            successor = await _start(notify_database, queue, sink.port, "successor")
            try:
                for _ in range(1200):
                    if (await queue.counts(conn))[DeliveryState.DELIVERED] == MAILS:
                        break
                    await asyncio.sleep(0.1)
            finally:
                successor.terminate()
                assert await asyncio.wait_for(successor.wait(), 60) == 0
            mails = sink.mails
        counts = await queue.counts(conn)
        attempts = await conn.fetchval(f"SELECT max(attempts) FROM {queue.schema}.deliveries")
    finally:
        await conn.close()

    assert counts[DeliveryState.DELIVERED] == MAILS
    message_ids: defaultdict[str, set[str]] = defaultdict(set)
    copies: defaultdict[str, int] = defaultdict(int)
    for mail in mails:
        key = mail.message["X-Bugless-Delivery"]
        message_ids[key].add(mail.message["Message-ID"])
        copies[key] += 1
    assert set(message_ids) == set(keys)  # every delivery arrived
    assert all(len(ids) == 1 for ids in message_ids.values())  # a copy has the same id
    assert sum(copies.values()) - MAILS <= held  # only what the victim held went twice
    assert attempts <= 2
