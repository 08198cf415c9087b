"""Webhook secrets sealed at rest: the sealer's rules, and the store on real PostgreSQL.

A deployment that sets ``BUGLESS_NOTIFY_SECRET_KEYS`` must never have a
usable secret in its database: what the rows hold is Fernet ciphertext, the
notifier still signs with the real secret, old plaintext rows are sealed at
the next start, a new first key re-seals everything (rotation), and a key
that went missing makes deliveries wait (retry) rather than fail for good.
"""

from __future__ import annotations

import asyncpg
import pytest
from notify_support import SEALING_KEY, SECRET, WebhookReceiver, webhook_delivery

from bugless_core.errors import FailedPrecondition, InvalidArgument
from bugless_core.notification_channel import DeliveryStatus, Notification
from bugless_core.settings import settings_from_environ
from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.queue import DeliveryQueue
from bugless_notify.sealing import PREFIX, SecretSealer
from bugless_notify.settings import NotifierSettings
from bugless_notify.webhook import (
    PayloadFormat,
    WebhookChannel,
    WebhookEndpoint,
    WebhookSettings,
)

OLD, NEW = "the-old-sealing-key-0001", "the-new-sealing-key-0002"


def test_a_sealed_secret_opens_only_with_its_key_and_never_shows_the_secret() -> None:
    sealed = SecretSealer([NEW]).seal(SECRET)
    assert sealed.startswith(PREFIX)
    assert SECRET not in sealed
    assert SecretSealer([NEW]).open(sealed) == SECRET
    assert SecretSealer([NEW, OLD]).open(SecretSealer([OLD]).seal(SECRET)) == SECRET
    with pytest.raises(FailedPrecondition, match="no key of BUGLESS_NOTIFY_SECRET_KEYS opens"):
        SecretSealer([OLD]).open(sealed)
    with pytest.raises(FailedPrecondition, match="has no BUGLESS_NOTIFY_SECRET_KEYS"):
        SecretSealer().open(sealed)
    assert SecretSealer([OLD]).hint(sealed) == "????"
    assert SecretSealer([NEW]).hint(sealed) == SECRET[-4:]


def test_without_keys_secrets_are_kept_as_given_and_plain_rows_always_read() -> None:
    assert SecretSealer().seal(SECRET) == SECRET
    assert SecretSealer([NEW]).open(SECRET) == SECRET, "a row written before the keys"
    assert not SecretSealer().needs_resealing(SECRET)
    assert SecretSealer([NEW]).needs_resealing(SECRET)
    assert SecretSealer([NEW, OLD]).needs_resealing(SecretSealer([OLD]).seal(SECRET))
    assert not SecretSealer([NEW, OLD]).needs_resealing(SecretSealer([NEW]).seal(SECRET))


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="key 2 is shorter than 16"):
        SecretSealer([NEW, "short"])
    with pytest.raises(InvalidArgument, match="16 characters or longer"):
        _settings(f"{NEW} short")
    assert _settings(f"{NEW}  {OLD}").secret_keys == (NEW, OLD)


def _settings(keys: str) -> NotifierSettings:
    environ = {
        "BUGLESS_NOTIFY_MODEL": "127.0.0.1:1",
        "BUGLESS_NOTIFY_AUTH": "127.0.0.1:2",
        "BUGLESS_NOTIFY_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",
        "BUGLESS_NOTIFY_INSECURE_LOCAL": "true",
        "BUGLESS_NOTIFY_SECRET_KEYS": keys,
    }
    return settings_from_environ(NotifierSettings, environ, env_prefix="BUGLESS_NOTIFY_")


async def _stored(pool: asyncpg.Pool, schema: str, name: str) -> str:
    secret: str = await pool.fetchval(
        f"SELECT secret FROM {schema}.webhook_endpoints WHERE name = $1", name
    )
    return secret


async def test_the_database_holds_no_secret_and_the_channel_still_signs_with_it(
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    endpoints: WebhookEndpointStore,
    receiver: WebhookReceiver,
) -> None:
    async with pool.acquire() as conn:
        await endpoints.put(conn, WebhookEndpoint("ops", receiver.url("/hook"), SECRET))
    stored = await _stored(pool, queue.schema, "ops")
    assert stored.startswith(PREFIX)
    assert SECRET not in stored
    channel = WebhookChannel(WebhookSettings(timeout_seconds=5.0), endpoints)
    try:
        result = await channel.deliver(_notification("ops"))
    finally:
        await channel.close()
    assert result.status is DeliveryStatus.DELIVERED
    (request,) = receiver.received("/hook")
    assert request.signature_ok, "signed with the secret itself, not with what the row holds"


async def test_a_start_seals_plain_rows_and_a_new_first_key_reseals_them_all(
    pool: asyncpg.Pool, queue: DeliveryQueue
) -> None:
    plain = WebhookEndpointStore(pool, queue.schema)  # a notifier before the keys
    async with pool.acquire() as conn:
        await plain.put(conn, WebhookEndpoint("a", "https://a.example/hook", SECRET))
        await plain.put(conn, WebhookEndpoint("b", "https://b.example/hook", SECRET[::-1]))
        report = await plain.reseal(conn)
        assert (report.resealed, report.unsealed, report.unopened) == (0, 2, [])
        old = WebhookEndpointStore(pool, queue.schema, SecretSealer([OLD]))
        assert (await old.reseal(conn)).resealed == 2
        sealed_old = await _stored(pool, queue.schema, "a")
        assert sealed_old.startswith(PREFIX)
        assert (await old.reseal(conn)).resealed == 0, "nothing left to seal"
        rotated = WebhookEndpointStore(pool, queue.schema, SecretSealer([NEW, OLD]))
        assert (await rotated.reseal(conn)).resealed == 2
    assert await _stored(pool, queue.schema, "a") != sealed_old
    only_new = WebhookEndpointStore(pool, queue.schema, SecretSealer([NEW]))
    found = await only_new.get_endpoint("b")
    assert found is not None
    assert found.secret == SECRET[::-1], "the old key is no longer needed"


async def test_a_missing_key_makes_deliveries_wait_and_is_reported_at_start(
    pool: asyncpg.Pool, queue: DeliveryQueue, endpoints: WebhookEndpointStore
) -> None:
    async with pool.acquire() as conn:
        await endpoints.put(
            conn, WebhookEndpoint("ops", "https://ops.example/hook", SECRET, PayloadFormat.JSON)
        )
        before = await _stored(pool, queue.schema, "ops")
        wrong = WebhookEndpointStore(pool, queue.schema, SecretSealer([NEW]))
        report = await wrong.reseal(conn)
    assert report.unopened == ["ops"]
    assert await _stored(pool, queue.schema, "ops") == before, "left as it was"
    channel = WebhookChannel(WebhookSettings(timeout_seconds=1.0), wrong)
    try:
        result = await channel.deliver(_notification("ops"))
    finally:
        await channel.close()
    assert result.status is DeliveryStatus.RETRY
    assert "no key of BUGLESS_NOTIFY_SECRET_KEYS opens" in result.reason
    assert SEALING_KEY not in result.reason


def _notification(endpoint: str) -> Notification:
    new = webhook_delivery(f"change-123-4/webhook/{endpoint}", endpoint)
    return Notification(new.delivery_id, new.recipient, new.message)
