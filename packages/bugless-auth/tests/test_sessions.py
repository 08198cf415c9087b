"""Server-side sessions and the shared throttle, across two Authenticator replicas.

Both replicas are real gRPC servers on one PostgreSQL schema, as two pods of
a deployment are: what one ends or counts, the other must see at once,
whatever it had cached.
"""

from __future__ import annotations

import pytest
from auth_support import PASSWORD, AuthServer, StartAuth, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.settings import ThrottleSettings
from bugless_auth.tokens import TokenAuthority, load_key
from bugless_proto import v1


@pytest.fixture
async def replicas(start_auth_server: StartAuth) -> tuple[AuthServer, AuthServer]:
    """Two Authenticators sharing one schema, each with a long user cache."""
    throttle = ThrottleSettings(
        per_user_address_limit=3, per_user_limit=20, per_address_limit=50, window_seconds=600
    )
    first = await start_auth_server(cache_ttl_seconds=600, throttle=throttle)
    second = await start_auth_server(
        schema=first.settings.schema, cache_ttl_seconds=600, throttle=throttle
    )
    return first, second


async def validate(server: AuthServer, token: str) -> v1.Identity:
    return await server.stub.validate_token(v1.ValidateTokenRequest(token=token))


async def sign_in(server: AuthServer, name: str, address: str, password: str = PASSWORD) -> str:
    result = await server.stub.authenticate_password(
        v1.AuthenticatePasswordRequest(username=name, password=password, client_address=address)
    )
    return result.token


async def test_signing_out_on_one_replica_ends_the_token_on_the_other(
    replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, second = replicas
    name = unique("out")
    await first.add_user(name)
    token = await sign_in(first, name, "10.1.0.1")
    assert (await validate(second, token)).user is not None  # now cached on `second`

    reply = await first.stub.revoke_sessions(v1.RevokeSessionsRequest(token=token))

    assert reply.revoked == 1
    error = await expect_status(validate(second, token), Status.UNAUTHENTICATED)
    assert "session has ended" in (error.message or "")
    again = await first.stub.revoke_sessions(v1.RevokeSessionsRequest(token=token))
    assert again.revoked == 0  # signing out twice is harmless


async def test_sign_out_everywhere_ends_every_session_of_the_user_only(
    replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, second = replicas
    name, other = unique("every"), unique("bystander")
    await first.add_user(name)
    await first.add_user(other)
    laptop = await sign_in(first, name, "10.1.1.1")
    phone = await sign_in(second, name, "10.1.1.2")
    bystander = await sign_in(first, other, "10.1.1.3")
    for token in (laptop, phone):
        await validate(second, token)

    reply = await second.stub.revoke_sessions(
        v1.RevokeSessionsRequest(token=phone, everywhere=True)
    )

    assert reply.revoked == 2
    for server in (first, second):
        for token in (laptop, phone):
            await expect_status(validate(server, token), Status.UNAUTHENTICATED)
        assert (await validate(server, bystander)).user is not None


async def test_an_ended_session_cannot_end_the_others(
    replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, _ = replicas
    name = unique("stale")
    await first.add_user(name)
    stolen = await sign_in(first, name, "10.1.2.1")
    live = await sign_in(first, name, "10.1.2.2")
    await first.stub.revoke_sessions(v1.RevokeSessionsRequest(token=stolen))

    await expect_status(
        first.stub.revoke_sessions(v1.RevokeSessionsRequest(token=stolen, everywhere=True)),
        Status.UNAUTHENTICATED,
    )
    assert (await validate(first, live)).user is not None


async def test_disabling_a_user_ends_their_sessions_on_every_replica_at_once(
    replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, second = replicas
    admin, name = unique("admin"), unique("leaver")
    await first.add_user(admin, groups=["admins"])
    await first.add_user(name)
    admin_token = await sign_in(first, admin, "10.1.3.1")
    token = await sign_in(second, name, "10.1.3.2")
    await validate(second, token)  # `second` now caches the user as enabled for 600 s

    await first.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=admin_token, username=name, disabled=True)
    )

    await expect_status(validate(second, token), Status.UNAUTHENTICATED)
    await first.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=admin_token, username=name, disabled=False)
    )
    # Re-enabling lets them sign in again; it does not bring old sessions back.
    await expect_status(validate(second, token), Status.UNAUTHENTICATED)
    assert (await validate(second, await sign_in(second, name, "10.1.3.2"))).user is not None


async def test_an_administrator_ends_another_users_sessions_and_nobody_else_may(
    replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, second = replicas
    admin, name = unique("admin"), unique("target")
    await first.add_user(admin, groups=["admins"])
    await first.add_user(name)
    admin_token = await sign_in(first, admin, "10.1.4.1")
    token = await sign_in(first, name, "10.1.4.2")
    other = await sign_in(first, name, "10.1.4.3")

    await expect_status(
        first.stub.revoke_sessions(v1.RevokeSessionsRequest(token=other, username=admin)),
        Status.PERMISSION_DENIED,
    )
    reply = await first.stub.revoke_sessions(
        v1.RevokeSessionsRequest(token=admin_token, username=name)
    )

    assert reply.revoked == 2
    await expect_status(validate(second, token), Status.UNAUTHENTICATED)
    assert (await validate(second, admin_token)).user is not None


async def test_a_correctly_signed_token_without_a_session_is_refused(
    replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, _ = replicas
    name = unique("forged")
    record = await first.add_user(name)
    authority = TokenAuthority(
        [load_key(first.settings.token_keys[0])],
        issuer=first.settings.token_issuer,
        ttl_seconds=600,
    )
    # Signed with the real key (as tokens issued before sessions existed
    # were), but no session was ever recorded for it.
    token = authority.issue(record.user_id, "local").token

    error = await expect_status(validate(first, token), Status.UNAUTHENTICATED)
    assert "session has ended" in (error.message or "")


async def test_one_address_cannot_lock_a_user_out(
    replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, _ = replicas
    name = unique("victim")
    await first.add_user(name)
    for _ in range(3):
        await expect_status(sign_in(first, name, "198.51.100.66", "wrong"), Status.UNAUTHENTICATED)
    # The attacker's address is held off, however long it keeps trying...
    for _ in range(5):
        await expect_status(
            sign_in(first, name, "198.51.100.66", "wrong"), Status.RESOURCE_EXHAUSTED
        )
    await expect_status(sign_in(first, name, "198.51.100.66"), Status.RESOURCE_EXHAUSTED)

    # ...while the user, from their own address, signs in at once.
    assert await sign_in(first, name, "203.0.113.5")


async def test_the_throttle_is_shared_by_the_replicas(
    replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, second = replicas
    name = unique("shared")
    await first.add_user(name)
    await expect_status(sign_in(first, name, "192.0.2.44", "wrong"), Status.UNAUTHENTICATED)
    await expect_status(sign_in(second, name, "192.0.2.44", "wrong"), Status.UNAUTHENTICATED)
    await expect_status(sign_in(first, name, "192.0.2.44", "wrong"), Status.UNAUTHENTICATED)

    # Three failures spread over two replicas trip the limit of three on both.
    for server in (first, second):
        error = await expect_status(
            sign_in(server, name, "192.0.2.44", "wrong"), Status.RESOURCE_EXHAUSTED
        )
        assert "try again in" in (error.message or "")


async def test_a_success_refills_the_address_bucket(
    replicas: tuple[AuthServer, AuthServer],
) -> None:
    first, second = replicas
    name = unique("typo")
    await first.add_user(name)
    for _ in range(2):
        await expect_status(sign_in(first, name, "192.0.2.90", "wrong"), Status.UNAUTHENTICATED)
    assert await sign_in(second, name, "192.0.2.90")

    for _ in range(3):  # a full allowance again, not the one try that was left
        await expect_status(sign_in(first, name, "192.0.2.90", "wrong"), Status.UNAUTHENTICATED)
