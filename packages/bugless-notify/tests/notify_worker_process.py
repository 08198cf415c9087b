"""A delivery worker as its own process, for the tests that kill one (SIGKILL).

    python notify_worker_process.py DATABASE_URL SCHEMA SMTP_PORT WORKER_ID

Prints ``ready`` once it works; SIGTERM stops it gracefully (exit 0).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import asyncpg
from prometheus_client import CollectorRegistry

from bugless_notify.mail import EmailChannel, SmtpSecurity, SmtpSettings
from bugless_notify.queue import DeliveryQueue
from bugless_notify.retry import RetryPolicy
from bugless_notify.worker import DeliveryWorker, WorkerSettings


async def main(database_url: str, schema: str, smtp_port: int, worker_id: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=6)
    channel = EmailChannel(
        SmtpSettings(
            host="127.0.0.1",
            port=smtp_port,
            security=SmtpSecurity.NONE,
            sender="bugless <bugless@bugs.example.com>",
            timeout_seconds=5.0,
        )
    )
    worker = DeliveryWorker(
        pool,
        DeliveryQueue(schema),
        {"email": channel},
        WorkerSettings(
            worker_id=worker_id,
            concurrency=8,
            lease_seconds=3.0,
            delivery_timeout_seconds=2.0,
            poll_seconds=0.5,
            retry=RetryPolicy(base_seconds=0.1, max_seconds=0.5, max_attempts=5),
        ),
        metrics_registry=CollectorRegistry(),
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
    print("ready", flush=True)
    try:
        await worker.run()
    finally:
        await channel.close()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
