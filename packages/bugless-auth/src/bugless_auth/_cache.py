"""A bounded, expiring in-process cache (LRU eviction, per-entry TTL).

Look-ups are the hot path of the Authenticator (a frontend joins user data on
every page), so this is deliberately small: a dict kept in recency order and a
monotonic deadline per entry. Not thread-safe: it lives on one event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Maps keys to values for ``ttl_seconds``, holding at most ``max_entries``."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an empty cache; ``clock`` is injectable for tests."""
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value, if present and fresh; a stale entry is dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, value = entry
        if deadline <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store ``value``, evicting the least recently used entries beyond the bound."""
        self._entries[key] = (self._clock() + self.ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        """Forget ``key`` (after a change this replica made itself)."""
        self._entries.pop(key, None)

    def discard_where(self, matches: Callable[[V], bool]) -> None:
        """Forget every entry whose value ``matches`` (a scan: for rare, wide changes)."""
        for key in [k for k, (_, value) in self._entries.items() if matches(value)]:
            del self._entries[key]

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
