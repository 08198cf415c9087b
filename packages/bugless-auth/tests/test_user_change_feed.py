"""The users' change feed (GetUserChanges) and the Authenticator's cache following it.

Real PostgreSQL, real Authenticators over real gRPC sockets. The caches here
keep users 10 minutes (``cache_ttl_seconds=600``) so that whatever shows a
change within the test's deadline came through the feed, not a TTL.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from auth_support import (
    TEST_ENDS,
    AuthServer,
    StartAuth,
    admin_token,
    ldap_identity,
    set_disabled,
    unique,
)
from feed_support import changes_after, exact
from grpc_errors import expect_status
from grpclib.const import Status

import bugless_auth
from bugless_auth import _queries as sql
from bugless_auth import disabling
from bugless_auth.user_feed import prune_user_changes, read_user_changes
from bugless_auth.user_writes import UserWrites
from bugless_proto import v1
from bugless_testing.polling import eventually


async def start_following(start_auth_server: StartAuth, **extra: object) -> AuthServer:
    """An Authenticator with a long cache, polling the feed every 0.1 s."""
    return await start_auth_server(cache_ttl_seconds=600, user_changes_seconds=0.1, **extra)


async def head(auth: AuthServer) -> int:
    return (await changes_after(auth, 0)).version


async def test_each_kind_of_change_to_a_user_is_in_the_feed(start_auth_server: StartAuth) -> None:
    """A sign-in that renames, a disable, the re-sync's disable, a new placeholder and a merge."""
    auth = await start_following(start_auth_server)
    token = await admin_token(auth)
    ann, _ = await auth.store.resolve(ldap_identity(unique("ann"), "Ann"), "ldap")
    bob = await auth.add_user(unique("bob"))
    start = await head(auth)

    await auth.store.resolve(ldap_identity(ann.username, "Ann"), "ldap")
    unchanged = await changes_after(auth, start)
    assert exact(unchanged) == v1.UserChanges(version=start), (
        "a sign-in changing nothing is no change"
    )

    await auth.store.resolve(ldap_identity(ann.username, "Ann Renamed"), "ldap")
    renamed = await changes_after(auth, start)
    assert (renamed.user_ids, renamed.version, renamed.more) == ([ann.user_id], start + 1, False)

    await auth.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=token, username=bob.username, disabled=True)
    )
    await disabling.directory_disable(auth.store, ann.user_id, TEST_ENDS)  # the re-sync's
    disabled = await changes_after(auth, renamed.version)
    assert disabled.user_ids == [bob.user_id, ann.user_id]
    assert disabled.version == start + 3

    key = unique("ph")
    matched = await auth.stub.match_import_users(
        v1.MatchImportUsersRequest(
            token=token,
            source="trac",
            people=[v1.SourcePerson(key=key, username=key)],
            create_placeholders=True,
        )
    )
    placeholder = matched.matches[0].user
    assert placeholder is not None
    created = await changes_after(auth, disabled.version)
    assert created.user_ids == [placeholder.user_id], "a new id: caches forget it as unknown"

    await auth.stub.merge_placeholder(
        v1.MergePlaceholderRequest(token=token, placeholder=placeholder.username, into=bob.username)
    )
    merged = await changes_after(auth, created.version)
    assert sorted(merged.user_ids) == sorted([placeholder.user_id, bob.user_id])

    await auth.stub.set_user_disabled(
        v1.SetUserDisabledRequest(token=token, username=bob.username, disabled=False)
    )
    again = await changes_after(auth, merged.version)
    assert sorted(again.user_ids) == sorted([bob.user_id, placeholder.user_id]), (
        "a merged placeholder answers with the account's data: it changes with it"
    )


async def test_versions_are_in_commit_order_across_concurrent_writers(
    start_auth_server: StartAuth,
) -> None:
    """A writer that took a version holds the next one back until it commits."""
    auth = await start_following(start_auth_server)
    first = await auth.add_user(unique("first"))
    second = await auth.add_user(unique("second"))
    start = await head(auth)
    holding = asyncio.Event()
    release = asyncio.Event()

    async def slow_writer() -> int | None:
        async with auth.store.connection() as conn, conn.transaction():
            writes = UserWrites(conn)
            await writes.fetchrow(sql.SET_DISABLED, first.username, True)
            version = await writes.log()
            holding.set()
            await release.wait()
            return version

    slow = asyncio.create_task(slow_writer())
    await holding.wait()
    fast = asyncio.create_task(set_disabled(auth.store, second.username))

    async def second_waits_for_the_head_row() -> bool:
        async with auth.store.connection() as conn:
            waiting: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%user_changes_state%'"
            )
        return waiting > 0

    await eventually(second_waits_for_the_head_row, "the second writer waits for the first")
    assert exact(await changes_after(auth, start)) == v1.UserChanges(version=start)
    release.set()
    assert await slow == start + 1
    await fast
    after = await changes_after(auth, start)
    assert after.user_ids == [first.user_id, second.user_id]
    assert after.version == start + 2


async def test_a_page_ends_at_a_versions_end_and_says_more(start_auth_server: StartAuth) -> None:
    auth = await start_following(start_auth_server)
    users = [await auth.add_user(unique("p")) for _ in range(3)]
    start = await head(auth)
    for user in users:
        await set_disabled(auth.store, user.username, True)

    page = await read_user_changes(auth.store, start, page_rows=2)
    assert (page.user_ids, page.version, page.more) == (
        [users[0].user_id, users[1].user_id],
        start + 2,
        True,
    )
    rest = await read_user_changes(auth.store, page.version, page_rows=2)
    assert (rest.user_ids, rest.version, rest.more) == ([users[2].user_id], start + 3, False)


async def test_a_reader_behind_the_pruned_point_is_told_to_start_over(
    start_auth_server: StartAuth,
) -> None:
    auth = await start_following(start_auth_server)
    user = await auth.add_user(unique("gone"))
    start = await head(auth)
    await set_disabled(auth.store, user.username, True)
    await set_disabled(auth.store, user.username, False)

    await prune_user_changes(auth.store, 0.0)

    # The database's answers: the replica's follower may have read these
    # changes before the prune and answer with them (as exact, and kinder).
    behind = await read_user_changes(auth.store, start)
    assert behind == v1.UserChanges(version=start + 2, reset=True)
    assert await read_user_changes(auth.store, start + 2) == v1.UserChanges(version=start + 2)
    ahead = await changes_after(auth, start + 99)
    assert ahead.reset, "a version the feed never reached: another (or a restored) database"
    await expect_status(changes_after(auth, -1), Status.INVALID_ARGUMENT)


async def test_a_change_through_one_replica_shows_on_the_other_within_a_poll(
    start_auth_server: StartAuth,
) -> None:
    first = await start_following(start_auth_server)
    second = await start_following(start_auth_server, schema=first.settings.schema)
    name = unique("carol")
    carol, _ = await first.store.resolve(ldap_identity(name, "Carol"), "ldap")
    for replica in (first, second):  # both cache her (for 10 minutes)
        reply = await replica.stub.get_users(v1.GetUsersRequest(user_ids=[carol.user_id]))
        assert reply.users[0].display_name == "Carol"
        found = await replica.stub.lookup_users(v1.LookupUsersRequest(usernames=[name]))
        assert found.users[0].display_name == "Carol"

    await first.store.resolve(ldap_identity(name, "Carol Renamed"), "ldap")
    # The feed's head once the rename is in: the replicas' own writes may move
    # it further on while the test waits (a later version is not the rename's).
    renamed_at = await head(first)

    async def shows_rename(replica: AuthServer) -> bool:
        by_id = await replica.stub.get_users(v1.GetUsersRequest(user_ids=[carol.user_id]))
        by_name = await replica.stub.lookup_users(v1.LookupUsersRequest(usernames=[name]))
        return by_id.users[0].display_name == by_name.users[0].display_name == "Carol Renamed"

    await eventually(lambda: shows_rename(second), "the other replica shows the rename")
    await eventually(lambda: shows_rename(first), "the replica that wrote shows it")

    # A replica may show the rename before its follower applied it: an entry
    # past the TTL while the follower lags (a loaded machine) is read again
    # from the database, at the version the replica had applied (older).
    async def applied() -> bool:
        return second.service.directory.version >= renamed_at

    await eventually(applied, "the other replica applied the rename")
    reply = await second.stub.get_users(v1.GetUsersRequest(user_ids=[carol.user_id]))
    assert reply.version >= renamed_at, "answered at the version that holds the rename"


async def test_a_read_older_than_a_change_the_cache_applied_is_not_kept(
    start_auth_server: StartAuth,
) -> None:
    """The race: a read begun before a change, stored after the change's eviction."""
    auth = await start_following(start_auth_server)
    dave = await auth.add_user(unique("dave"))
    directory = auth.service.directory

    async def following() -> bool:
        return directory.version > 0

    await eventually(following, "following the feed")
    read_at = directory.version
    (before,) = await auth.store.users_by_ids([dave.user_id])  # the read, begun "before"
    await set_disabled(auth.store, dave.username, True)  # the change, through another path
    changed_at = await head(auth)

    async def applied() -> bool:
        return directory.version >= changed_at

    await eventually(applied, "the change applied")

    answered = directory.remember(before, read_at)  # the old read ends only now

    assert not answered.record.disabled, "the answer it was read for is what it read"
    fresh = await auth.stub.get_users(v1.GetUsersRequest(user_ids=[dave.user_id]))
    assert fresh.users[0].disabled, "the stale read was not kept"
    assert fresh.version >= changed_at


def test_every_statement_writing_users_runs_through_user_writes() -> None:
    """So no write can skip the feed: each returns its ids and is run by UserWrites only."""
    writing = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+users\b", re.IGNORECASE)
    statements = {
        name: value
        for name, value in vars(sql).items()
        if isinstance(value, str) and writing.search(value)
    }
    assert set(statements.values()) == set(sql.USER_WRITES)
    for name, statement in statements.items():
        assert re.search(r"RETURNING\b[^;]*\buser_id\b", statement), f"{name} returns no user_id"
    source = Path(bugless_auth.__file__).parent
    for path in source.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "_queries.py":
            assert not writing.search(text), f"{path.name} writes users outside _queries"
        for name in statements:
            runs = rf"(\w+)\.(fetchrow|fetch|fetchval|execute)\(\s*sql\.{name}\b"
            for use in re.finditer(runs, text):
                assert use[1] == "writes", f"{path.name}: sql.{name} run by {use[1]}"


async def test_a_placeholder_merged_again_names_the_account_it_left_in_the_feed(
    start_auth_server: StartAuth,
) -> None:
    """A mistaken merge corrected: the first account loses the placeholder from its merged ids.

    Caches keep a user by id with its ``merged_user_ids`` (``reporter:bob``
    matches what the placeholder did), so the account the placeholder left
    must be in the feed too, or they would go on counting it as bob's.
    """
    auth = await start_following(start_auth_server)
    token = await admin_token(auth)
    bob = await auth.add_user(unique("bob"))
    cyd = await auth.add_user(unique("cyd"))
    key = unique("cydold")
    matched = await auth.stub.match_import_users(
        v1.MatchImportUsersRequest(
            token=token,
            source="trac",
            people=[v1.SourcePerson(key=key, username=key)],
            create_placeholders=True,
        )
    )
    placeholder = matched.matches[0].user
    assert placeholder is not None
    await auth.stub.merge_placeholder(
        v1.MergePlaceholderRequest(token=token, placeholder=placeholder.username, into=bob.username)
    )
    start = await head(auth)

    await auth.stub.merge_placeholder(
        v1.MergePlaceholderRequest(token=token, placeholder=placeholder.username, into=cyd.username)
    )

    again = await changes_after(auth, start)
    assert sorted(again.user_ids) == sorted([placeholder.user_id, bob.user_id, cyd.user_id])
    looked = await auth.stub.lookup_users(
        v1.LookupUsersRequest(usernames=[bob.username, cyd.username])
    )
    merged = {user.username: list(user.merged_user_ids) for user in looked.users}
    assert merged == {bob.username: [], cyd.username: [placeholder.user_id]}
