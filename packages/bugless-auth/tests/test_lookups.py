"""GetUsers, LookupUsers and SuggestUsers: batches, the cache, renames."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from conftest import AuthServer, StartAuth, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_core.auth_backend import ExternalIdentity, PasswordAuthenticator
from bugless_core.hookspecs import hookimpl
from bugless_core.registry import AuthenticatorRegistrar
from bugless_proto import v1


class FakeDirectory(PasswordAuthenticator):
    """A directory whose entries a test edits: subject → (username, display name)."""

    name = "fakedir"
    entries: ClassVar[dict[str, tuple[str, str]]] = {}

    @classmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        return cls()

    async def authenticate(self, username: str, password: str) -> ExternalIdentity | None:
        for subject, (name, display) in self.entries.items():
            if name == username and password == "pw":
                return ExternalIdentity(subject=subject, username=name, display_name=display)
        return None


class FakeDirectoryPlugin:
    @hookimpl
    def bugless_register_authenticators(self, register: AuthenticatorRegistrar) -> None:
        register(FakeDirectory)


async def test_get_users_answers_in_request_order_with_missing_ids(auth: AuthServer) -> None:
    a = await auth.add_user(unique("ga"))
    b = await auth.add_user(unique("gb"))

    answer = await auth.stub.get_users(
        v1.GetUsersRequest(user_ids=[b.user_id, "u_nobody", a.user_id, b.user_id])
    )

    assert [u.user_id for u in answer.users] == [b.user_id, a.user_id]
    assert answer.missing == ["u_nobody"]
    assert answer.users[0].username == b.username


async def test_lookup_users_is_case_insensitive(auth: AuthServer) -> None:
    a = await auth.add_user(unique("La"))

    answer = await auth.stub.lookup_users(
        v1.LookupUsersRequest(usernames=[a.username.upper(), "nobody-here"])
    )

    assert [u.user_id for u in answer.users] == [a.user_id]
    assert answer.missing == ["nobody-here"]


async def test_batches_over_the_limit_are_refused(auth: AuthServer) -> None:
    error = await expect_status(
        auth.stub.get_users(v1.GetUsersRequest(user_ids=[f"u_{i}" for i in range(1001)])),
        Status.INVALID_ARGUMENT,
    )
    assert "1000" in (error.message or "")
    await expect_status(
        auth.stub.lookup_users(v1.LookupUsersRequest(usernames=[""])), Status.INVALID_ARGUMENT
    )


async def test_rename_is_visible_after_the_cache_ttl_and_the_id_is_stable(
    start_auth_server: StartAuth,
) -> None:
    subject = f"fake:{unique('s')}"
    old, new = unique("old"), unique("new")
    FakeDirectory.entries[subject] = (old, "Old Name")
    common: dict[str, Any] = {
        "authenticators": ("fakedir",),
        "extra_plugins": [FakeDirectoryPlugin()],
        "cache_ttl_seconds": 4.0,  # outlasts a sign-in on a loaded machine
    }
    replica = await start_auth_server(**common)
    other = await start_auth_server(schema=replica.settings.schema, **common)
    first = await replica.sign_in(old, "pw")
    assert first.identity is not None
    assert first.identity.user is not None
    user_id = first.identity.user.user_id
    await replica.stub.get_users(v1.GetUsersRequest(user_ids=[user_id]))  # cached now

    FakeDirectory.entries[subject] = (new, "New Name")
    renamed = await other.sign_in(new, "pw")  # the login refreshes the store
    assert renamed.identity is not None
    assert renamed.identity.user is not None
    assert renamed.identity.user.user_id == user_id

    cached = await replica.stub.get_users(v1.GetUsersRequest(user_ids=[user_id]))
    assert cached.users[0].username == old, "served from the cache within the TTL"
    await asyncio.sleep(4.1)
    fresh = await replica.stub.get_users(v1.GetUsersRequest(user_ids=[user_id]))
    assert fresh.users[0].username == new
    assert fresh.users[0].display_name == "New Name"
    by_name = await replica.stub.lookup_users(v1.LookupUsersRequest(usernames=[new, old]))
    assert [u.user_id for u in by_name.users] == [user_id]
    assert by_name.missing == [old]


async def test_a_directory_reusing_a_username_takes_it_from_its_stale_holder(
    start_auth_server: StartAuth,
) -> None:
    name = unique("reuse")
    gone, newcomer = f"fake:{unique('g')}", f"fake:{unique('n')}"
    server = await start_auth_server(
        authenticators=("fakedir",), extra_plugins=[FakeDirectoryPlugin()]
    )
    FakeDirectory.entries[gone] = (name, "Gone")
    first = await server.sign_in(name, "pw")
    del FakeDirectory.entries[gone]
    FakeDirectory.entries[newcomer] = (name, "Newcomer")

    second = await server.sign_in(name, "pw")

    assert first.identity
    assert first.identity.user
    assert second.identity
    assert second.identity.user
    assert second.identity.user.user_id != first.identity.user.user_id
    old = await server.stub.get_users(v1.GetUsersRequest(user_ids=[first.identity.user.user_id]))
    assert old.users[0].username.startswith(f"{name}~")


async def test_a_username_held_by_another_authenticator_is_refused(
    start_auth_server: StartAuth,
) -> None:
    name = unique("clash")
    server = await start_auth_server(
        authenticators=("local", "fakedir"), extra_plugins=[FakeDirectoryPlugin()]
    )
    await server.add_user(name)
    FakeDirectory.entries[f"fake:{unique('c')}"] = (name, "Clash")

    error = await expect_status(server.sign_in(name, "pw"), Status.FAILED_PRECONDITION)
    assert "already belongs" in (error.message or "")


async def test_suggest_matches_prefixes_of_name_display_name_and_email(
    auth: AuthServer,
) -> None:
    tag = unique("sg").replace("-", "")
    u1 = await auth.add_user(f"{tag}one", display_name="Zed")
    u2 = await auth.add_user("x" + tag, display_name=f"{tag} Two")
    u3 = await auth.add_user("y" + tag, email=f"{tag}@example.org")
    u4 = await auth.add_user(f"{tag}off")
    await auth.store.set_disabled(u4.username, True)
    await auth.add_user("z" + tag, display_name="100%")

    answer = await auth.stub.suggest_users(v1.SuggestUsersRequest(prefix=tag.upper()))
    limited = await auth.stub.suggest_users(v1.SuggestUsersRequest(prefix=tag, limit=1))
    wildcard = await auth.stub.suggest_users(v1.SuggestUsersRequest(prefix="%"))

    assert {u.user_id for u in answer.users} == {u1.user_id, u2.user_id, u3.user_id}
    assert len(limited.users) == 1
    assert wildcard.users == []
    await expect_status(
        auth.stub.suggest_users(v1.SuggestUsersRequest(prefix=tag, limit=51)),
        Status.INVALID_ARGUMENT,
    )
