"""Per-identity token buckets: how many calls a bot may make, and when to retry."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bugless_api.settings import RateLimitSettings
from bugless_core.errors import ResourceExhausted


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by user id, refilled lazily on each call.

    Lazy refill means no timer task: a bucket is brought up to date when its
    owner calls, which is the only time it matters. The limiter is used from
    one event loop, so no locking is needed.
    """

    def __init__(
        self, settings: RateLimitSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Limit to ``settings``; ``clock`` is monotonic seconds."""
        self.settings = settings
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> None:
        """Spend one call of ``key``'s budget.

        Raises:
            ResourceExhausted: The bucket is empty; ``retry_after`` is how long
                until one call's worth has refilled.
        """
        now = self._clock()
        rate, burst = self.settings.rate, float(self.settings.burst)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=burst, updated=now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.settings.max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        retry_after = (1.0 - bucket.tokens) / rate
        raise ResourceExhausted(
            f"rate limit exceeded: at most {self.settings.rate:g} calls per second "
            f"(bursts of {self.settings.burst}) per identity; retry in {retry_after:.3f}s",
            retry_after=retry_after,
        )
