"""Who gets in: only verified client certificates that map to a bugless user."""

from __future__ import annotations

import asyncio
import datetime
import re
import ssl

import pytest
import trustme
from api_support import Bots, ConnectAs, extra_api
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bugless_api.server import RunningApi
from bugless_core.grpc import build_client_ssl_context
from bugless_dev.stack import LocalStack
from bugless_proto import v1

#: What a client sees when the server refuses its TLS handshake.
REFUSED = (ConnectionError, ssl.SSLError, StreamTerminatedError, OSError, asyncio.TimeoutError)


async def _who_am_i(port: int, context: ssl.SSLContext | None) -> v1.Identity:
    channel = Channel("127.0.0.1", port, ssl=context)
    try:
        return await v1.AccountStub(channel).who_am_i(v1.WhoAmIRequest(), timeout=10)
    finally:
        channel.close()


async def test_a_mapped_certificate_is_the_bot_it_maps_to(connect_as: ConnectAs) -> None:
    identity = await connect_as("robot").whoami()

    assert identity.user is not None
    assert identity.user.username == "robot"
    assert identity.user.bot
    assert "component-creators" in identity.groups


async def test_plaintext_is_refused(api: RunningApi) -> None:
    with pytest.raises(REFUSED):
        await _who_am_i(api.port, None)


async def test_tls_without_a_client_certificate_is_refused(
    api: RunningApi, bugless_stack: LocalStack
) -> None:
    context = build_client_ssl_context(bugless_stack.pki.ca_file)
    with pytest.raises(REFUSED):
        await _who_am_i(api.port, context)


async def test_a_certificate_from_another_ca_is_refused(
    api: RunningApi, bugless_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("stranger")
    stranger = trustme.CA().issue_cert("robot.bot", common_name="robot.bot")
    stranger.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    stranger.private_key_pem.write_to_path(str(directory / "key.pem"))
    context = build_client_ssl_context(
        bugless_stack.pki.ca_file, directory / "cert.pem", directory / "key.pem"
    )
    with pytest.raises(REFUSED):
        await _who_am_i(api.port, context)


async def test_an_expired_certificate_from_the_trusted_ca_is_refused(
    api: RunningApi, bugless_stack: LocalStack
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = bugless_stack.pki.issue_client_certificate(
        "expired.bot",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    bugless_stack.pki.map_subject("expired.bot", "expired")
    context = build_client_ssl_context(bugless_stack.pki.ca_file, expired.cert, expired.key)
    with pytest.raises(REFUSED):
        await _who_am_i(api.port, context)


async def test_a_valid_certificate_whose_subject_is_not_mapped_is_unauthenticated(
    api: RunningApi, bugless_stack: LocalStack
) -> None:
    unmapped = bugless_stack.pki.issue_client_certificate("nobody-knows-me")
    context = build_client_ssl_context(bugless_stack.pki.ca_file, unmapped.cert, unmapped.key)

    with pytest.raises(GRPCError) as caught:
        await _who_am_i(api.port, context)

    assert caught.value.status is Status.UNAUTHENTICATED
    assert caught.value.message is not None
    assert re.fullmatch(
        r"certificate subject .*CN=nobody-knows-me is not mapped to a bugless user",
        caught.value.message,
    )


async def test_identity_is_looked_up_once_per_connection(
    api: RunningApi, connect_as: ConnectAs
) -> None:
    client = connect_as("robot")
    before = api.gateway.identities.lookups
    for _ in range(5):
        await client.whoami()
    await asyncio.gather(*(client.whoami() for _ in range(10)))

    assert api.gateway.identities.lookups == before + 1

    other = connect_as("robot")
    await other.whoami()
    assert api.gateway.identities.lookups == before + 2


async def test_a_connections_identity_is_looked_up_again_once_its_ttl_ran_out(
    bots: Bots, connect_as: ConnectAs
) -> None:
    # A call on a connection whose identity is cached is admitted without
    # asking (IdentityResolver.cached); past identity_ttl_seconds the next call
    # asks the Authenticator again, so a disabled user or a removed mapping
    # stops working on a long-lived connection.
    #
    # The TTL is long enough for the calls within it to be made within it on
    # a loaded machine (at 0.5 s, three calls over mutual TLS could outlast it).
    ttl = 3.0
    async with extra_api(bots, identity_ttl_seconds=ttl) as running:
        client = connect_as("robot", port=running.port)
        await client.whoami()
        before = running.gateway.identities.lookups
        for _ in range(3):
            await client.whoami()
        assert running.gateway.identities.lookups == before

        await asyncio.sleep(ttl + 0.2)
        await client.whoami()
        await client.whoami()

        assert running.gateway.identities.lookups == before + 1


async def test_bots_map_to_distinct_identities(bots: Bots, connect_as: ConnectAs) -> None:
    robot, boss = await asyncio.gather(connect_as("robot").whoami(), connect_as("boss").whoami())

    assert robot.user is not None
    assert boss.user is not None
    assert robot.user.user_id != boss.user.user_id
    assert "admin" in boss.permissions
