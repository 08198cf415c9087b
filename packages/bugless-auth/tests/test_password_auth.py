"""AuthenticatePassword over gRPC with the local backend."""

from __future__ import annotations

import datetime

from auth_support import PASSWORD, AuthServer, set_disabled, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.service import WRONG_CREDENTIALS
from bugless_proto import v1


async def test_right_password_returns_identity_and_token(auth: AuthServer) -> None:
    name = unique("alice")
    user = await auth.add_user(name, groups=["eng"], display_name="Alice A", email="a@x.org")

    result = await auth.sign_in(name)

    assert result.identity is not None
    assert result.identity.user is not None
    assert result.identity.user.user_id == user.user_id
    assert result.identity.user.user_id.startswith("u_")
    assert result.identity.user.username == name
    assert result.identity.user.display_name == "Alice A"
    assert result.identity.user.email == "a@x.org"
    assert result.identity.groups == ["eng"]
    assert result.identity.authenticator == "local"
    assert result.token
    assert result.expires_at is not None
    assert result.expires_at > datetime.datetime.now(datetime.UTC)


async def test_username_is_case_insensitive_and_id_stable(auth: AuthServer) -> None:
    name = unique("Bob")
    await auth.add_user(name)
    first = await auth.sign_in(name.lower())
    second = await auth.sign_in(name.upper())
    assert first.identity
    assert first.identity.user
    assert second.identity
    assert second.identity.user
    assert first.identity.user.user_id == second.identity.user.user_id


async def test_wrong_password_and_unknown_user_are_indistinguishable(auth: AuthServer) -> None:
    name = unique("carol")
    await auth.add_user(name)

    wrong = await expect_status(auth.sign_in(name, "not-it"), Status.UNAUTHENTICATED)
    unknown = await expect_status(auth.sign_in(unique("nobody"), "not-it"), Status.UNAUTHENTICATED)

    assert wrong.message == unknown.message == WRONG_CREDENTIALS


async def test_empty_password_is_refused(auth: AuthServer) -> None:
    name = unique("dan")
    await auth.add_user(name)
    await expect_status(auth.sign_in(name, ""), Status.UNAUTHENTICATED)


async def test_empty_username_is_invalid_argument(auth: AuthServer) -> None:
    error = await expect_status(auth.sign_in("", PASSWORD), Status.INVALID_ARGUMENT)
    assert "username" in (error.message or "")


async def test_disabled_user_cannot_sign_in(auth: AuthServer) -> None:
    name = unique("erin")
    await auth.add_user(name)
    await set_disabled(auth.store, name, True)

    error = await expect_status(auth.sign_in(name), Status.UNAUTHENTICATED)
    assert "disabled" in (error.message or "")


async def test_list_authenticators_names_the_enabled_backends(auth: AuthServer) -> None:
    answer = await auth.stub.list_authenticators(v1.ListAuthenticatorsRequest())
    assert [(a.name, a.kind) for a in answer.authenticators] == [("local", "password")]


async def test_hash_with_old_parameters_is_upgraded_on_sign_in(auth: AuthServer) -> None:
    from argon2 import PasswordHasher

    name = unique("fay")
    await auth.add_user(name)
    old = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1).hash(PASSWORD)
    await auth.store.set_local_password(name, old)

    await auth.sign_in(name)

    found = await auth.store.local_credentials(name)
    assert found is not None
    assert found[1] != old
    assert not auth.service.hashes.needs_rehash(found[1])
