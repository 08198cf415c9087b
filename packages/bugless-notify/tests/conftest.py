"""Real servers for the notifier's tests: PostgreSQL, SMTP and webhook sinks, notify serve.

One PostgreSQL database per session; each test gets its own freshly migrated
schema (so tests never see each other's deliveries) and its own pool.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import asyncpg
import pytest
from notifier_process_support import People
from notify_support import SEALING_KEY, WebhookReceiver, run_receiver

from bugless_core.clients import ActingFor
from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.queue import DeliveryQueue
from bugless_notify.sealing import SecretSealer
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_dev.stack import LocalStack, RunningService
    from bugless_testing.postgres import ThrowawayPostgres
    from bugless_testing.smtp import SmtpSink

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


@pytest.fixture(scope="module")
def people(bugless_stack: LocalStack) -> People:
    """Password users with addresses (``<name>@example.test``)."""
    tag = secrets.token_hex(3)
    ids = {}
    for name in ("alice", "bob", "carol", "vic", "frank", "eve", "dave", "mallory"):
        created = bugless_stack.add_user(
            f"{name}{tag}", "pw-" + secrets.token_hex(8), email=f"{name}{tag}@example.test"
        )
        ids[name] = created["user_id"]
    return People({**ids, "_tag": tag})


@pytest.fixture
def notify_process(
    bugless_stack: LocalStack, smtp_sink: SmtpSink
) -> Iterator[tuple[RunningService, list[str]]]:
    """One notifier on a schema of its own, mailing to the sink."""
    flags = [
        "--schema",
        f"notify_{secrets.token_hex(4)}",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(smtp_sink.port),
        "--smtp-security",
        "none",
        "--public-url",
        "https://bugs.example.test",
    ]
    service = bugless_stack.start_notify(*flags, name=f"notify-{secrets.token_hex(3)}")
    try:
        yield service, flags
    finally:
        bugless_stack.stop_service(service)


@pytest.fixture
async def as_person(bugless_stack: LocalStack) -> AsyncIterator[ActingFor]:
    """Real assertions from the Authenticator, as the web holds them for its visitors."""
    channel = bugless_stack.client_address("auth", "admin").channel()
    try:
        yield ActingFor(v1.AuthenticatorStub(channel))
    finally:
        channel.close()


@pytest.fixture
async def web_to_notifier(
    bugless_stack: LocalStack, notifier: RunningService
) -> AsyncIterator[v1.NotifierStub]:
    """The notifier (the requesting module's ``notifier``), reached with the web's certificate."""
    channel = bugless_stack.client_address("notify", identity="web").channel()
    try:
        yield v1.NotifierStub(channel)
    finally:
        channel.close()
