"""UserCache following the users' change feed: the answers no real Authenticator gives.

The frontends' tests follow a real Authenticator's feed (bugless-api's
``test_user_naming_feed.py``, bugless-web's ``test_user_cache.py``). What a
correct Authenticator never answers, or answers only after hours (a feed
head of 0, a reset after pruning), and the follower's log over an outage,
are checked here against a scripted Authenticator: async functions that
answer ``GetUserChanges`` and ``GetUsers`` as the cache's fetches do, with a
clock the tests move by hand.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from bugless_core.errors import Unavailable
from bugless_core.user_cache import UserCache
from bugless_proto import v1

TTL = 5.0


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Authenticator:
    """Answers GetUsers at ``version`` with ``names``; GetUserChanges from ``feed``, in turn."""

    names: dict[str, str] = field(default_factory=lambda: {"u_bob": "bob", "u_carol": "carol"})
    version: int = 7
    feed: list[v1.UserChanges | BaseException] = field(default_factory=list)
    asked: list[list[str]] = field(default_factory=list)
    polls: int = 0
    #: Set once the feed was read ``enough_polls`` times.
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    enough_polls: int = 0

    async def get_users(self, user_ids: list[str]) -> v1.UsersResponse:
        self.asked.append(user_ids)
        found = [v1.User(user_id=i, username=self.names[i]) for i in user_ids if i in self.names]
        return v1.UsersResponse(users=found, version=self.version)

    async def lookup_users(self, usernames: list[str]) -> v1.UsersResponse:
        self.asked.append(usernames)
        ids = {name: user_id for user_id, name in self.names.items()}
        found = [v1.User(user_id=ids[n], username=n) for n in usernames if n in ids]
        return v1.UsersResponse(users=found, version=self.version)

    async def get_user_changes(self, after_version: int) -> v1.UserChanges:
        self.polls += 1
        if self.polls >= self.enough_polls:
            self.enough.set()
        answer = self.feed.pop(0) if self.feed else v1.UserChanges(version=after_version)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def following_cache(
    auth: Authenticator,
    clock: Clock,
    *,
    poll_seconds: float = 1.0,
    registry: CollectorRegistry | None = None,
) -> UserCache:
    return UserCache(
        ttl_seconds=TTL,
        clock=clock,
        changes=auth.get_user_changes,
        poll_seconds=poll_seconds,
        metrics_registry=registry or CollectorRegistry(),
    )


async def test_a_feed_head_of_0_is_not_followed_and_people_keep_the_short_ttl() -> None:
    """Started from 0, every entry (read at version 0 or more) would pass for covered."""
    auth, clock = Authenticator(version=0, feed=[v1.UserChanges(version=0)]), Clock()
    cache = following_cache(auth, clock)
    with pytest.raises(Unavailable, match="no version"):
        await cache.poll_changes()
    assert not cache.following.following
    await cache.by_id(["u_bob"], auth.get_users)
    clock.now += TTL + 0.1
    await cache.by_id(["u_bob"], auth.get_users)
    assert auth.asked == [["u_bob"], ["u_bob"]]
    cache.close()


async def test_a_reset_forgets_everyone_and_an_answer_read_before_it_is_used_once() -> None:
    auth, clock = Authenticator(feed=[v1.UserChanges(version=7)]), Clock()
    auth.names["u_dora"] = "dora"
    cache = following_cache(auth, clock)
    await cache.poll_changes()  # follows from 7
    assert set(await cache.by_name(["bob", "carol"], auth.lookup_users)) == {"bob", "carol"}
    await cache.by_id(["u_bob", "u_carol", "u_gone"], auth.get_users)
    assert auth.asked == [["bob", "carol"], ["u_gone"]], "known by id already, but u_gone"
    clock.now += TTL * 10
    await cache.poll_changes()  # nothing changed
    await cache.by_id(["u_bob", "u_gone"], auth.get_users)
    assert len(auth.asked) == 2, "covered and followed: kept past the TTL, the unknown too"
    await cache.by_name(["dora"], auth.lookup_users)  # just now: within the TTL at the reset

    auth.feed.append(v1.UserChanges(version=20, reset=True))
    await cache.poll_changes()
    auth.version = 15  # a replica that has not applied everything before the reset
    for _ in range(2):
        await cache.by_id(["u_dora"], auth.get_users)
    assert auth.asked[3:] == [["u_dora"], ["u_dora"]], "forgotten; read below the reset: used once"
    assert await cache.by_name(["dora"], auth.lookup_users)
    assert auth.asked[5:] == [["dora"]], "forgotten by name too"
    auth.version = 20
    for _ in range(2):
        await cache.by_id(["u_gone", "u_bob"], auth.get_users)
    assert auth.asked[6:] == [["u_bob", "u_gone"]], "read at the reset's version: kept"
    cache.close()


@pytest.mark.parametrize("poll_seconds", [0.0, TTL, TTL + 1])
async def test_a_feed_not_read_more_often_than_the_ttl_is_never_read(poll_seconds: float) -> None:
    auth, clock = Authenticator(), Clock()
    cache = following_cache(auth, clock, poll_seconds=poll_seconds)
    await cache.by_id(["u_bob"], auth.get_users)
    await cache.poll_changes()
    for _ in range(10):
        await asyncio.sleep(0)
    assert auth.polls == 0
    clock.now += TTL + 0.1
    await cache.by_id(["u_bob"], auth.get_users)
    assert auth.asked == [["u_bob"], ["u_bob"]], "kept the TTL only"
    cache.close()


async def test_an_outage_is_one_warning_and_a_bug_one_error_however_many_polls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logged and counted as every background loop's (``bugless_background_*``)."""
    auth = Authenticator(
        feed=[
            v1.UserChanges(version=7),
            *(Unavailable("the Authenticator is away") for _ in range(5)),
            v1.UserChanges(version=7),
            RuntimeError("a bug"),
            *(Unavailable("away again") for _ in range(3)),
            v1.UserChanges(version=7),
        ],
        enough_polls=15,  # the script (12) and a few quiet polls after it
    )
    registry = CollectorRegistry()
    cache = following_cache(auth, Clock(), poll_seconds=0.01, registry=registry)
    caplog.set_level(logging.INFO, logger="bugless.user_cache")
    caplog.set_level(logging.INFO, logger="bugless.supervision")
    await cache.by_id(["u_bob"], auth.get_users)  # starts the follower
    await asyncio.wait_for(auth.enough.wait(), timeout=10)
    cache.close()
    loggers = {"bugless.user_cache", "bugless.supervision"}
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name in loggers]
    expected = [
        ("WARNING", "following the users' change feed: Unavailable: the Authenticator is away"),
        ("INFO", "following the users' change feed: working again after"),
        ("ERROR", "background loop user_cache.changes failed (1 in a row)"),
        ("WARNING", "following the users' change feed: Unavailable: away again"),
        ("INFO", "following the users' change feed: working again after"),
    ]
    assert len(records) == len(expected), records
    for (level, message), (expected_level, start) in zip(records, expected, strict=True):
        assert (level, message[: len(start)]) == (expected_level, start), message
    loop = {"loop": "user_cache.changes"}
    assert registry.get_sample_value("bugless_background_failures_total", loop) == 1
    assert registry.get_sample_value("bugless_background_consecutive_failures", loop) == 0
    assert registry.get_sample_value("bugless_background_outage_seconds", loop) == 0


async def test_a_read_failing_between_pages_does_not_count_as_followed_from_its_start() -> None:
    """Page one of two applied, then the Authenticator goes away: page two is unknown.

    The feed counts as read from the last *complete* read, so the TTL takes
    over on time, instead of a TTL after a read that never saw page two.
    """
    auth, clock = Authenticator(feed=[v1.UserChanges(version=7)]), Clock()
    cache = following_cache(auth, clock)
    await cache.poll_changes()  # follows from 7, read at 1000
    await cache.by_id(["u_carol"], auth.get_users)
    clock.now += TTL - 1
    auth.feed += [
        v1.UserChanges(user_ids=["u_bob"], version=8, more=True),
        Unavailable("the Authenticator went away between pages"),
    ]
    with pytest.raises(Unavailable):
        await cache.poll_changes()
    assert cache.following.version == 8, "page one applied"
    clock.now += 2  # a TTL after the complete read, 2 s after the failed one began
    assert not cache.following.following
    await cache.by_id(["u_carol"], auth.get_users)
    assert auth.asked == [["u_carol"], ["u_carol"]], "past the TTL: read again"
    cache.close()
