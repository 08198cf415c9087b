"""Deadlines whose ``grpc-timeout`` header is the same call after call.

grpclib sends a call's deadline as the time left when the request goes out
(``grpclib.metadata.encode_timeout``), under 10 s in milliseconds: the web
tier's 10 s deadline left as ``9999m`` when sent within a millisecond of
being set and as ``9998m``, ``9997m``... otherwise. Each new value is a new
HPACK literal that h2 adds to the connection's table, so the request's
header block differs from the last one and the table changed: the memo of
repeated blocks (:mod:`bugless_core.grpc._hpack`) forgets everything it
holds, and the next call codes its headers field by field again, on both
ends (bench/JOURNAL.md, session 11).

A :class:`SteadyDeadline` reads its time left rounded down to a step of at
most a hundredth of its timeout (a power of ten: 0.1 s for 1-10 s, 0.01 s
for 0.1-1 s): a 10 s deadline leaves as ``9900m`` whenever the request goes
out within 0.1 s of the deadline being set. The deadline is never longer
than asked, and at most a hundredth shorter (at both ends: the local timer
reads the same time left). :class:`~bugless_core.grpc.CorkedChannel` makes
one for every call given a ``timeout``, so every service's client calls
(web, API, notifier, import) send it.
"""

from __future__ import annotations

import math
from typing import cast

from grpclib.metadata import Deadline


class SteadyDeadline(Deadline):
    """A grpclib ``Deadline`` whose time left is rounded down to a hundredth of its timeout."""

    #: Steps of time left per second (below 1 s steps) or seconds per step.
    _per_second: int
    _seconds_per_step: int

    @classmethod
    def from_timeout(cls, timeout: float) -> Deadline:
        """A deadline ``timeout`` seconds from now; a plain one for a timeout that is not positive.

        The step is the largest power of ten that is at most ``timeout / 100``.
        """
        if not (timeout > 0 and math.isfinite(timeout)):
            return Deadline.from_timeout(timeout)
        steady = cast("SteadyDeadline", super().from_timeout(timeout))
        exponent = math.floor(math.log10(timeout / 100))
        steady._per_second = 10 ** max(-exponent, 0)
        steady._seconds_per_step = 10 ** max(exponent, 0)
        return steady

    def time_remaining(self) -> float:
        """The time left in seconds, rounded down to the step (0 once it is under a step)."""
        left = super().time_remaining()
        per_second, seconds_per_step = self._per_second, self._seconds_per_step
        steady = math.floor(left * per_second / seconds_per_step) * seconds_per_step / per_second
        # Float rounding could lift the product to the next step: never give more than is left.
        return min(steady, left)
