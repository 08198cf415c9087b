"""Real servers for the notifier's tests: PostgreSQL, an SMTP sink, a webhook receiver.

One PostgreSQL database per session; each test gets its own freshly migrated
schema (so tests never see each other's deliveries) and its own pool.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import asyncpg
import pytest
from notify_support import WebhookReceiver, run_receiver

from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.queue import DeliveryQueue

if TYPE_CHECKING:
    from bugless_core.testing.postgres import PostgresTestServer

pytest_plugins = ["bugless_core.testing.postgres", "bugless_core.testing.smtp"]


@pytest.fixture(scope="session")
def notify_database(postgres_server: PostgresTestServer) -> str:
    """DSN of the session's notifier database."""
    return postgres_server.create_database("notify")


@pytest.fixture
async def queue(notify_database: str) -> DeliveryQueue:
    """A queue in a schema of its own, migrated."""
    queue = DeliveryQueue(f"notify_{secrets.token_hex(4)}")
    conn = await asyncpg.connect(notify_database)
    try:
        await queue.migrate(conn)
    finally:
        await conn.close()
    return queue


@pytest.fixture
async def pool(notify_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(notify_database, min_size=1, max_size=12)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def endpoints(pool: asyncpg.Pool, queue: DeliveryQueue) -> WebhookEndpointStore:
    return WebhookEndpointStore(pool, queue.schema)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    yield from run_receiver()
