"""FeedFollowing: what a cache following the users' change feed may keep, and how long.

A clock the tests move by hand: the rules are about elapsed time, not timing.
"""

from __future__ import annotations

from bugless_core.user_changes import FeedFollowing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def following(clock: Clock, **extra: int) -> FeedFollowing:
    return FeedFollowing(fallback_seconds=5.0, backstop_seconds=600.0, clock=clock, **extra)


def test_before_the_feed_is_read_entries_live_the_fallback_ttl() -> None:
    clock = Clock()
    feed = following(clock)
    assert not feed.following
    assert feed.fresh(clock.now - 4.9, 0, clock.now)
    assert not feed.fresh(clock.now - 5.0, 0, clock.now)


def test_while_followed_covered_entries_live_until_the_backstop() -> None:
    clock = Clock()
    feed = following(clock)
    feed.started(7, clock.now)
    stored_at = clock.now
    clock.now += 300
    feed.applied(["u_other"], 8, clock.now - 0.5)
    assert feed.following
    assert feed.fresh(stored_at, 7, clock.now)
    assert not feed.fresh(stored_at, 6, clock.now), "read before following began: not covered"
    clock.now = stored_at + 600
    feed.applied([], 8, clock.now)
    assert not feed.fresh(stored_at, 7, clock.now), "the backstop"


def test_when_the_feed_stops_being_read_entries_fall_back_to_the_short_ttl() -> None:
    clock = Clock()
    feed = following(clock)
    feed.started(7, clock.now)
    stored_at = clock.now
    clock.now += 60
    feed.applied([], 7, clock.now)
    clock.now += 4.9  # the last good read began 4.9 s ago: still trusted
    assert feed.fresh(stored_at, 7, clock.now)
    clock.now += 0.1
    assert not feed.following
    assert not feed.fresh(stored_at, 7, clock.now)
    assert feed.fresh(clock.now - 1, 7, clock.now), "young entries still live their short TTL"


def test_a_read_older_than_the_users_latest_change_is_not_kept() -> None:
    clock = Clock()
    feed = following(clock)
    feed.started(10, clock.now)
    feed.applied(["u_1"], 12, clock.now)
    assert not feed.may_keep("u_1", 11)
    assert feed.may_keep("u_1", 12)
    assert feed.may_keep("u_2", 10), "others changed at or before the start"
    assert not feed.may_keep("u_2", 9), "read before the cache started following"


def test_forgotten_changes_make_older_reads_unkept_for_everyone() -> None:
    clock = Clock()
    feed = following(clock, remembered=2)
    feed.started(1, clock.now)
    for version, user_id in enumerate(["u_1", "u_2", "u_3"], start=2):
        feed.applied([user_id], version, clock.now)
    assert not feed.may_keep("u_1", 1), "u_1's change (2) was forgotten: the floor is 2"
    assert feed.may_keep("u_1", 2)
    assert not feed.may_keep("u_3", 3)
    assert feed.may_keep("u_3", 4)


def test_starting_over_forgets_what_changed_and_raises_the_floor() -> None:
    clock = Clock()
    feed = following(clock)
    feed.started(3, clock.now)
    feed.applied(["u_1"], 5, clock.now)
    feed.started(20, clock.now)
    assert feed.version == 20
    assert not feed.may_keep("u_1", 19)
    assert feed.may_keep("u_1", 20)
