"""Session tokens through ValidateToken: round trip, expiry, rotation, tampering, disabling."""

from __future__ import annotations

import asyncio
import time

from auth_support import AuthServer, KeyFiles, StartAuth, set_disabled, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_proto import v1


async def validate(server: AuthServer, token: str) -> v1.Identity:
    return await server.stub.validate_token(v1.ValidateTokenRequest(token=token))


async def test_token_round_trip_gives_back_the_identity(auth: AuthServer) -> None:
    name = unique("tina")
    user = await auth.add_user(name, groups=["eng"])
    signed_in = await auth.sign_in(name)

    identity = await validate(auth, signed_in.token)

    assert identity.user is not None
    assert identity.user.user_id == user.user_id
    assert identity.user.username == name
    assert identity.groups == ["eng"]
    assert identity.authenticator == "local"


async def test_expired_token_is_refused(start_auth_server: StartAuth) -> None:
    # A few seconds of life, so a loaded machine still validates it once before
    # it expires; then wait until its own expiry time has passed.
    server = await start_auth_server(token_ttl_seconds=4)
    name = unique("eve")
    await server.add_user(name)
    signed_in = await server.sign_in(name)
    token = signed_in.token
    await validate(server, token)
    assert signed_in.expires_at is not None

    await asyncio.sleep(max(0.0, signed_in.expires_at.timestamp() - time.time()) + 1.1)

    error = await expect_status(validate(server, token), Status.UNAUTHENTICATED)
    assert "expired" in (error.message or "")


async def test_tampered_token_is_refused(auth: AuthServer) -> None:
    name = unique("mallory")
    await auth.add_user(name)
    token = (await auth.sign_in(name)).token
    header, payload, signature = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]

    for bad in (f"{header}.{flipped}.{signature}", token[:-3], "not-a-token", token + "x"):
        error = await expect_status(validate(auth, bad), Status.UNAUTHENTICATED)
        assert "invalid" in (error.message or "")


async def test_old_key_verifies_while_listed_and_not_after_removal(
    start_auth_server: StartAuth, key_files: KeyFiles
) -> None:
    before = await start_auth_server(token_keys=(key_files.first,))
    name = unique("rot")
    await before.add_user(name)
    old_token = (await before.sign_in(name)).token
    schema = before.settings.schema

    during = await start_auth_server(schema=schema, token_keys=(key_files.second, key_files.first))
    await validate(during, old_token)
    new_token = (await during.sign_in(name)).token
    after = await start_auth_server(schema=schema, token_keys=(key_files.second,))

    await validate(after, new_token)
    await expect_status(validate(after, old_token), Status.UNAUTHENTICATED)
    # A replica that does not know the new key yet cannot accept its tokens.
    await expect_status(validate(before, new_token), Status.UNAUTHENTICATED)


async def test_shared_secret_keys_sign_with_hs256(
    start_auth_server: StartAuth, key_files: KeyFiles
) -> None:
    server = await start_auth_server(token_keys=(key_files.secret,))
    name = unique("hs")
    await server.add_user(name)
    token = (await server.sign_in(name)).token

    assert (await validate(server, token)).user is not None


async def test_token_of_a_user_disabled_elsewhere_stops_working_at_once(
    start_auth_server: StartAuth,
) -> None:
    """Disabled through another path (another replica, the CLI): the session ended with it.

    Before, the test disabled the row alone (``IdentityStore.set_disabled``,
    since removed) and the token was refused only once this replica's cache
    of the user expired; no caller can disable a user without ending their
    sessions in the same transaction any more, so the token is refused on
    its next validation, whatever the cache holds.
    """
    server = await start_auth_server(cache_ttl_seconds=600)
    name = unique("dis")
    await server.add_user(name)
    token = (await server.sign_in(name)).token
    await validate(server, token)

    await set_disabled(server.store, name)  # as another replica or the CLI would

    error = await expect_status(validate(server, token), Status.UNAUTHENTICATED)
    assert "session has ended" in (error.message or "")


async def test_empty_token_is_unauthenticated(auth: AuthServer) -> None:
    await expect_status(validate(auth, ""), Status.UNAUTHENTICATED)
