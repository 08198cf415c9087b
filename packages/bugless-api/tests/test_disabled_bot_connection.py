"""A bot disabled while its connection is open is told so on that connection, promptly.

The API keeps a connection's identity for ``--identity-ttl-seconds`` (300 by
default). A disabled bot's open connection used to keep answering ``WhoAmI``
for up to that long, while its Model calls failed within about 2 s with the
Model's "the identity assertion's session has ended: sign in again", which
means nothing to a bot and does not say its user was disabled. The API now
drops the identities of the users the users' change feed names (as a web
session learns of a disable within its token cache), and a Model refusal of
an ended session is answered with the Authenticator's reason. Real stack
(PostgreSQL, Model, Authenticator), a real API over mutual TLS, a bot
certificate of the stack's PKI, the CLI's ``auth user disable``.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time

import pytest
from api_support import Bots, extra_api
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from bugless_core.errors import from_grpc_error
from bugless_core.grpc import build_client_ssl_context
from bugless_dev.stack import LocalStack
from bugless_proto import v1


def _bot(stack: LocalStack) -> tuple[str, ssl.SSLContext]:
    """A new bot user (mapped by its CN) and a TLS context with its certificate."""
    username = f"bot-{secrets.token_hex(3)}"
    files = stack.pki.client_certificate_for(username)
    return username, build_client_ssl_context(stack.pki.ca_file, files.cert, files.key)


def _assert_told_disabled(error: GRPCError) -> None:
    assert error.status is Status.UNAUTHENTICATED, error
    assert from_grpc_error(error).reason == "USER_DISABLED", error.message
    assert "disabled" in (error.message or "")
    assert "sign in again" not in (error.message or "")


async def test_a_disabled_bots_open_connection_is_refused_within_seconds(bots: Bots) -> None:
    """WhoAmI and Model calls on the connection opened before the disable both say disabled."""
    async with extra_api(bots, identity_ttl_seconds=300.0) as running:
        username, context = _bot(bots.stack)
        channel = Channel("127.0.0.1", running.port, ssl=context)
        try:
            account = v1.AccountStub(channel)
            me = await account.who_am_i(v1.WhoAmIRequest(), timeout=10)
            assert me.user is not None
            assert me.user.username == username
            await asyncio.to_thread(bots.stack.run_bugless, "auth", "user", "disable", username)
            disabled_at = time.monotonic()
            refused: GRPCError | None = None
            while refused is None and time.monotonic() - disabled_at < 20:
                try:
                    await account.who_am_i(v1.WhoAmIRequest(), timeout=10)
                except GRPCError as exc:
                    refused = exc
                else:
                    await asyncio.sleep(0.2)
            assert refused is not None, "WhoAmI still answered 20 s after the disable"
            _assert_told_disabled(refused)
            with pytest.raises(GRPCError) as model_call:
                await v1.ComponentsStub(channel).list_components(
                    v1.ListComponentsRequest(), timeout=10
                )
            _assert_told_disabled(model_call.value)
        finally:
            channel.close()


async def test_a_model_refusal_of_the_ended_session_says_the_user_is_disabled(
    bots: Bots,
) -> None:
    """No feed followed (--user-changes-seconds 0): the Model learns first; the bot hears why."""
    async with extra_api(bots, identity_ttl_seconds=300.0, user_changes_seconds=0.0) as running:
        username, context = _bot(bots.stack)
        channel = Channel("127.0.0.1", running.port, ssl=context)
        try:
            components = v1.ComponentsStub(channel)
            await components.list_components(v1.ListComponentsRequest(), timeout=10)
            await asyncio.to_thread(bots.stack.run_bugless, "auth", "user", "disable", username)
            disabled_at = time.monotonic()
            refused: GRPCError | None = None
            while refused is None and time.monotonic() - disabled_at < 20:
                try:
                    await components.list_components(v1.ListComponentsRequest(), timeout=10)
                except GRPCError as exc:
                    refused = exc
                else:
                    await asyncio.sleep(0.2)
            assert refused is not None, "Model calls still answered 20 s after the disable"
            _assert_told_disabled(refused)
        finally:
            channel.close()
