"""A replica's feed follower that falls behind: its metrics show it, its log says it once.

Real PostgreSQL and real in-process Authenticators (their background
follower polling every second), held back by a real table lock taken from a
second connection: the follower's reads wait, as behind a long migration or
on a database that has stopped answering quickly. The metrics are read from
the registry the Authenticator's ``/metrics`` serves; an alert on them
(``deploy/README.md``) is evaluated on the same samples.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from auth_support import AuthServer, StartAuth, unique
from feed_support import LOCK_WAITERS

from bugless_auth.user_feed import FRESH_POLLS, LAGGING_POLLS
from bugless_core.user_cache import UserCache, get_user_changes, get_users
from bugless_proto import v1
from bugless_testing.polling import eventually

#: The follower's poll: long enough that a loaded machine's scheduling is well inside half of it.
POLL_SECONDS = 1.0
#: How long a test holds the follower's read (well past LAGGING_POLLS and FRESH_POLLS).
HELD_SECONDS = 3.0

#: Backends waiting for a lock held by the connection that runs this (the
#: test's locking connection). Not every lock waiter of the database: a
#: backend left waiting by another test, or a second statement of the server's
#: own, is no sign of the read the test holds.
LATE = re.compile(
    r"reading the users' change feed on time: a read ended ([0-9.]+) s after the one before "
    r"it began, more than 1\.5 polls of 1 s \(--user-changes-seconds\); answers from memory "
    r"are up to that old, where frontends allow for one poll \(UserChanges\.poll_seconds\); "
    r"past 2 polls callers are sent to the database \(reminded every 60 s while it lasts\)"
)


def sample(auth: AuthServer, name: str, **labels: str) -> float:
    value = auth.metrics.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


def lag(auth: AuthServer) -> float:
    return sample(auth, "bugless_auth_user_changes_lag_seconds")


def alert_fires(auth: AuthServer) -> bool:
    """``bugless_auth_user_changes_lag_seconds > 2 * bugless_auth_user_changes_poll_seconds``."""
    return lag(auth) > 2 * sample(auth, "bugless_auth_user_changes_poll_seconds")


def messages(caplog: pytest.LogCaptureFixture, level: int, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bugless.auth" and r.levelno == level and r.getMessage().startswith(start)
    ]


@pytest.fixture
async def following(start_auth_server: StartAuth) -> AuthServer:
    """An Authenticator whose follower has read the feed (polling every :data:`POLL_SECONDS`)."""
    auth = await start_auth_server(user_changes_seconds=POLL_SECONDS)
    await auth.add_user(unique("ann"))

    async def read() -> bool:
        return auth.service.user_feed.recent.head > 0

    await eventually(read, "the follower read the feed")
    return auth


@pytest.fixture
async def lock_holder(following: AuthServer) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(following.settings.database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def held_read(holder: asyncpg.Connection, auth: AuthServer) -> int:
    """Lock the feed in ``holder``'s open transaction; the follower's read's backend, waiting."""
    table = f'"{auth.settings.schema}".user_changes'
    await holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    waiting: list[int] = []

    async def waits() -> bool:
        waiting[:] = [row["pid"] for row in await holder.fetch(LOCK_WAITERS)]
        return len(waiting) == 1

    await eventually(waits, "the follower's read waits for the lock")
    return waiting[0]


async def test_a_follower_held_past_its_polls_shows_its_lag_and_logs_it_once(
    following: AuthServer, lock_holder: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Held 3 s on 1 s polls: the lag gauge grows while the read waits (the alert fires).

    Once the read ends: one WARNING with the figures (the later late polls,
    if any, at DEBUG), then, on the first read on time, one INFO line; the
    lag is back under a poll and a half, the alert quiet. Nothing failed,
    so no failure is counted.
    """
    caplog.set_level(logging.INFO, logger="bugless.auth")
    auth = following
    assert lag(auth) < LAGGING_POLLS * POLL_SECONDS
    assert not alert_fires(auth)

    transaction = lock_holder.transaction()
    await transaction.start()
    try:
        await held_read(lock_holder, auth)
        held_from = time.monotonic()

        async def firing() -> bool:
            return alert_fires(auth)

        await eventually(firing, "the lag alert fires while the read waits")
        assert lag(auth) > FRESH_POLLS * POLL_SECONDS
        await asyncio.sleep(max(0.0, held_from + HELD_SECONDS - time.monotonic()))
    finally:
        await transaction.rollback()

    start = "reading the users' change feed on time"

    async def on_time_again() -> bool:
        return bool(messages(caplog, logging.INFO, start))

    await eventually(on_time_again, "a read on time ends the lag")
    late = messages(caplog, logging.WARNING, start)
    held = [m for m in late if (match := LATE.fullmatch(m)) and float(match[1]) >= HELD_SECONDS]
    assert len(held) == 1, late
    assert held == late[-1:], "one warning for the held read, none after it"
    assert lag(auth) < LAGGING_POLLS * POLL_SECONDS
    assert not alert_fires(auth)
    assert sample(auth, "bugless_auth_user_changes_poll_failures_total", reason="unavailable") == 0
    assert sample(auth, "bugless_auth_user_changes_poll_failures_total", reason="error") == 0


async def test_a_follower_whose_read_failed_counts_it_and_is_not_also_called_late(
    following: AuthServer, lock_holder: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """A read ended by the database (terminated while held 2 s) is a failure and an outage.

    Counted in ``poll_failures_total{reason="unavailable"}`` and logged as
    the outage it is; the next read, more than a poll and a half after the
    last good one, is the outage's lag, not another warning.
    """
    caplog.set_level(logging.INFO, logger="bugless.auth")
    auth = following
    transaction = lock_holder.transaction()
    await transaction.start()
    try:
        pid = await held_read(lock_holder, auth)
        await asyncio.sleep(2.0)
        assert lag(auth) > LAGGING_POLLS * POLL_SECONDS
        assert await lock_holder.fetchval("SELECT pg_terminate_backend($1)", pid)

        async def counted() -> bool:
            failures = "bugless_auth_user_changes_poll_failures_total"
            return sample(auth, failures, reason="unavailable") == 1

        await eventually(counted, "the failed read is counted")
    finally:
        await transaction.rollback()

    async def recovered() -> bool:
        return bool(messages(caplog, logging.INFO, "following the users' change feed"))

    await eventually(recovered, "the next read works")
    assert messages(caplog, logging.WARNING, "following the users' change feed: "), "the outage"
    assert messages(caplog, logging.WARNING, "reading the users' change feed on time") == []
    assert lag(auth) < LAGGING_POLLS * POLL_SECONDS
    assert sample(auth, "bugless_auth_user_changes_poll_failures_total", reason="error") == 0


async def test_reads_begin_a_poll_apart_so_one_held_past_its_poll_is_followed_at_once(
    start_auth_server: StartAuth,
) -> None:
    """Held a poll and a quarter (2 s polls): the next read begins as it ends, not a poll later.

    The wait runs from each read's start: on time, answers from memory are a
    poll and one read old at most. Counted from each read's end, the next
    read began a whole poll after the held one ended (no sooner: the wait
    is at least that), and answers were a poll and two reads old.
    """
    poll = 2.0
    auth = await start_auth_server(user_changes_seconds=poll)
    await auth.add_user(unique("bea"))

    async def read() -> bool:
        return auth.service.user_feed.recent.head > 0

    await eventually(read, "the follower read the feed")
    holder = await asyncpg.connect(auth.settings.database_url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        try:
            await held_read(holder, auth)
            await asyncio.sleep(1.25 * poll)
        finally:
            released = time.monotonic()
            await transaction.rollback()
    finally:
        await holder.close()

    async def read_after_the_held_one() -> bool:
        return auth.service.user_feed.recent.read_at > released

    await eventually(read_after_the_held_one, "a read after the held one")
    assert auth.service.user_feed.recent.read_at - released < poll


async def test_a_frontends_reads_begin_a_poll_apart_too(start_auth_server: StartAuth) -> None:
    """A frontend's read held a poll and a quarter (1 s polls): the next begins as it ends.

    The frontend's own reads count toward how old its feed may be (its
    check of a replica's poll adds its own poll, not its reads' durations).
    """
    poll = 1.0
    auth = await start_auth_server()
    read = get_user_changes(auth.stub, timeout=5)
    began: list[float] = []
    second_read = asyncio.Event()

    async def changes(after_version: int) -> v1.UserChanges:
        began.append(time.monotonic())
        if len(began) == 2:
            await second_read.wait()
        return await read(after_version)

    cache = UserCache(ttl_seconds=600, changes=changes, poll_seconds=poll)
    try:
        await cache.by_id([], get_users(auth.stub, timeout=5))  # starts the follower

        async def second_read_began() -> bool:
            return len(began) == 2

        await eventually(second_read_began, "the frontend's second read")
        await asyncio.sleep(max(0.0, began[1] + 1.25 * poll - time.monotonic()))
        released = time.monotonic()
        second_read.set()

        async def third_read_began() -> bool:
            return len(began) >= 3

        await eventually(third_read_began, "a read after the held one")
    finally:
        cache.close()
    assert began[2] - released < poll
