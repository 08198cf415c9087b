"""Component webhooks reach only public addresses unless the operator allows a network.

The ``webhook`` channel against real HTTP(S) receivers on loopback, endpoints
in real PostgreSQL (added as a component admin's are). Where a test needs a
host name that resolves to given addresses, the channel's resolver answers
for it, as a DNS server would; ``localhost`` goes to the system's resolver.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import trustme
from notify_support import SECRET, WebhookReceiver, webhook_delivery

from bugless_core.errors import InvalidArgument
from bugless_core.networks import parse_networks
from bugless_core.notification_channel import DeliveryStatus, Notification
from bugless_core.settings import settings_from_environ
from bugless_dev.pki import LocalPki
from bugless_notify.addresses import ALLOW_SETTING, AddressPolicy
from bugless_notify.component_webhooks import ComponentWebhookStore
from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.queue import DeliveryQueue
from bugless_notify.settings import NotifierSettings
from bugless_notify.webhook import WebhookChannel, WebhookEndpoint, WebhookSettings
from bugless_testing import webhooks

LOOPBACK = parse_networks(["127.0.0.0/8 ::1"])


class FixedDns:
    """Answers each name with the addresses given, and counts the questions."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.questions: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.questions.append(host)
        return self.answers[host]


@pytest.fixture
def components(queue: DeliveryQueue, endpoints: WebhookEndpointStore) -> ComponentWebhookStore:
    return ComponentWebhookStore(queue.schema, endpoints.sealer)


async def _add_for_component(
    pool: asyncpg.Pool, components: ComponentWebhookStore, name: str, url: str
) -> None:
    async with pool.acquire() as conn:
        await components.add(
            conn, 7, WebhookEndpoint(name, url, SECRET, component_id=7), False, "alice"
        )


def _notification(endpoint: str) -> Notification:
    new = webhook_delivery(f"change-123-4/webhook/{endpoint}", endpoint)
    return Notification(new.delivery_id, new.recipient, new.message)


def _channel(
    endpoints: WebhookEndpointStore,
    *,
    allowed: tuple[str, ...] = (),
    dns: FixedDns | None = None,
    ca_file: Path | None = None,
) -> WebhookChannel:
    return WebhookChannel(
        WebhookSettings(
            timeout_seconds=2.0, allowed_networks=parse_networks(allowed), ca_file=ca_file
        ),
        endpoints,
        resolver=dns,
    )


async def test_by_default_a_component_webhook_to_loopback_is_a_dead_letter_not_a_retry(
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
    components: ComponentWebhookStore,
) -> None:
    await _add_for_component(pool, components, "by-name", f"http://localhost:{receiver.port}/a")
    await _add_for_component(pool, components, "by-ip", receiver.url("/b"))
    await _add_for_component(
        pool, components, "mapped", f"http://[::ffff:127.0.0.1]:{receiver.port}/c"
    )
    channel = _channel(endpoints)
    try:
        by_name = await channel.deliver(_notification("by-name"))
        by_ip = await channel.deliver(_notification("by-ip"))
        mapped = await channel.deliver(_notification("mapped"))
    finally:
        await channel.close()
    for result in (by_name, by_ip, mapped):
        assert result.status is DeliveryStatus.REJECTED
        assert ALLOW_SETTING in result.reason
    assert "localhost resolves to 127.0.0.1 is a loopback address" in by_name.reason
    assert "127.0.0.1 is a loopback address" in by_ip.reason
    assert "stands for 127.0.0.1, a loopback address" in mapped.reason
    assert receiver.received() == []


async def test_with_loopback_allowed_a_component_webhook_is_delivered_by_name(
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
    components: ComponentWebhookStore,
) -> None:
    await _add_for_component(pool, components, "by-name", f"http://localhost:{receiver.port}/a")
    channel = _channel(endpoints, allowed=("127.0.0.0/8", "::1"))
    try:
        result = await channel.deliver(_notification("by-name"))
    finally:
        await channel.close()
    assert result.status is DeliveryStatus.DELIVERED
    (request,) = receiver.received("/a")
    assert request.signature_ok
    assert request.headers["host"] == f"localhost:{receiver.port}"


async def test_an_operator_level_endpoint_is_exempt(
    receiver: WebhookReceiver, pool: asyncpg.Pool, endpoints: WebhookEndpointStore
) -> None:
    async with pool.acquire() as conn:
        await endpoints.put(conn, WebhookEndpoint("ops", receiver.url("/ops"), SECRET))
    channel = _channel(endpoints)
    try:
        result = await channel.deliver(_notification("ops"))
    finally:
        await channel.close()
    assert result.status is DeliveryStatus.DELIVERED
    assert len(receiver.received("/ops")) == 1


async def test_a_name_resolving_to_any_forbidden_address_is_refused_after_one_lookup(
    receiver: WebhookReceiver,
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
    components: ComponentWebhookStore,
) -> None:
    dns = FixedDns(
        {
            "mixed.example.test": ["127.0.0.1", "10.20.30.40"],
            "ok.example.test": ["127.0.0.1"],
        }
    )
    await _add_for_component(
        pool, components, "mixed", f"http://mixed.example.test:{receiver.port}/m"
    )
    await _add_for_component(pool, components, "ok", f"http://ok.example.test:{receiver.port}/o")
    channel = _channel(endpoints, allowed=("127.0.0.0/8",), dns=dns)
    try:
        mixed = await channel.deliver(_notification("mixed"))
        ok = await channel.deliver(_notification("ok"))
    finally:
        await channel.close()
    assert mixed.status is DeliveryStatus.REJECTED
    assert "mixed.example.test resolves to 10.20.30.40 is a private address" in mixed.reason
    assert receiver.received("/m") == []
    # The address checked is the one connected to: one lookup per connection.
    assert ok.status is DeliveryStatus.DELIVERED
    assert dns.questions == ["mixed.example.test", "ok.example.test"]
    (request,) = receiver.received("/o")
    assert request.headers["host"] == f"ok.example.test:{receiver.port}"


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[webhooks.WebhookReceiver, Path]]:
    pki = LocalPki.open(tmp_path / "pki")
    cert = pki.issue("hooks", "hooks.example.test", hosts=["hooks.example.test"], server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.cert, cert.key)
    with webhooks.WebhookReceiver(SECRET, status=200, tls=context) as served:
        yield served, pki.ca_file


async def test_tls_is_checked_against_the_host_name_while_connecting_to_the_checked_address(
    tls_receiver: tuple[webhooks.WebhookReceiver, Path],
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
    components: ComponentWebhookStore,
) -> None:
    served, ca_file = tls_receiver
    dns = FixedDns({"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
    await _add_for_component(
        pool, components, "right", f"https://hooks.example.test:{served.port}/r"
    )
    await _add_for_component(
        pool, components, "wrong", f"https://other.example.test:{served.port}/w"
    )
    channel = _channel(endpoints, allowed=("127.0.0.0/8",), dns=dns, ca_file=ca_file)
    try:
        right = await channel.deliver(_notification("right"))
        wrong = await channel.deliver(_notification("wrong"))
    finally:
        await channel.close()
    assert right.status is DeliveryStatus.DELIVERED
    (request,) = [hook for hook in served.received if hook.path == "/r"]
    assert request.headers["host"] == f"hooks.example.test:{served.port}"
    # The certificate names hooks.example.test only: the same address under another name fails.
    assert wrong.status is DeliveryStatus.RETRY
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.reason
    assert [hook.path for hook in served.received] == ["/r"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/h",
        "https://localhost/h",
        "https://api.localhost./h",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/h",
        "https://[::1]:9000/h",
        "https://[fe80::1]/h",
        "https://[fd00::1]/h",
        "https://100.64.0.1/h",
        "https://0.0.0.0/h",
        "https://[::ffff:10.0.0.1]/h",
        "https://224.0.0.1/h",
    ],
)
def test_a_forbidden_address_literal_or_localhost_is_refused_when_added(url: str) -> None:
    with pytest.raises(InvalidArgument, match=ALLOW_SETTING):
        AddressPolicy().check_url(url)


def test_an_allowed_network_or_a_public_address_or_a_name_is_accepted_when_added() -> None:
    AddressPolicy().check_url("https://hooks.example.com/h")
    AddressPolicy().check_url("https://93.184.215.14/h")
    AddressPolicy(LOOPBACK).check_url("http://127.0.0.1:8080/h")
    AddressPolicy(LOOPBACK).check_url("http://localhost:8080/h")
    AddressPolicy(parse_networks(["10.1.0.0/16"])).check_url("https://10.1.2.3/h")
    with pytest.raises(InvalidArgument):
        AddressPolicy(parse_networks(["10.1.0.0/16"])).check_url("https://10.2.0.1/h")


async def test_a_bad_network_in_the_options_is_refused_naming_the_option() -> None:
    with pytest.raises(InvalidArgument, match=r"webhook\.allowed_networks: 'ten' is not a network"):
        await WebhookChannel.open({"allowed_networks": "10.0.0.0/8 ten", "endpoints": object()})


async def test_the_channel_options_carry_the_allowed_networks() -> None:
    settings = WebhookSettings.from_options({"allowed_networks": "127.0.0.0/8, ::1"})
    assert settings.allowed_networks == LOOPBACK


def _serve_settings(**variables: str) -> NotifierSettings:
    """``notify serve``'s settings from its variables, as the command reads them."""
    environ = {
        "BUGLESS_NOTIFY_MODEL": "127.0.0.1:1",
        "BUGLESS_NOTIFY_AUTH": "127.0.0.1:2",
        "BUGLESS_NOTIFY_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",
        "BUGLESS_NOTIFY_INSECURE_LOCAL": "true",
        "BUGLESS_NOTIFY_SECRET_KEYS": "0123456789abcdef-secret",
        "BUGLESS_NOTIFY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        **variables,
    }
    return settings_from_environ(NotifierSettings, environ, env_prefix="BUGLESS_NOTIFY_")


async def test_webhook_ca_file_lets_notify_serve_deliver_to_a_receiver_of_an_internal_ca(
    pool: asyncpg.Pool,
    endpoints: WebhookEndpointStore,
    components: ComponentWebhookStore,
    tmp_path: Path,
) -> None:
    """A receiver on an allowed network whose certificate an internal CA signed.

    The channel's ``ca_file`` was never passed by ``notify serve`` (no flag,
    no variable), so such a receiver could not be reached at all: the default
    trust is certifi's bundle, not the system's store.
    """
    ca = trustme.CA()
    ca_file = tmp_path / "internal-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with webhooks.WebhookReceiver(SECRET, status=200, tls=context) as served:
        await _add_for_component(
            pool, components, "internal", f"https://127.0.0.1:{served.port}/internal"
        )
        results = []
        for variables in ({"BUGLESS_NOTIFY_WEBHOOK_CA_FILE": str(ca_file)}, {}):
            options = _serve_settings(**variables).webhook_options()
            channel = await WebhookChannel.open({**options, "endpoints": endpoints})
            try:
                results.append(await channel.deliver(_notification("internal")))
            finally:
                await channel.close()
    with_ca, without = results
    assert with_ca.status is DeliveryStatus.DELIVERED, with_ca.reason
    assert [hook.path for hook in served.received] == ["/internal"]
    assert without.status is DeliveryStatus.RETRY  # the control: certifi's bundle refuses it
    assert "CERTIFICATE_VERIFY_FAILED" in without.reason
