"""Which webhooks go through a forward proxy: the one configured, for operator endpoints only.

A real forward proxy on loopback (:class:`bugless_testing.http_proxy.HttpProxy`)
counts what goes through it; a real receiver and real PostgreSQL hold the
endpoints. ``HTTP(S)_PROXY`` in the environment is meant for other programs
(a package manager in the image, a sidecar's settings leaking into the pod):
followed, it would send every operator notification, URL secrets included,
through whatever it names.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from click.testing import CliRunner
from notify_support import SECRET, WebhookReceiver, webhook_delivery

from bugless_core.errors import InvalidArgument
from bugless_core.networks import parse_networks
from bugless_core.notification_channel import DeliveryStatus, Notification
from bugless_notify.cli import notify_group
from bugless_notify.component_webhooks import ComponentWebhookStore
from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.queue import DeliveryQueue
from bugless_notify.webhook import WebhookChannel, WebhookEndpoint, WebhookSettings
from bugless_testing.http_proxy import HttpProxy

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture
def proxy() -> Iterator[HttpProxy]:
    with HttpProxy() as proxy:
        yield proxy


@pytest.fixture
def ambient_proxy(proxy: HttpProxy, monkeypatch: pytest.MonkeyPatch) -> HttpProxy:
    """The proxy named in every variable httpx would read, nothing exempt."""
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, proxy.url)
        monkeypatch.setenv(name.lower(), proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return proxy


def _notification(endpoint: str) -> Notification:
    new = webhook_delivery(f"change-123-4/webhook/{endpoint}", endpoint)
    return Notification(new.delivery_id, new.recipient, new.message)


async def _add_operator_endpoint(
    pool: asyncpg.Pool, endpoints: WebhookEndpointStore, name: str, url: str
) -> None:
    async with pool.acquire() as conn:
        await endpoints.put(conn, WebhookEndpoint(name, url, SECRET))


async def _add_component_endpoint(
    pool: asyncpg.Pool, queue: DeliveryQueue, endpoints: WebhookEndpointStore, name: str, url: str
) -> None:
    components = ComponentWebhookStore(queue.schema, endpoints.sealer)
    async with pool.acquire() as conn:
        await components.add(
            conn, 7, WebhookEndpoint(name, url, SECRET, component_id=7), False, "alice"
        )


async def test_an_ambient_proxy_does_not_divert_operator_webhooks(
    ambient_proxy: HttpProxy,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
) -> None:
    await _add_operator_endpoint(pool, endpoints, "ops", receiver.url("/ops"))
    channel = WebhookChannel(WebhookSettings(timeout_seconds=2.0), endpoints)
    try:
        result = await channel.deliver(_notification("ops"))
    finally:
        await channel.close()
    assert result.status is DeliveryStatus.DELIVERED, result
    assert len(receiver.received("/ops")) == 1
    assert ambient_proxy.requests == []


async def test_the_proxy_setting_carries_operator_webhooks_only(
    proxy: HttpProxy,
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    queue: DeliveryQueue,
    endpoints: WebhookEndpointStore,
) -> None:
    """Operator endpoints go through the configured proxy; component ones never do.

    A proxy would resolve a component endpoint's host itself, past the
    address check (bugless_notify._pinned_http).
    """
    await _add_operator_endpoint(pool, endpoints, "ops", receiver.url("/ops"))
    await _add_component_endpoint(pool, queue, endpoints, "team", receiver.url("/team"))
    settings = WebhookSettings(
        timeout_seconds=2.0,
        allowed_networks=parse_networks(["127.0.0.0/8"]),
        proxy=proxy.url,
    )
    channel = WebhookChannel(settings, endpoints)
    try:
        operator = await channel.deliver(_notification("ops"))
        component = await channel.deliver(_notification("team"))
    finally:
        await channel.close()
    assert operator.status is DeliveryStatus.DELIVERED, operator
    assert component.status is DeliveryStatus.DELIVERED, component
    assert proxy.requests == [("POST", receiver.url("/ops"))]
    assert [len(receiver.received(path)) for path in ("/ops", "/team")] == [1, 1]


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("socks5://proxy:1080", "is not an http:// or https:// proxy URL"),
        ("http://", "is not an http:// or https:// proxy URL"),
        ("http://proxy:port", "has a port that is not a number"),
        ("http://proxy:3128/path", "a proxy URL has no path"),
    ],
)
async def test_a_bad_proxy_is_refused_naming_the_setting(proxy: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"webhook\.proxy: .*{message}"):
        await WebhookChannel.open({"proxy": proxy, "endpoints": object()})
    with pytest.raises(InvalidArgument, match=rf"webhook\.proxy: .*{message}"):
        WebhookSettings(proxy=proxy)
    result = CliRunner().invoke(
        notify_group,
        [
            "serve",
            "--model",
            "model:50051",
            "--auth",
            "auth:50052",
            "--database-url",
            "postgresql://nowhere/db",
            "--webhook-proxy",
            proxy,
        ],
    )
    assert result.exit_code == 2, result.output
    assert "--webhook-proxy" in result.output
    assert message in result.output
