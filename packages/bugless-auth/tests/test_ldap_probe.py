"""The liveness probe of a skipped LDAP server, against real servers on loopback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme

from bugless_auth._ldap_probe import ldap_answers, probe_ssl_context
from bugless_testing.ports import refused_port
from bugless_testing.slapd import Slapd

# The fixtures of slapd.py (until conftest.py lists it in pytest_plugins).

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def tcp_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start TCP servers speaking whatever the test says; their ``ldap://`` URL."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(handler: Handler) -> str:
        async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await handler(reader, writer)

        server = await asyncio.start_server(keep, "127.0.0.1", 0)
        servers.append(server)
        return f"ldap://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()


def trusting(server: Slapd) -> ssl.SSLContext:
    return probe_ssl_context(ca_file=str(server.ca_file), verify=True)


async def test_a_running_slapd_answers_on_ldap_and_ldaps(slapd_server: Slapd) -> None:
    context = trusting(slapd_server)
    assert await ldap_answers(slapd_server.url, within=2, ssl_context=context)
    assert await ldap_answers(slapd_server.ldaps_url, within=2, ssl_context=context)


async def test_a_closed_port_does_not_answer(slapd_server: Slapd) -> None:
    with refused_port() as port:
        url = f"ldap://127.0.0.1:{port}"
        assert not await ldap_answers(url, within=2, ssl_context=trusting(slapd_server))


async def test_a_stopped_slapd_does_not_answer_within_the_time(own_slapd: Slapd) -> None:
    own_slapd.pause()
    try:
        answered = await ldap_answers(own_slapd.url, within=0.3, ssl_context=trusting(own_slapd))
    finally:
        own_slapd.resume()
    assert not answered
    assert await ldap_answers(own_slapd.url, within=2, ssl_context=trusting(own_slapd))


async def test_an_ldaps_server_with_an_untrusted_certificate_does_not_count(
    slapd_server: Slapd,
) -> None:
    other_ca = probe_ssl_context(ca_file=None, verify=True)
    assert not await ldap_answers(slapd_server.ldaps_url, within=2, ssl_context=other_ca)
    unverified = probe_ssl_context(ca_file=None, verify=False)
    assert await ldap_answers(slapd_server.ldaps_url, within=2, ssl_context=unverified)


async def test_a_server_that_is_not_ldap_does_not_count(
    tcp_server: Callable[[Handler], Awaitable[str]], slapd_server: Slapd
) -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    url = await tcp_server(http)
    assert not await ldap_answers(url, within=2, ssl_context=trusting(slapd_server))


async def test_a_server_that_closes_at_once_does_not_count(
    tcp_server: Callable[[Handler], Awaitable[str]], slapd_server: Slapd
) -> None:
    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    url = await tcp_server(hang_up)
    assert not await ldap_answers(url, within=2, ssl_context=trusting(slapd_server))


async def test_the_probe_sends_no_credentials(
    tcp_server: Callable[[Handler], Awaitable[str]], slapd_server: Slapd
) -> None:
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(100))
        # A bindResponse: messageID 1, resultCode success, no matchedDN, no message.
        writer.write(bytes.fromhex("300c02010161070a010004000400"))

    url = await tcp_server(record)
    assert await ldap_answers(url, within=2, ssl_context=trusting(slapd_server))
    # An anonymous simple bind: version 3, empty name, empty password.
    assert received == [bytes.fromhex("300c020101600702010304008000")]


def test_an_unverified_context_is_used_only_when_verification_is_off() -> None:
    ca = trustme.CA()
    with ca.cert_pem.tempfile() as ca_file:
        verified = probe_ssl_context(ca_file=ca_file, verify=True)
    assert verified.verify_mode is ssl.CERT_REQUIRED
    assert verified.check_hostname
    assert probe_ssl_context(ca_file=None, verify=False).verify_mode is ssl.CERT_NONE
