"""One retry backoff for every service: capped, exponential, jittered delays.

Every retry in bugless waits the same way: a transaction that lost a 40001
conflict, a background loop that hit a bug, a lease renewal, a notification
a receiver refused, a call a draining replica refused, a client call the API
could not answer. :class:`Backoff` is that rule; each site only chooses its
bounds (and, where it must, a floor).

The policy is the one AWS argued for in "Exponential Backoff And Jitter"
(Marc Brooker, 2015): the delay after the ``n``-th failure in a row is drawn
uniformly from ``[(1 - jitter) * d, d]``, where
``d = min(max_seconds, first_seconds * factor ** (n - 1))``.

* **Full jitter** (``jitter=1``, the default): the whole delay is drawn at
  random. Of the variants that article measured, it spreads clients that
  failed together the most and finishes their work soonest with the fewest
  calls, so it is what a site gets unless it has a reason not to.
* **A floor** (``jitter < 1``): ``1 - jitter`` of each delay is always
  waited. A site takes one where retrying at once would be wrong: a lease
  renewal (retrying at 0 s after a failure only meets the same failure), a
  background loop that failed on a bug (it must never spin), a receiver
  that is struggling (a notification is not resent at once). ``jitter=0.5``
  is the article's "equal jitter".
* **No jitter** (``jitter=0``): where nothing collides in lockstep (a
  PostgreSQL deadlock aborts only one of its transactions).

Capped, so that a retry comes within ``max_seconds`` once the cause is gone;
exponential, so that a cause that lasts costs little and floods no log.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

#: The exponent is bounded so that weeks of failures never overflow a float
#: (``2.0 ** 64`` times any first delay is far beyond any cap).
_MAX_EXPONENT = 64


@dataclasses.dataclass(frozen=True, kw_only=True)
class Backoff:
    """How long to wait after the ``n``-th failure in a row (see the module for the policy).

    Attributes:
        first_seconds: The delay, before jitter, after the first failure.
        max_seconds: No delay is longer (the cap).
        factor: Each failure in a row multiplies the delay by this.
        jitter: The fraction of each delay drawn at random: 1 (the default)
            is full jitter, 0.5 equal jitter, 0 none; ``1 - jitter`` of the
            delay is its floor.

    Raises:
        ValueError: A bound that would not back off (a first delay of 0 or
            above the cap, a factor below 1, a jitter outside ``[0, 1]``).
    """

    first_seconds: float
    max_seconds: float
    factor: float = 2.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        # Worded by meaning, not field name: the sites that build a Backoff
        # from their own settings (``base_delay``, ``initial_backoff``) raise these.
        if not 0 < self.first_seconds <= self.max_seconds:
            msg = (
                f"the first retry delay ({self.first_seconds} s) must be more than 0 and at "
                f"most the longest delay ({self.max_seconds} s)"
            )
            raise ValueError(msg)
        if self.factor < 1:
            raise ValueError(f"the retry delay's growth factor ({self.factor}) must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"the retry delay's jitter ({self.jitter}) must be between 0 and 1")

    def nominal(self, failures: int) -> float:
        """The delay after ``failures`` (1 after the first) failures in a row, before jitter.

        A count below 1 reads as 1.
        """
        exponent = min(max(failures, 1) - 1, _MAX_EXPONENT)
        return float(min(self.max_seconds, self.first_seconds * self.factor**exponent))

    def delay(self, failures: int, draw: Callable[[], float] = random.random) -> float:
        """The delay to wait: ``nominal(failures)`` times a factor in ``[1 - jitter, 1]``.

        Args:
            failures: Failures in a row so far (1 after the first).
            draw: A number in ``[0, 1)`` (tests pass a seeded
                ``random.Random(...).random``).
        """
        return self.nominal(failures) * (1 - self.jitter * draw())


__all__ = ["Backoff"]
