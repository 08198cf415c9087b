"""How long a failed delivery waits before its next attempt, and how many it gets.

The queue (:mod:`bugless_notify.queue`) stores when a row is due again; the
worker (:mod:`bugless_notify.worker`) asks a :class:`RetryPolicy` for the
wait after each retryable failure and when to give up on a row.
"""

from __future__ import annotations

import dataclasses
import random

from bugless_core.backoff import Backoff


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter between attempts of one delivery.

    The wait after attempt *n* is drawn between half and all of
    ``min(max_seconds, base_seconds * 2**(n-1))`` (a
    :class:`bugless_core.backoff.Backoff` with "equal jitter"): never less
    than half the backoff, so a struggling receiver is not hammered, and
    spread out, so the deliveries that failed together do not retry together.

    Attributes:
        base_seconds: The backoff after the first failed attempt.
        max_seconds: The longest wait between two attempts.
        max_attempts: Attempts before a retryable failure becomes a dead
            letter (the defaults' 11 waits add up to 6-12 hours, about 9 on average).

    Raises:
        ValueError: A bound that would not back off (named by its field
            here, rather than by :class:`Backoff`), or no attempt at all.
    """

    base_seconds: float = 30.0
    max_seconds: float = 4 * 3600.0
    max_attempts: int = 12

    def __post_init__(self) -> None:
        if self.base_seconds <= 0:
            raise ValueError(f"base_seconds: {self.base_seconds} must be more than 0")
        if self.max_seconds < self.base_seconds:
            raise ValueError(f"max_seconds: {self.max_seconds} is less than base_seconds")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts: {self.max_attempts} must be at least 1")

    @property
    def delays(self) -> Backoff:
        """The waits between attempts."""
        return Backoff(first_seconds=self.base_seconds, max_seconds=self.max_seconds, jitter=0.5)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self.delays.delay(attempt, (rng or random).random)
