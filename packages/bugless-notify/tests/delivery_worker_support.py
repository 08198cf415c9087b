"""What the delivery worker tests share: fast settings, a mail channel, a running worker, waits.

test_worker, the dead letter, outage log and supervision tests all start a
real DeliveryWorker on the queue and wait for counts of its states the same
way; these live here so no test module imports another (a moved test module
must not break its neighbours' collection).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from bugless_core.notification_channel import NotificationChannel
from bugless_notify.mail import EmailChannel, SmtpSecurity, SmtpSettings
from bugless_notify.queue import DeliveryQueue, DeliveryState
from bugless_notify.retry import RetryPolicy
from bugless_notify.worker import DeliveryWorker, WorkerSettings
from bugless_testing.smtp import SmtpSink

FAST_RETRY = RetryPolicy(base_seconds=0.05, max_seconds=0.2, max_attempts=5)


def _settings(**overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "concurrency": 8,
        # Long: a delivery recorded late would show as a failure, not hide behind a re-claim.
        "lease_seconds": 300.0,
        "delivery_timeout_seconds": 10.0,
        "poll_seconds": 0.5,
        "retry": FAST_RETRY,
        "stop_grace_seconds": 10.0,
    }
    values.update(overrides)
    return WorkerSettings(**values)


def _email(sink: SmtpSink) -> EmailChannel:
    return EmailChannel(
        SmtpSettings(
            host="127.0.0.1",
            port=sink.port,
            security=SmtpSecurity.NONE,
            sender="bugless <bugless@bugs.example.com>",
            timeout_seconds=5.0,
        )
    )


@contextlib.asynccontextmanager
async def _running(
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    channels: Mapping[str, NotificationChannel],
    settings: WorkerSettings,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[DeliveryWorker]:
    worker = DeliveryWorker(
        pool, queue, channels, settings, metrics_registry=registry or CollectorRegistry()
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)
        for channel in channels.values():
            await channel.close()


async def _until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {seconds} s: {what}")
        await asyncio.sleep(0.05)


async def _count(pool: asyncpg.Pool, queue: DeliveryQueue, state: DeliveryState) -> int:
    async with pool.acquire() as conn:
        return (await queue.counts(conn))[state]


async def _count_is(
    pool: asyncpg.Pool, queue: DeliveryQueue, state: DeliveryState, expected: int
) -> bool:
    return await _count(pool, queue, state) == expected


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def wrapped() -> bool:
        return check()

    return wrapped
