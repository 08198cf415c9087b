"""Throttling failed password attempts, per username and per client address.

A token bucket per key: ``limit`` attempts, refilled evenly over ``window``.
Only failures take a token, so a person who types their password right is
never slowed down, while guessing is held to ``limit`` tries per window per
account (against targeted guessing) and per address (against spraying one
password over many accounts). A tripped bucket is checked *before* the
password is verified, so a throttled guess costs no argon2 time and reveals
nothing about the password.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bugless_auth.settings import ThrottleSettings
from bugless_core.errors import ResourceExhausted


@dataclass
class _Bucket:
    tokens: float
    updated: float


class _Buckets:
    """Token buckets of one kind of key, bounded in number (LRU)."""

    def __init__(self, limit: int, window: float, max_keys: int, clock: Callable[[], float]):
        self.limit = float(limit)
        self.rate = limit / window
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _current(self, key: str) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        now = self._clock()
        bucket.tokens = min(self.limit, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= self.limit:
            del self._buckets[key]  # full again: nothing worth remembering
            return None
        return bucket

    def wait_seconds(self, key: str) -> float:
        """0 when an attempt may be made now, else seconds until one may."""
        bucket = self._current(key)
        if bucket is None or bucket.tokens >= 1.0:
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def take(self, key: str) -> None:
        """Record one failure."""
        bucket = self._current(key)
        if bucket is None:
            bucket = _Bucket(tokens=self.limit, updated=self._clock())
            self._buckets[key] = bucket
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


class LoginThrottle:
    """The per-username and per-address limits of one replica."""

    def __init__(
        self, settings: ThrottleSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Apply ``settings``; ``clock`` is injectable for tests."""
        window = settings.window_seconds
        self._users = _Buckets(settings.per_user_limit, window, settings.max_tracked_keys, clock)
        self._addresses = _Buckets(
            settings.per_address_limit, window, settings.max_tracked_keys, clock
        )

    def check(self, username: str, address: str) -> None:
        """Refuse the attempt if either bucket is empty.

        Raises:
            ResourceExhausted: with ``retry_after``; the message is the same
                whether the account exists or not.
        """
        wait = max(
            self._users.wait_seconds(username.lower()),
            self._addresses.wait_seconds(address) if address else 0.0,
        )
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed sign-in attempts; try again in {max(1, round(wait))} s",
                retry_after=wait,
            )

    def failed(self, username: str, address: str) -> None:
        """Count a failed attempt against both keys."""
        self._users.take(username.lower())
        if address:
            self._addresses.take(address)
