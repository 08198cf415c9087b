"""GetUsers, LookupUsers and SuggestUsers: batches, the cache, renames."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import asyncpg
from auth_support import AuthServer, StartAuth, set_disabled, unique
from grpc_errors import expect_status
from grpclib.const import Status

from bugless_auth.directory import CachedUser, EncodedUsersResponse
from bugless_auth.store import IdentityStore, UserRecord
from bugless_core.auth_backend import ExternalIdentity, PasswordAuthenticator
from bugless_core.hookspecs import hookimpl
from bugless_core.migrations import quote_schema
from bugless_core.registry import AuthenticatorRegistrar
from bugless_proto import v1
from bugless_testing.polling import eventually


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
        # The TTL is what this test is about: the replicas read the users'
        # change feed at start and then not for a minute, so the cache is
        # not following it when the rename comes (the feed's own tests show a
        # rename within a poll). With the default 1 s poll, a sign-in
        # slower than that on a loaded machine let the feed show the rename
        # before the first read below, and the test failed.
        "user_changes_seconds": 60.0,
    }
    replica = await start_auth_server(**common)
    other = await start_auth_server(schema=replica.settings.schema, **common)

    async def followed() -> bool:  # what it caches from now on is kept its TTL
        return replica.service.directory.version > 0

    await eventually(followed, "the replica's first read of the feed")
    first = await replica.sign_in(old, "pw")
    assert first.identity is not None
    assert first.identity.user is not None
    user_id = first.identity.user.user_id
    cached_from = time.monotonic()
    await replica.stub.get_users(v1.GetUsersRequest(user_ids=[user_id]))  # cached now

    FakeDirectory.entries[subject] = (new, "New Name")
    renamed = await other.sign_in(new, "pw")  # the login refreshes the store
    assert renamed.identity is not None
    assert renamed.identity.user is not None
    assert renamed.identity.user.user_id == user_id

    cached = await replica.stub.get_users(v1.GetUsersRequest(user_ids=[user_id]))
    # Within the TTL the cache must answer; a machine too loaded to ask again
    # within it (a sign-in taking seconds) cannot tell, and checks the rest.
    within_ttl = time.monotonic() - cached_from < 4.0
    assert cached.users[0].username == old or not within_ttl, "served from the cache"
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
    await set_disabled(auth.store, u4.username, True)
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


async def test_suggest_folds_names_by_unicode_case_folding(auth: AuthServer) -> None:
    """A prefix matches in any case by ``str.casefold``, not by SQL's ASCII-only ``lower()``.

    "Émile…" is suggested for "émile…", "ÉMILE…" and "Émile…" (the prefix
    was lower-cased in Python, the name by ``lower()`` under the C locale,
    which leaves "É"); "Straße…" for "STRASSE…". Users whose folds are gone
    (made before migration 0010) are folded again by ``migrate``.
    """
    tag = unique("fold").replace("-", "")
    emile = await auth.add_user("e" + tag, display_name=f"Émile{tag} Zola")
    street = await auth.add_user("s" + tag, display_name=f"Straße{tag}")
    cases = (
        (f"émile{tag}", emile),
        (f"ÉMILE{tag.upper()}", emile),
        (f"Émile{tag} z", emile),
        (f"STRASSE{tag.upper()}", street),
        (f"straße{tag}", street),
    )

    async def suggested() -> list[tuple[str, list[str]]]:
        found = []
        for prefix, _ in cases:
            answer = await auth.stub.suggest_users(v1.SuggestUsersRequest(prefix=prefix))
            found.append((prefix, [u.user_id for u in answer.users]))
        return found

    expected = [(prefix, [user.user_id]) for prefix, user in cases]
    assert await suggested() == expected
    settings = auth.settings
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(settings.schema)}")
        unfold = (
            "UPDATE users SET username_fold = NULL, display_name_fold = NULL, email_fold = NULL"
            " WHERE user_id = ANY($1::text[])"
        )
        await conn.execute(unfold, [emile.user_id, street.user_id])
        assert [ids for _, ids in await suggested()] == [[]] * len(cases)
        head = "SELECT version FROM user_changes_state WHERE name = 'head'"
        before = await conn.fetchval(head)
        await IdentityStore.migrate(settings.database_url, settings.schema)
        logged = "SELECT array_agg(user_id ORDER BY user_id) FROM user_changes WHERE version > $1"
        assert await conn.fetchval(logged, before) == sorted([emile.user_id, street.user_id])
    finally:
        await conn.close()
    assert await suggested() == expected


async def test_get_users_answers_each_kind_of_user_with_betterproto2s_bytes(
    auth: AuthServer,
) -> None:
    """A cached user's entry is encoded by upb: the reply must be betterproto2's.

    Disabled users, placeholders (a merged one carries its real account's data)
    and names outside ASCII go over real gRPC, read once from the store (a
    miss) and once from the cache; the ids that match nobody stay in order.
    """
    plain = await auth.add_user(unique("wire"), display_name="Zoë Ünïcode 東京", email="z@x.org")
    gone = await auth.add_user(unique("wired"))
    disabled = await set_disabled(auth.store, gone.username, True)
    token = (
        await auth.sign_in((await auth.add_user(unique("adm"), groups=["admins"])).username)
    ).token
    key = unique("ph")
    matched = await auth.stub.match_import_users(
        v1.MatchImportUsersRequest(
            token=token,
            source="trac",
            people=[v1.SourcePerson(key=key, username=key, display_name="Old Person")],
            create_placeholders=True,
        )
    )
    placeholder = matched.matches[0].user
    assert placeholder is not None
    assert placeholder.placeholder
    key2 = unique("ph")
    second = await auth.stub.match_import_users(
        v1.MatchImportUsersRequest(
            token=token,
            source="trac",
            people=[v1.SourcePerson(key=key2, username=key2)],
            create_placeholders=True,
        )
    )
    merged = second.matches[0].user
    assert merged is not None
    await auth.stub.merge_placeholder(
        v1.MergePlaceholderRequest(token=token, placeholder=merged.username, into=plain.username)
    )
    ids = [plain.user_id, "u_nobody", disabled.user_id, placeholder.user_id, merged.user_id]
    records = {r.user_id: r for r in await auth.store.users_by_ids(ids)}
    expected = v1.UsersResponse(
        users=[
            v1.User(
                user_id=i,
                username=records[i].username,
                display_name=records[i].display_name,
                email=records[i].email,
                disabled=records[i].disabled,
                bot=records[i].bot,
                placeholder=records[i].placeholder,
            )
            for i in ids
            if i in records
        ],
        missing=["u_nobody"],
    )
    assert expected.users[1].disabled
    assert expected.users[2].placeholder
    assert expected.users[3].username == plain.username, "merged: the real account's data"
    assert expected.users[0].display_name == "Zoë Ünïcode 東京"

    for _ in range(2):  # the first may miss the cache, the second hits it
        answer = await auth.stub.get_users(v1.GetUsersRequest(user_ids=ids))
        assert answer.version >= 1, "the users' change feed version the replica had applied"
        expected.version = answer.version
        assert answer == expected
        assert bytes(answer) == bytes(expected)


def test_a_cached_users_entry_is_betterproto2s_bytes() -> None:
    """Every field of a user, merged ids included, as betterproto2 writes the entry."""
    record = UserRecord(
        user_id="u_1",
        username="zoë",
        display_name="Zoë 東京",
        email="z@example.org",
        groups=("eng",),
        disabled=True,
        bot=True,
        placeholder=True,
        merged_ids=("u_2", "u_3"),
    )
    cached = CachedUser.of(record)
    assert cached.encoded == bytes(v1.UsersResponse(users=[cached.message]))
    assert list(cached.message.merged_user_ids) == ["u_2", "u_3"]
    empty = CachedUser.of(UserRecord("u_4", "x", "", "", (), False, False))
    assert empty.encoded == bytes(v1.UsersResponse(users=[empty.message]))
    response = EncodedUsersResponse.of([cached, empty], ["u_gone"])
    assert bytes(response) == bytes(
        v1.UsersResponse(users=[cached.message, empty.message], missing=["u_gone"])
    )
    for version in (1, 127, 128, 2**40):  # one and several varint bytes
        at_version = EncodedUsersResponse.of([cached], ["u_gone"], version)
        assert bytes(at_version) == bytes(
            v1.UsersResponse(users=[cached.message], missing=["u_gone"], version=version)
        )
