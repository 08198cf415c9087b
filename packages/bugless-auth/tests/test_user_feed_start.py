"""Caches of users before and at their first read of the users' change feed.

Real PostgreSQL and real in-process Authenticators over real gRPC. A cache
starts following the feed from the head its first read gives, and the feed
never names to it a change up to that head: what it looked up before, at a
lower version, may predate such a change and must not be served from the
cache. An Authenticator replica's follower reads first as the replica
starts (look-ups before that are at version 0); a test holds that read with
a real table lock taken from a second connection and makes the change in
the same transaction. A frontend's :class:`~bugless_core.user_cache.UserCache`
reads first as it is first used; a test decides when its reads reach the
Authenticator, and which replica each asks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from auth_support import AuthServer, StartAuth, set_disabled, unique
from feed_support import LOCK_WAITERS, polled

from bugless_auth import _queries as sql
from bugless_auth.user_writes import UserWrites
from bugless_core.migrations import quote_schema
from bugless_core.user_cache import UserCache, get_user_changes, get_users
from bugless_core.usernames import username_key
from bugless_proto import v1
from bugless_testing.polling import eventually

#: Longer than any test here: the replica's follower reads at its start, then not again.
SLOW_POLL_SECONDS = 60.0


@pytest.fixture
async def holder(start_auth_server: StartAuth) -> AsyncIterator[tuple[AuthServer, Any]]:
    """A replica with a user, and a connection to its schema (for the lock and the change)."""
    first = await start_auth_server(user_changes_seconds=SLOW_POLL_SECONDS)
    connection = await asyncpg.connect(
        first.settings.database_url,
        server_settings={"search_path": quote_schema(first.settings.schema)},
    )
    try:
        yield first, connection
    finally:
        await connection.close()


async def authorized(auth: AuthServer, user_id: str) -> bool:
    """Authorize by user id alone: the replica's cached record decides (disabled: never)."""
    answer = await auth.stub.authorize(
        v1.AuthorizeRequest(user_id=user_id, permission="manage_users")
    )
    return answer.allowed


async def test_a_user_looked_up_before_the_first_read_is_not_kept_past_a_change_it_read(
    start_auth_server: StartAuth, holder: tuple[AuthServer, Any]
) -> None:
    """Disabled between a look-up and the replica's first read: refused as soon as that read ends.

    The feed names the change to nobody who starts following after it, so
    what the replica cached at version 0 cannot be known to predate it: it
    is forgotten when following starts. Kept instead on the replica's
    ``cache_ttl_seconds`` (30 s), the disabled user was allowed by
    ``Authorize`` and shown enabled by ``GetUsers`` that long.
    """
    first, connection = holder
    admin = await first.add_user(unique("adm"), groups=["admins"])
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute("LOCK TABLE user_changes IN ACCESS EXCLUSIVE MODE")
        replica = await start_auth_server(
            schema=first.settings.schema, user_changes_seconds=SLOW_POLL_SECONDS
        )

        async def first_read_waits() -> bool:
            return len(await connection.fetch(LOCK_WAITERS)) == 1

        await eventually(first_read_waits, "the replica's first read of the feed waits")
        looked_up = await replica.stub.get_users(v1.GetUsersRequest(user_ids=[admin.user_id]))
        assert looked_up.version == 0, "answered before the replica followed the feed"
        assert not looked_up.users[0].disabled
        assert await authorized(replica, admin.user_id)

        writes = UserWrites(connection)
        await writes.fetchrow(sql.SET_DISABLED, username_key(admin.username), True)
        disabled_at = await writes.log()
    finally:
        await transaction.commit()
    assert disabled_at is not None

    async def following() -> bool:
        return replica.service.directory.version > 0

    await eventually(following, "the replica's first read ended")
    assert replica.service.directory.version >= disabled_at, "the read began after the change"

    answer = await replica.stub.get_users(v1.GetUsersRequest(user_ids=[admin.user_id]))
    assert answer.users[0].disabled
    assert not await authorized(replica, admin.user_id)


class GatedFeed:
    """A frontend's ``GetUserChanges``: each read asks the replica the test names, when it says.

    ``script`` holds, per read in order, the replica to ask and an event the
    read waits for before asking; ``asked`` records (replica, after_version)
    as each read reaches its replica.
    """

    def __init__(self, script: list[tuple[AuthServer, asyncio.Event]]) -> None:
        self.script = script
        self.asked: list[tuple[AuthServer, int]] = []
        self.reads = 0

    async def __call__(self, after_version: int) -> v1.UserChanges:
        replica, gate = self.script[self.reads]
        self.reads += 1
        await gate.wait()
        self.asked.append((replica, after_version))
        return await get_user_changes(replica.stub, timeout=5)(after_version)


def opened() -> asyncio.Event:
    gate = asyncio.Event()
    gate.set()
    return gate


async def test_a_frontend_forgets_what_it_read_below_the_head_it_starts_following_from(
    start_auth_server: StartAuth,
) -> None:
    """Looked up through a replica that has not read a change; the feed read after it, elsewhere.

    The frontend's first read comes from a replica whose feed has the
    change (here: answered from the database), so the feed never names it
    to the frontend: the user it kept from before (read below that head) is
    forgotten, and asked again. Kept on the frontend's TTL instead (600 s
    here), the disabled user was shown enabled that long.
    """
    behind = await start_auth_server(user_changes_seconds=SLOW_POLL_SECONDS)
    writer = await start_auth_server(
        schema=behind.settings.schema, user_changes_seconds=SLOW_POLL_SECONDS
    )
    gil = await writer.add_user(unique("gil"))
    looked_up_at = await polled(behind)
    first_read = asyncio.Event()
    feed = GatedFeed([(writer, first_read)])
    cache = UserCache(ttl_seconds=600, changes=feed, poll_seconds=SLOW_POLL_SECONDS / 2)
    users = get_users(behind.stub, timeout=5)
    try:
        # The first look-up starts the follower, whose first read waits at its gate.
        assert not (await cache.by_id([gil.user_id], users))[gil.user_id].disabled
        await set_disabled(writer.store, gil.username, True)
        first_read.set()

        async def following() -> bool:
            return cache.following.version > 0

        await eventually(following, "the frontend's first read of the feed ended")
        assert cache.following.version == looked_up_at + 1, "started after the change"
        await polled(behind)  # the replica asked for the user has the change now

        assert (await cache.by_id([gil.user_id], users))[gil.user_id].disabled
    finally:
        cache.close()


async def test_a_frontends_reads_of_the_feed_run_one_at_a_time(
    start_auth_server: StartAuth,
) -> None:
    """A read asked while another is under way asks after it, from where it left the feed.

    The follower's first read waits at a replica that has not read the
    change; a poll asked meanwhile waits for it, then asks another replica
    after that head and applies the change. Asked at once, both would ask
    after 0: answered out of order, the second answer started the frontend
    over at the older head, after the newer one (its position went back,
    and which version each change was at was forgotten).
    """
    behind = await start_auth_server(user_changes_seconds=SLOW_POLL_SECONDS)
    writer = await start_auth_server(
        schema=behind.settings.schema, user_changes_seconds=SLOW_POLL_SECONDS
    )
    gil = await writer.add_user(unique("gil"))
    before = await polled(behind)
    await set_disabled(writer.store, gil.username, True)
    held = asyncio.Event()
    feed = GatedFeed([(behind, held), (writer, opened())])
    cache = UserCache(ttl_seconds=600, changes=feed, poll_seconds=SLOW_POLL_SECONDS / 2)
    try:
        follower_reads = asyncio.create_task(cache.poll_changes())
        await asyncio.sleep(0)
        assert feed.reads == 1, "the first read waits at its gate"
        meanwhile = asyncio.create_task(cache.poll_changes())
        for _ in range(20):
            await asyncio.sleep(0)
        assert feed.reads == 1, "the second waits for the first"
        held.set()
        await asyncio.gather(follower_reads, meanwhile)
    finally:
        cache.close()
    assert [(r is writer, version) for r, version in feed.asked] == [(False, 0), (True, before)]
    assert cache.following.version == before + 1
    assert not cache.following.may_keep(gil.user_id, before), "the change is known"
