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
from notify_support import SEALING_KEY, WebhookReceiver, run_receiver

from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.queue import DeliveryQueue
from bugless_notify.sealing import SecretSealer
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_dev.stack import LocalStack
    from bugless_testing.postgres import ThrowawayPostgres

pytest_plugins = ["bugless_testing.postgres", "bugless_testing.smtp", "bugless_testing.stack"]


@pytest.fixture
async def model(bugless_stack: LocalStack) -> AsyncIterator[v1.ModelStub]:
    """The session's Model, reached as the web frontend reaches it.

    Each call carries an assertion of the (made-up) caller its request names.
    """
    channel = bugless_stack.client_address("model", identity="web").channel()
    try:
        yield bugless_stack.acting_model(v1.ModelStub(channel), as_requested=True)
    finally:
        channel.close()


@pytest.fixture(scope="session")
def notify_database(postgres_server: ThrowawayPostgres) -> str:
    """DSN of the session's notifier database."""
    return postgres_server.create_database("notify")


@pytest.fixture
async def queue(notify_database: str) -> DeliveryQueue:
    """A queue in a schema of its own, migrated."""
    queue = DeliveryQueue(f"notify_{secrets.token_hex(4)}")
    pool = await asyncpg.create_pool(notify_database, min_size=1, max_size=2)
    try:
        await queue.migrate(pool)
    finally:
        await pool.close()
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
    return WebhookEndpointStore(pool, queue.schema, SecretSealer([SEALING_KEY]))


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    yield from run_receiver()
