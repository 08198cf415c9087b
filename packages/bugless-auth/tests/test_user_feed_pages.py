"""A follower's read of the users' change feed that the database ends between two pages.

Real PostgreSQL: a follower with one-version pages (``page_rows=1``) on a
store of one connection, held between its pages by real table locks and
then ended by ``pg_terminate_backend`` from a second connection, as an
operator's kill or a failover ends it. Page one is applied; page two never
arrived, so the read must not count as complete: the replica's cache falls
back to its TTL from the last complete read, and the next poll reads on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from auth_support import AuthServer, StartAuth, set_disabled, unique
from prometheus_client import CollectorRegistry

from bugless_auth.directory import UserDirectory
from bugless_auth.store import IdentityStore
from bugless_auth.user_feed import UserFeedFollower, read_user_changes
from bugless_core.errors import Unavailable
from bugless_testing.polling import eventually

#: The cache's TTL (trusted this long without the feed; 10 minutes with it).
TTL_SECONDS = 2.0
#: How long after the complete read the failing one begins.
LATER_SECONDS = 1.0

#: Backends waiting for a lock the connection running this holds (or waits for ahead of them).
#: Read from pg_locks, afresh by every statement: pg_stat_activity, polled in the
#: lock holder's transaction, is the snapshot of its first read (a backend that
#: connected later is never seen; see auth_support.WAITERS).
LOCK_WAITERS = """
SELECT DISTINCT pid FROM pg_locks
 WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))
"""


@pytest.fixture
async def one_connection(
    start_auth_server: StartAuth,
) -> AsyncIterator[tuple[AuthServer, IdentityStore]]:
    """An Authenticator (for writes) and a store of one connection on its schema."""
    auth = await start_auth_server(user_changes_seconds=30.0)
    store = await IdentityStore.open(
        auth.settings.database_url, auth.settings.schema, pool_max_size=1
    )
    try:
        yield auth, store
    finally:
        await store.close()


def _followed(
    store: IdentityStore, *, registry: CollectorRegistry | None = None, **follower: int
) -> tuple[UserDirectory, UserFeedFollower]:
    """A replica's cache on ``store`` and its follower, polled only by the test."""
    directory = UserDirectory(store, ttl_seconds=TTL_SECONDS, max_entries=100, backstop_seconds=600)
    return directory, UserFeedFollower(
        store,
        directory,
        poll_seconds=30.0,
        retention_seconds=3600.0,
        metrics_registry=CollectorRegistry() if registry is None else registry,
        **follower,
    )


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


async def test_a_read_ended_between_pages_leaves_the_feed_read_at_the_last_complete_read(
    one_connection: tuple[AuthServer, IdentityStore],
) -> None:
    auth, store = one_connection
    metrics = CollectorRegistry()
    directory, follower = _followed(store, registry=metrics, page_rows=1)
    ann = await auth.add_user(unique("ann"))
    carol = await auth.add_user(unique("carol"))
    complete_read = time.monotonic()
    await follower.poll_once()  # follows from the head: the last complete read
    start = directory.version
    (cached,) = (await directory.get_many([carol.user_id]))[0]  # kept until she changes
    stored_at = time.monotonic()
    await set_disabled(auth.store, ann.username, True)  # page one: start + 1
    await set_disabled(auth.store, carol.username, True)  # page two: start + 2
    pid = await store.run(lambda conn: conn.fetchval("SELECT pg_backend_pid()"), transaction=False)
    await asyncio.sleep(complete_read + LATER_SECONDS - time.monotonic())

    holder = await asyncpg.connect(auth.settings.database_url)
    queued = await asyncpg.connect(auth.settings.database_url)
    table = f'"{auth.settings.schema}".user_changes_state'
    try:
        # Page one waits for the holder's lock; the queued lock waits behind
        # page one, so it is granted when page one ends, and page two waits
        # for it in turn: held between the pages, whatever the timing.
        holding = holder.transaction()
        await holding.start()
        await holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        poll = asyncio.create_task(follower.poll_once())

        async def waiting(locker: asyncpg.Connection, *pids: int) -> bool:
            return {row["pid"] for row in await locker.fetch(LOCK_WAITERS)} >= set(pids)

        await eventually(lambda: waiting(holder, pid), "page one waits for the lock", within=10)
        locking = queued.transaction()
        await locking.start()
        queued_lock = asyncio.create_task(
            queued.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        )
        await eventually(
            lambda: waiting(holder, pid, queued.get_server_pid()),
            "the lock queued behind it",
            within=10,
        )
        await holding.rollback()
        await queued_lock

        async def page_two_waits() -> bool:
            return directory.version == start + 1 and await waiting(queued, pid)

        await eventually(page_two_waits, "page one applied, page two waiting", within=10)
        assert _sample(metrics, "bugless_auth_user_changes_versions_behind") == 1, (
            "page one's read saw the head a version past it"
        )
        assert _sample(metrics, "bugless_auth_user_changes_lag_seconds") >= LATER_SECONDS
        assert await holder.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(Unavailable):
            await poll
        failures = "bugless_auth_user_changes_poll_failures_total"
        assert _sample(metrics, failures, reason="unavailable") == 1
        await locking.rollback()
    finally:
        await holder.close()
        await queued.close()

    following = directory.following
    assert following.version == start + 1, "page one applied"
    # The age first, then the clock: now() - read_age() read the clock twice in
    # the other order and came out microseconds *before* the read began (CI,
    # 18 µs at load 5); this order can only come out after it, by as much.
    age = following.read_age()
    read_began = following.now() - age
    assert complete_read <= read_began < complete_read + LATER_SECONDS, (
        "the feed counts as read when the last complete read began, not page one"
    )
    assert follower.recent.head == start, "nor does the replica answer from the failed read"
    reply = follower.answer(start)
    assert reply is not None
    assert reply.read_age_seconds >= LATER_SECONDS, "answered as of the last complete read"
    assert follower.answer(start + 1) is None, "page one is not answered from memory"

    await asyncio.sleep(max(0.0, stored_at + TTL_SECONDS + 0.1 - time.monotonic()))
    assert not following.following, "a TTL after the last complete read: on the TTL"
    (again,) = (await directory.get_many([carol.user_id]))[0]
    assert not cached.record.disabled
    assert again.record.disabled, "read again from the database: her change (page two) shows"

    await follower.poll_once()  # the pool reconnects; the read goes on from page one
    assert (following.version, follower.recent.head) == (start + 2, start + 2)
    assert _sample(metrics, "bugless_auth_user_changes_versions_behind") == 0
    assert _sample(metrics, "bugless_auth_user_changes_lag_seconds") < LATER_SECONDS
    assert following.following


async def test_polls_asked_at_once_read_the_feed_one_after_the_other(
    start_auth_server: StartAuth,
) -> None:
    """Two polls in flight could finish out of order and set the follower back."""
    auth = await start_auth_server(user_changes_seconds=30.0)
    store = await IdentityStore.open(
        auth.settings.database_url, auth.settings.schema, pool_max_size=2
    )
    directory, follower = _followed(store)
    await auth.add_user(unique("ann"))
    await follower.poll_once()
    await auth.add_user(unique("bob"))
    holder = await asyncpg.connect(auth.settings.database_url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(
            f'LOCK TABLE "{auth.settings.schema}".user_changes IN ACCESS EXCLUSIVE MODE'
        )
        polls = [asyncio.create_task(follower.poll_once()) for _ in range(2)]

        async def waiting() -> int:
            return len(await holder.fetch(LOCK_WAITERS))

        await eventually(
            lambda: _at_least(waiting, 1), "the first poll waits for the table", within=10
        )
        # The pool has a second connection: a second read in flight would queue
        # behind the lock at once. Time for it to (not) show up:
        await asyncio.sleep(0.5)
        assert await waiting() == 1, "both polls are reading at once"
        await transaction.rollback()
        await asyncio.wait_for(asyncio.gather(*polls), timeout=10)
    finally:
        await holder.close()
        await store.close()
    head = (await read_user_changes(auth.store, 0)).version
    assert (directory.version, follower.recent.head) == (head, head)


async def _at_least(count: Callable[[], Awaitable[int]], least: int) -> bool:
    return await count() >= least


async def test_a_write_through_the_followers_store_counts_as_behind_until_it_is_read(
    one_connection: tuple[AuthServer, IdentityStore],
) -> None:
    """``versions_behind`` counts what the follower knows of: its replica's own writes.

    Another replica's write is unknown until a read sees it (the gauge is a
    lower bound); either way a read brings it back to 0.
    """
    auth, store = one_connection
    metrics = CollectorRegistry()
    _, follower = _followed(store, registry=metrics)
    ann = await auth.add_user(unique("ann"))
    await follower.poll_once()

    def behind() -> float:
        return _sample(metrics, "bugless_auth_user_changes_versions_behind")

    assert behind() == 0
    await set_disabled(store, ann.username, True)  # through the follower's own store
    assert behind() == 1
    await set_disabled(auth.store, ann.username, False)  # through another replica's
    assert behind() == 1, "not known until read"
    await follower.poll_once()
    assert behind() == 0
