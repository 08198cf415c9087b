"""GetUserChanges answered from what the replica's own follower read, not the database.

Real PostgreSQL, real Authenticators over real gRPC sockets, and a real
frontend cache (:class:`bugless_core.user_cache.UserCache`) following one
of them. Where an answer came from is read from the Authenticator's own
``bugless_auth_user_changes_answers_total`` counter. Replicas that must
answer from memory poll the feed every 30 s: their follower reads it once at
start (and when a test polls it by hand, after that first read if it is still
under way: polls run one at a time), so nothing the test does races a
background poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from auth_support import AuthServer, StartAuth, ldap_identity, set_disabled, unique
from feed_support import changes_after, exact, polled
from prometheus_client import CollectorRegistry

from bugless_auth.user_feed import RecentChanges, prune_user_changes, read_user_changes
from bugless_core.user_cache import (
    FEED_READ_GAUGE,
    UserCache,
    feed_read_recorder,
    get_user_changes,
    get_users,
)
from bugless_proto import v1
from bugless_testing.polling import eventually

#: A poll interval no test outlasts: the follower reads once at start, then on request.
SLOW_POLL_SECONDS = 30.0


def answered(auth: AuthServer, source: str) -> float:
    """How many GetUserChanges ``auth`` answered from ``source`` (memory or database)."""
    value = auth.metrics.get_sample_value(
        "bugless_auth_user_changes_answers_total", {"source": source}
    )
    return value or 0.0


async def test_a_caller_at_the_followers_head_is_answered_from_memory(
    start_auth_server: StartAuth,
) -> None:
    auth = await start_auth_server(user_changes_seconds=SLOW_POLL_SECONDS)
    await auth.add_user(unique("ann"))
    head = await polled(auth)
    assert head > 0
    database = answered(auth, "database")

    assert exact(await changes_after(auth, 0)) == v1.UserChanges(version=head)
    for _ in range(3):
        assert exact(await changes_after(auth, head)) == v1.UserChanges(version=head)

    assert answered(auth, "memory") == 4
    assert answered(auth, "database") == database
    assert await read_user_changes(auth.store, head) == v1.UserChanges(version=head), (
        "the database agrees"
    )


async def test_a_caller_a_poll_or_two_behind_gets_the_changes_from_memory(
    start_auth_server: StartAuth,
) -> None:
    """Exactly the users the database names after that version, and the same head."""
    writer = await start_auth_server()
    auth = await start_auth_server(
        user_changes_seconds=SLOW_POLL_SECONDS, schema=writer.settings.schema
    )
    ann, bob, carol = [await writer.add_user(unique(n)) for n in ("ann", "bob", "carol")]
    first = await polled(auth)
    await set_disabled(writer.store, bob.username, True)
    await set_disabled(writer.store, ann.username, True)
    second = await polled(auth)
    await set_disabled(writer.store, carol.username, True)
    await set_disabled(writer.store, bob.username, False)
    third = await polled(auth)
    assert first < second < third
    database = answered(auth, "database")

    for after in (first, second):
        reply = await changes_after(auth, after)
        assert exact(reply) == await read_user_changes(auth.store, after)
    assert (await changes_after(auth, first)).user_ids == [bob.user_id, ann.user_id, carol.user_id]
    assert (await changes_after(auth, second)).user_ids == [carol.user_id, bob.user_id]
    assert answered(auth, "database") == database
    assert answered(auth, "memory") == 4

    between = first + 1  # inside a page the follower read whole: not known here
    assert exact(await changes_after(auth, between)) == await read_user_changes(auth.store, between)
    assert answered(auth, "database") == database + 1


async def test_a_caller_behind_the_retention_gets_the_changes_the_follower_read(
    start_auth_server: StartAuth,
) -> None:
    """The database answers ``reset`` (it no longer knows); memory still does and names them.

    The changes are made older than the retention setting and pruned the way
    a replica prunes; the frontend resuming from before them keeps everyone
    the follower did not see change, and its next question is one the
    database answers without a reset.
    """
    writer = await start_auth_server()
    auth = await start_auth_server(
        user_changes_seconds=SLOW_POLL_SECONDS, schema=writer.settings.schema
    )
    ann, bob = [await writer.add_user(unique(n)) for n in ("ann", "bob")]
    first = await polled(auth)
    await set_disabled(writer.store, ann.username, True)
    await set_disabled(writer.store, bob.username, True)
    head = await polled(auth)
    retention = auth.settings.user_changes_retention_seconds
    await writer.store.run(
        lambda conn: conn.execute(
            "UPDATE user_changes SET changed_at = now() - $1::float8 * INTERVAL '1 second'",
            retention + 60,
        ),
        transaction=False,
    )
    await prune_user_changes(writer.store, retention)
    assert await read_user_changes(writer.store, first) == v1.UserChanges(
        version=head, reset=True
    ), "the database no longer knows"
    database = answered(auth, "database")

    reply = await changes_after(auth, first)

    assert exact(reply) == v1.UserChanges(user_ids=[ann.user_id, bob.user_id], version=head)
    assert (answered(auth, "memory"), answered(auth, "database")) == (1, database)
    assert await read_user_changes(writer.store, reply.version) == v1.UserChanges(version=head)


async def test_an_answer_from_memory_says_how_old_it_is_and_a_frontend_counts_from_then(
    start_auth_server: StartAuth,
) -> None:
    """A frontend's "everything before is known" is the replica's read, not its own call.

    With a TTL shorter than the answer's age the frontend must not take the
    feed as followed (it would trust entries past the TTL on a read older
    than the TTL); after a fresh read by the replica it does. The TTL is a few
    seconds, not one: the fresh read's age counts from when the replica's read
    began, and on a loaded machine that read alone has taken over a second.
    """
    ttl = 3.0
    auth = await start_auth_server(user_changes_seconds=SLOW_POLL_SECONDS)
    await auth.add_user(unique("gil"))
    read_from = time.monotonic()
    head = await polled(auth)
    await asyncio.sleep(ttl + 0.2)

    reply = await changes_after(auth, head)

    assert answered(auth, "memory") == 1
    assert ttl + 0.2 <= reply.read_age_seconds <= time.monotonic() - read_from
    assert (await changes_after(auth, head + 99)).read_age_seconds == 0, "the database: now"

    changes = get_user_changes(auth.stub, timeout=5)
    cache = UserCache(ttl_seconds=ttl, changes=changes, poll_seconds=0.5)
    await cache.poll_changes()
    assert cache.following.version == head
    followed = [cache.following.following]  # False: read more than the TTL ago, by the replica
    await polled(auth)
    await cache.poll_changes()
    followed.append(cache.following.following)
    assert followed == [False, True]
    assert answered(auth, "memory") == 3


async def test_a_frontends_feed_gauge_shows_when_the_replicas_read_began(
    start_auth_server: StartAuth,
) -> None:
    """``bugless_user_feed_last_read_timestamp_seconds`` of an answer from memory: that read."""
    auth = await start_auth_server(user_changes_seconds=SLOW_POLL_SECONDS)
    before = time.time()
    await polled(auth)
    after = time.time()
    await asyncio.sleep(1.2)
    registry = CollectorRegistry()
    created = time.monotonic()
    cache = UserCache(
        ttl_seconds=600,
        changes=get_user_changes(auth.stub, timeout=5),
        poll_seconds=0.1,
        on_read=feed_read_recorder(registry),
    )

    async def gauge_set() -> bool:
        await cache.by_id([], get_users(auth.stub))  # starts the cache's follower
        return registry.get_sample_value(FEED_READ_GAUGE) is not None

    try:
        await eventually(gauge_set, "the frontend read the feed")
        read_at = registry.get_sample_value(FEED_READ_GAUGE)
        # Counted from the frontend's call, the replica's answer is older by
        # up to the call's own duration (at most this long, under load more
        # than the 0.1 s the clocks' conversion is allowed).
        calls_took = time.monotonic() - created
    finally:
        cache.close()
    assert read_at is not None
    assert before - 0.1 - calls_took <= read_at <= after + 0.1, "the replica's read, 1.2 s before"
    assert answered(auth, "database") == 0


async def test_a_write_through_this_replica_is_answered_at_once(
    start_auth_server: StartAuth,
) -> None:
    """Its caller may ask for the change straight away: the database is read until polled."""
    auth = await start_auth_server(user_changes_seconds=SLOW_POLL_SECONDS)
    dave = await auth.add_user(unique("dave"))
    head = await polled(auth)

    await set_disabled(auth.store, dave.username, True)
    reply = await changes_after(auth, head)

    assert (reply.user_ids, reply.version) == ([dave.user_id], head + 1)
    assert answered(auth, "memory") == 0
    assert await polled(auth) == head + 1
    assert exact(await changes_after(auth, head)) == exact(reply)
    assert answered(auth, "memory") == 1


async def test_a_follower_not_reading_the_feed_sends_callers_to_the_database(
    start_auth_server: StartAuth,
) -> None:
    writer = await start_auth_server()
    auth = await start_auth_server(user_changes_seconds=0.1, schema=writer.settings.schema)
    erin = await writer.add_user(unique("erin"))
    added_at = (await read_user_changes(writer.store, 0)).version

    async def answers_from_memory() -> bool:
        reply = await changes_after(auth, 0)
        return reply.version == added_at and answered(auth, "memory") > 0

    await eventually(answers_from_memory, "the follower read the feed")
    await auth.service.user_feed.stop()  # as good as failing, or lagging behind
    await set_disabled(writer.store, erin.username, True)
    await asyncio.sleep(0.3)  # more than two of its polls
    memory = answered(auth, "memory")

    reply = await changes_after(auth, added_at)

    assert (reply.user_ids, reply.version) == ([erin.user_id], added_at + 1)
    assert answered(auth, "memory") == memory


async def test_a_frontend_sees_another_replicas_change_within_about_two_polls(
    start_auth_server: StartAuth,
) -> None:
    """The frontend follows one replica (answering from memory); the change goes through another.

    Every reply the frontend got is kept: none may move it past the change's
    version without naming the user.
    """
    writer = await start_auth_server(user_changes_seconds=0.1)
    auth = await start_auth_server(user_changes_seconds=0.1, schema=writer.settings.schema)
    name = unique("fay")
    fay, _ = await writer.store.resolve(ldap_identity(name, "Fay"), "ldap")
    replies: list[tuple[int, v1.UserChanges]] = []
    changes = get_user_changes(auth.stub, timeout=5)

    async def recorded(after_version: int) -> v1.UserChanges:
        reply = await changes(after_version)
        replies.append((after_version, reply))
        return reply

    cache = UserCache(ttl_seconds=600, changes=recorded, poll_seconds=0.1)
    users = get_users(auth.stub, timeout=5)

    async def display_name() -> str:
        return (await cache.by_id([fay.user_id], users))[fay.user_id].display_name

    try:
        await eventually(following(cache, auth), "the frontend follows the feed from memory")
        assert await display_name() == "Fay"
        await writer.store.resolve(ldap_identity(name, "Fay Renamed"), "ldap")
        renamed_at = (await read_user_changes(writer.store, 0)).version

        async def renamed() -> bool:
            return await display_name() == "Fay Renamed"

        await eventually(renamed, "the frontend shows the rename")

        # It may show it before its feed does: while the frontend's feed is
        # ahead of the replica's cache (a database answer), GetUsers answers
        # are used once, not kept, and the replica applies the rename itself.
        async def applied() -> bool:
            return cache.following.version >= renamed_at

        await eventually(applied, "the frontend's feed passed the rename")
    finally:
        cache.close()
    passing = [r for after, r in replies if after < renamed_at <= r.version]
    assert passing, "the frontend moved past the rename's version"
    assert all(fay.user_id in r.user_ids or r.reset for r in passing)
    assert answered(auth, "memory") > 0


def slow_poll_warning(replica_poll: float, poll: float, ttl: float) -> str:
    worst = replica_poll + poll
    return (
        f"the Authenticator reads the users' change feed every {replica_poll:g} s (its "
        f"--user-changes-seconds) and this frontend every {poll:g} s (--user-changes-seconds): "
        f"a read is up to {worst:g} s old, not below --user-cache-seconds ({ttl:g} s), so "
        f"people kept longer than {ttl:g} s are often read again as if there were no feed; "
        f"set the Authenticator's --user-changes-seconds below {ttl - poll:g}, or "
        f"--user-cache-seconds here above {worst:g}"
    )


async def test_a_replicas_poll_too_slow_for_a_frontends_ttl_is_one_warning_per_figure(
    start_auth_server: StartAuth, caplog: pytest.LogCaptureFixture
) -> None:
    """Every answer says how often the replica reads; a frontend it does not fit says so once.

    The frontend (0.5 s polls, a 2 s TTL) on a replica reading every 30 s:
    one warning however many polls, naming both settings, the figures and
    what to set; another for a replica reading every 10 s; none again for
    the first. It stays correct on its TTL: a change made through another
    replica, which the slow one's memory does not name, shows once the
    frontend asks again, after its TTL. That replica (asked for the user)
    is made to read the feed by hand before and after the change: the
    frontend keeps what it answers (read at the head the frontend follows
    from), and what it answers after the change is the change, however
    late its own follower would read (a follower held up is its own
    tests' business, ``test_user_feed_lag.py`` and ``test_user_feed_start.py``).
    On a replica reading every 0.1 s: no warning.
    """
    slow = await start_auth_server(user_changes_seconds=SLOW_POLL_SECONDS)
    slower = await start_auth_server(user_changes_seconds=10.0, schema=slow.settings.schema)
    writer = await start_auth_server(schema=slow.settings.schema)
    gil = await writer.add_user(unique("gil"))
    head = await polled(slow)
    assert (await changes_after(slow, head)).poll_seconds == SLOW_POLL_SECONDS
    assert (await changes_after(slow, head + 99)).poll_seconds == SLOW_POLL_SECONDS
    assert (answered(slow, "memory"), answered(slow, "database")) == (1, 1), "from both"

    caplog.set_level(logging.WARNING, logger="bugless.user_cache")
    replica = [slow]

    async def changes(after_version: int) -> v1.UserChanges:
        return await get_user_changes(replica[0].stub, timeout=5)(after_version)

    cache = UserCache(ttl_seconds=2.0, changes=changes, poll_seconds=0.5)
    answered_at: list[int] = []
    fetch = get_users(writer.stub, timeout=5)

    async def users(user_ids: list[str]) -> v1.UsersResponse:
        reply = await fetch(user_ids)
        answered_at.append(reply.version)
        return reply

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "bugless.user_cache"]

    try:
        for _ in range(3):
            await cache.poll_changes()
        assert warnings() == [slow_poll_warning(SLOW_POLL_SECONDS, 0.5, 2.0)]
        replica[0] = slower
        await cache.poll_changes()
        replica[0] = slow
        await cache.poll_changes()
        assert warnings() == [
            slow_poll_warning(SLOW_POLL_SECONDS, 0.5, 2.0),
            slow_poll_warning(10.0, 0.5, 2.0),
        ]

        assert await polled(writer) == head
        assert not (await cache.by_id([gil.user_id], users))[gil.user_id].disabled
        assert answered_at == [head], "read at the frontend's head: kept"
        await set_disabled(writer.store, gil.username, True)
        assert await polled(writer) == head + 1, "the replica asked has the change"

        async def disabled() -> bool:
            return (await cache.by_id([gil.user_id], users))[gil.user_id].disabled

        await eventually(disabled, "the change shows, on the TTL")
        assert cache.following.version == head, "not through the slow replica's feed"
        assert len(answered_at) >= 2, "asked again once kept the TTL"
    finally:
        cache.close()

    caplog.clear()
    fast = await start_auth_server(user_changes_seconds=0.1, schema=slow.settings.schema)
    fitting = UserCache(
        ttl_seconds=2.0, changes=get_user_changes(fast.stub, timeout=5), poll_seconds=0.5
    )
    try:
        for _ in range(3):
            await fitting.poll_changes()
        assert (await changes_after(fast, 0)).poll_seconds == 0.1
    finally:
        fitting.close()
    assert warnings() == []


def following(cache: UserCache, auth: AuthServer) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        await cache.by_id([], get_users(auth.stub))  # starts the cache's follower
        return cache.following.version > 0 and answered(auth, "memory") > 0

    return check


def page(version: int, *user_ids: str, more: bool = False) -> v1.UserChanges:
    return v1.UserChanges(user_ids=list(user_ids), version=version, more=more)


def test_recent_changes_answer_from_a_page_start_and_start_over_at_a_gap() -> None:
    recent = RecentChanges(max_pages=2)
    assert recent.after(0) is None, "nothing read yet"
    recent.started(10, 1.0)
    recent.read([page(11, "u_a"), page(13, "u_b", "u_a")], 10, 2.0)
    recent.read([page(13)], 13, 3.0)  # nothing new: no page
    assert (recent.head, recent.read_at) == (13, 3.0)
    assert recent.after(10) == v1.UserChanges(user_ids=["u_a", "u_b"], version=13)
    assert recent.after(11) == v1.UserChanges(user_ids=["u_b", "u_a"], version=13)
    assert recent.after(12) is None, "inside a page"
    assert recent.after(14) is None, "ahead of what was read"

    recent.read([page(14, "u_c")], 13, 4.0)  # a third page: the oldest goes
    assert recent.after(10) is None
    assert recent.after(11) == v1.UserChanges(user_ids=["u_b", "u_a", "u_c"], version=14)

    recent.read([page(16, "u_d")], 15, 5.0)  # a poll after 14 failed half-way
    assert recent.after(14) is None
    assert recent.after(15) == v1.UserChanges(user_ids=["u_d"], version=16)


@pytest.mark.parametrize("max_ids", [1, 2])
def test_recent_changes_keep_at_most_max_ids(max_ids: int) -> None:
    recent = RecentChanges(max_ids=max_ids)
    recent.started(1, 0.0)
    recent.read([page(2, "u_a"), page(3, "u_b")], 1, 0.0)
    assert (recent.after(1) is not None) == (max_ids >= 2)
    assert recent.after(2) == v1.UserChanges(user_ids=["u_b"], version=3)
