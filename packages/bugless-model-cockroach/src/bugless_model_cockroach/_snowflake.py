"""Snowflake-style issue ids: time, node, sequence in 63 bits.

CockroachDB has no cheap global sequence: one counter would be a single hot
range every region writes to. Each replica instead mints ids alone::

    | 41 bits: ms since BUGLESS_EPOCH | 10 bits: node id | 12 bits: sequence |

so ids are unique as long as no two replicas hold the same node id at once
(:mod:`._leases` leases them in the database) and no replica issues the same
millisecond twice. They sort by creation time (to the millisecond; within one
millisecond by node, then sequence), which keeps "newest first" the default
order and lets CockroachDB split the id range by time.

Clock going backwards: the generator never issues an id below the last one.
If the clock is behind by at most ``max_backwards_wait_ms`` it waits for the
clock to catch up; further behind, it refuses (Unavailable, naming the gap)
rather than sleep through seconds of requests. The same rule covers a node id
taken over from another replica whose clock ran ahead: the lease hands over
the highest millisecond the previous holder was allowed to use (its "fence"),
and the new holder starts above it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bugless_core.errors import Unavailable

#: 2025-01-01T00:00:00Z in Unix milliseconds; 41 bits of ms last until 2094.
BUGLESS_EPOCH_MS = 1_735_689_600_000
TIME_BITS = 41
NODE_BITS = 10
SEQUENCE_BITS = 12
MAX_NODE_ID = (1 << NODE_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


def wall_clock_ms() -> int:
    """Unix time in milliseconds (the clock ids carry)."""
    return time.time_ns() // 1_000_000


def compose(ms: int, node_id: int, sequence: int) -> int:
    """The id of ``sequence`` in Unix millisecond ``ms`` on ``node_id``."""
    elapsed = ms - BUGLESS_EPOCH_MS
    if not 0 <= elapsed < (1 << TIME_BITS):
        msg = f"the clock reads {ms} ms, outside the range Snowflake ids can carry"
        raise Unavailable(msg)
    return (elapsed << (NODE_BITS + SEQUENCE_BITS)) | (node_id << SEQUENCE_BITS) | sequence


def decompose(issue_id: int) -> tuple[int, int, int]:
    """``(unix ms, node id, sequence)`` of an id."""
    sequence = issue_id & MAX_SEQUENCE
    node_id = (issue_id >> SEQUENCE_BITS) & MAX_NODE_ID
    ms = (issue_id >> (NODE_BITS + SEQUENCE_BITS)) + BUGLESS_EPOCH_MS
    return ms, node_id, sequence


class SnowflakeGenerator:
    """Mints ids for one node id; safe for many concurrent tasks of one loop.

    Args:
        node_id: 0..1023, leased so that no other replica uses it now.
        floor_ms: Every id will carry a millisecond above this (the previous
            holder's fence).
        until_ms: No id may carry a millisecond above this (our own fence,
            moved on by :meth:`extend` as the lease is renewed); ``None``
            for no limit (tests).
        clock: Unix milliseconds.
        max_backwards_wait_ms: How far behind the clock may be for the
            generator to wait rather than refuse.
        sleep: ``asyncio.sleep``, replaceable in tests.
    """

    def __init__(
        self,
        node_id: int,
        *,
        floor_ms: int = 0,
        until_ms: int | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        max_backwards_wait_ms: int = 2_000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Start above ``floor_ms`` (see the class docstring)."""
        if not 0 <= node_id <= MAX_NODE_ID:
            msg = f"node id {node_id} is outside 0..{MAX_NODE_ID}"
            raise ValueError(msg)
        self.node_id = node_id
        self.until_ms = until_ms
        self._clock = clock
        self._max_wait = max_backwards_wait_ms
        self._sleep = sleep
        self._last_ms = floor_ms
        self._sequence = MAX_SEQUENCE  # the floor millisecond itself is used up
        self._lock = asyncio.Lock()

    def extend(self, until_ms: int) -> None:
        """Allow ids up to ``until_ms`` (the lease was renewed that far)."""
        self.until_ms = until_ms if self.until_ms is None else max(self.until_ms, until_ms)

    async def next_id(self) -> int:
        """A new id, above every id this generator issued before.

        Raises:
            Unavailable: the clock is too far behind, or the node id lease
                was not renewed in time (no id is safe to issue).
        """
        async with self._lock:
            while True:
                outcome = self._try_issue()
                if isinstance(outcome, tuple):
                    return compose(*outcome)
                await self._sleep(outcome / 1000)

    def _try_issue(self) -> tuple[int, int, int] | int:
        """``(ms, node, sequence)`` to issue now, or milliseconds to wait first."""
        now = self._clock()
        if self.until_ms is not None and now > self.until_ms:
            msg = (
                f"cannot create issues: the lease on node id {self.node_id} was not renewed "
                "in time (is the database reachable?)"
            )
            raise Unavailable(msg)
        if now < self._last_ms:
            behind = self._last_ms - now
            if behind > self._max_wait:
                msg = (
                    f"cannot create issues: the clock is {behind} ms behind the newest issue id "
                    f"of node {self.node_id} (it went backwards); ids would no longer be unique "
                    "and ordered, so none are issued until it catches up"
                )
                raise Unavailable(msg)
            return behind
        if now == self._last_ms:
            if self._sequence >= MAX_SEQUENCE:
                return 1
            self._sequence += 1
        else:
            self._last_ms, self._sequence = now, 0
        return now, self.node_id, self._sequence
