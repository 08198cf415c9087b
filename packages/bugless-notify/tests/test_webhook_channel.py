"""The ``webhook`` channel against a real HTTP receiver, endpoints in real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from notify_support import SECRET, WebhookReceiver, webhook_delivery

from bugless_core.errors import InvalidArgument
from bugless_core.notification_channel import DeliveryStatus, Notification
from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.webhook import (
    PayloadFormat,
    WebhookChannel,
    WebhookEndpoint,
    WebhookSettings,
    sign,
    verify_signature,
)
from bugless_testing.ports import refused_port


@pytest.fixture
async def channel(endpoints: WebhookEndpointStore) -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(WebhookSettings(timeout_seconds=1.0), endpoints)
    yield channel
    await channel.close()


async def _add(
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
    name: str,
    url: str,
    payload_format: PayloadFormat = PayloadFormat.JSON,
) -> None:
    async with pool.acquire() as conn:
        await endpoints.put(conn, WebhookEndpoint(name, url, SECRET, payload_format))


def _notification(endpoint: str, key: str = "change-123-4/webhook/ops") -> Notification:
    new = webhook_delivery(key, endpoint)
    return Notification(new.delivery_id, new.recipient, new.message)


async def test_a_post_is_signed_and_carries_the_delivery_id(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
) -> None:
    await _add(pool, endpoints, "ops", receiver.url("/hook"))
    result = await channel.deliver(_notification("ops"))
    assert result.status is DeliveryStatus.DELIVERED
    (request,) = receiver.received("/hook")
    assert request.signature_ok
    assert request.headers["x-bugless-signature"] == sign(SECRET, request.body)
    assert request.delivery_id == "change-123-4/webhook/ops"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert body["delivery_id"] == "change-123-4/webhook/ops"
    assert body["event"] == "issue.changed"
    assert body["issue"]["url"] == "https://bugs.example.com/issues/123"
    assert body["reason"] == "webhook"


async def test_the_chat_format_posts_slack_compatible_text(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
) -> None:
    await _add(pool, endpoints, "team-chat", receiver.url("/chat"), PayloadFormat.CHAT)
    assert (await channel.deliver(_notification("team-chat"))).status is DeliveryStatus.DELIVERED
    (request,) = receiver.received("/chat")
    body = json.loads(request.body)
    assert set(body) == {"text"}
    assert body["text"].startswith("<https://bugs.example.com/issues/123|b/123: Disk full on /var>")
    assert request.signature_ok


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, DeliveryStatus.DELIVERED),
        (204, DeliveryStatus.DELIVERED),
        (400, DeliveryStatus.REJECTED),
        (404, DeliveryStatus.REJECTED),
        (410, DeliveryStatus.REJECTED),
        (301, DeliveryStatus.REJECTED),
        (408, DeliveryStatus.RETRY),
        (429, DeliveryStatus.RETRY),
        (500, DeliveryStatus.RETRY),
        (503, DeliveryStatus.RETRY),
    ],
)
async def test_the_answer_decides_delivered_retry_or_permanent(
    status: int,
    expected: DeliveryStatus,
    *,
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
) -> None:
    await _add(pool, endpoints, "ops", receiver.url("/scripted"))
    receiver.script("/scripted", status)
    result = await channel.deliver(_notification("ops"))
    assert result.status is expected
    if expected is not DeliveryStatus.DELIVERED:
        assert f"HTTP {status}" in result.reason


async def test_a_redirect_is_not_followed_and_its_target_url_is_not_reported(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
) -> None:
    await _add(pool, endpoints, "ops", receiver.url("/moved"))
    receiver.script("/moved", 302)
    result = await channel.deliver(_notification("ops"))
    assert result.status is DeliveryStatus.REJECTED
    assert "elsewhere.example.com" in result.reason
    assert "token" not in result.reason
    assert len(receiver.received()) == 1


async def test_retry_after_is_passed_on(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
) -> None:
    await _add(pool, endpoints, "ops", receiver.url("/busy"))
    receiver.script("/busy", 429)
    receiver.retry_after["/busy"] = "120"
    result = await channel.deliver(_notification("ops"))
    assert result.status is DeliveryStatus.RETRY
    assert result.retry_after_seconds == 120.0


async def test_a_retry_after_that_is_no_number_is_ignored_not_a_failed_delivery(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
) -> None:
    """A superscript two is a digit to str.isdigit, not to float: it raised ValueError."""
    await _add(pool, endpoints, "ops", receiver.url("/odd"))
    receiver.script("/odd", 503)
    receiver.retry_after["/odd"] = "\N{SUPERSCRIPT TWO}"
    result = await channel.deliver(_notification("ops"))
    assert result.status is DeliveryStatus.RETRY
    assert result.retry_after_seconds is None
    assert "HTTP 503" in result.reason


async def test_a_refused_connection_is_retryable_and_names_the_endpoint_not_its_url(
    channel: WebhookChannel, pool: asyncpg.Pool, endpoints: WebhookEndpointStore
) -> None:
    with refused_port() as port:
        await _add(pool, endpoints, "gone", f"http://127.0.0.1:{port}/secret-token-path")
        result = await channel.deliver(_notification("gone"))
    assert result.status is DeliveryStatus.RETRY
    assert "'gone'" in result.reason
    assert "secret-token-path" not in result.reason


async def test_an_ipv6_endpoint_is_named_with_its_host_in_brackets(
    channel: WebhookChannel, pool: asyncpg.Pool, endpoints: WebhookEndpointStore
) -> None:
    """The delivery's error (shown on the dead letters page) writes ``http://[::1]:PORT``.

    Before, it took the URL's bare hostname: ``(http://::1)``, no address at all.
    """
    with refused_port("::1") as port:
        await _add(pool, endpoints, "gone6", f"http://[::1]:{port}/secret-token-path")
        result = await channel.deliver(_notification("gone6"))
    assert result.status is DeliveryStatus.RETRY
    assert f"webhook endpoint 'gone6' (http://[::1]:{port})" in result.reason
    assert "secret-token-path" not in result.reason


async def test_a_receiver_that_never_answers_times_out_as_retryable(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
) -> None:
    await _add(pool, endpoints, "slow", receiver.url("/slow"))
    receiver.hangs["/slow"] = 3.0
    result = await channel.deliver(_notification("slow"))
    assert result.status is DeliveryStatus.RETRY
    assert "no answer" in result.reason


async def test_an_endpoint_that_no_longer_exists_is_a_permanent_failure(
    channel: WebhookChannel,
) -> None:
    result = await channel.deliver(_notification("removed"))
    assert result.status is DeliveryStatus.REJECTED
    assert "'removed' does not exist" in result.reason


async def test_a_rotated_secret_applies_to_the_next_attempt(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
) -> None:
    await _add(pool, endpoints, "ops", receiver.url("/hook"))
    new_secret = "rotated-" + "f" * 40
    async with pool.acquire() as conn:
        await endpoints.put(conn, WebhookEndpoint("ops", receiver.url("/hook"), new_secret))
    await channel.deliver(_notification("ops"))
    (request,) = receiver.received("/hook")
    assert verify_signature(new_secret, request.body, request.headers["x-bugless-signature"])
    assert not request.signature_ok  # the receiver still expects the old one


async def test_endpoints_are_stored_listed_and_removed(
    pool: asyncpg.Pool, endpoints: WebhookEndpointStore
) -> None:
    async with pool.acquire() as conn:
        await endpoints.put(conn, WebhookEndpoint("b-hook", "https://b.example/h", SECRET))
        await endpoints.put(
            conn, WebhookEndpoint("a-hook", "https://a.example/h", SECRET, PayloadFormat.CHAT)
        )
        assert [e.name for e in await endpoints.list(conn)] == ["a-hook", "b-hook"]
        assert await endpoints.remove(conn, "b-hook")
        assert not await endpoints.remove(conn, "b-hook")
    found = await endpoints.get_endpoint("a-hook")
    assert found == WebhookEndpoint("a-hook", "https://a.example/h", SECRET, PayloadFormat.CHAT)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Ops Team"}, "name: 'Ops Team'"),
        ({"url": "ftp://x.example/h"}, "url: 'ftp://x.example/h' is not an http"),
        ({"url": "https:///nohost"}, "url:"),
        ({"secret": "short"}, "secret: must be at least 32 characters"),
        ({"payload_format": "xml"}, "payload_format: 'xml' is not json or chat"),
    ],
)
def test_a_bad_endpoint_is_refused_naming_the_field(kwargs: dict[str, str], message: str) -> None:
    values: dict[str, Any] = {"name": "ops", "url": "https://hooks.example/h", "secret": SECRET}
    values |= kwargs
    with pytest.raises(InvalidArgument, match=message):
        WebhookEndpoint(**values)


async def test_opening_without_an_endpoint_directory_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"webhook\.endpoints"):
        await WebhookChannel.open({})
    with pytest.raises(InvalidArgument, match=r"webhook\.timeout_seconds: -1\.0 must be more"):
        await WebhookChannel.open({"timeout_seconds": "-1", "endpoints": object()})
