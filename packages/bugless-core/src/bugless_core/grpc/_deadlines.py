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

A :class:`SteadyDeadline` counts its time left in steps of about a hundredth
of its timeout: the largest of 1, 2 or 5 times a power of ten that is at most
``timeout / 100`` (0.1 s for 10 s, 0.05 s for 5-9.99 s, 0.02 s for 2-4.99 s).
Its timeout is first cut down to a whole number of steps, so the time left
is one step short of it for as long as the request goes out within a step of
the deadline being set, whatever the timeout: a 10 s deadline leaves as
``9900m``, and so does a 10.001 s one. (Rounding the time left alone, the
window was ``timeout mod step``: 10.001 s sent ``10000m`` within 1 ms and
``9900m`` after. And a power-of-ten step gave 9.99 s a step, and a window,
ten times shorter than 10 s had: 10 ms, which a busy event loop outlasts
between a call's start and its request going out.) The deadline is never
longer than asked, and at most two steps (2 %) shorter (at both ends: the
local timer reads the same time left). :class:`~bugless_core.grpc.CorkedChannel`
makes one for every call given a ``timeout``, so every service's client calls
(web, API, notifier, import) send it.
"""

from __future__ import annotations

import math
from typing import cast

from grpclib.metadata import Deadline

#: Step mantissas: the step is one of these times a power of ten.
_MANTISSAS = (5, 2, 1)
#: Relative slack when counting whole steps in a timeout (9.99 / 0.05 in floats).
_FLOAT_SLACK = 1e-9


def step_of(timeout: float) -> float:
    """The step of ``timeout``: the largest 1, 2 or 5 times a power of ten <= ``timeout / 100``."""
    scale = timeout / 100
    power = 10.0 ** math.floor(math.log10(scale))
    for mantissa in _MANTISSAS:
        if mantissa * power <= scale * (1 + _FLOAT_SLACK):
            return mantissa * power
    return power  # not reached: 1 * power <= scale by the floor above


class SteadyDeadline(Deadline):
    """A grpclib ``Deadline`` cut to whole steps, whose time left is counted in steps."""

    #: The step of the time left, in seconds.
    _step: float

    @classmethod
    def from_timeout(cls, timeout: float) -> Deadline:
        """A deadline within ``timeout`` seconds; a plain one for a timeout that is not positive.

        The deadline is the largest whole number of steps (:func:`step_of`)
        that is at most ``timeout`` from now.
        """
        if not (timeout > 0 and math.isfinite(timeout)):
            return Deadline.from_timeout(timeout)
        step = step_of(timeout)
        whole = math.floor(timeout / step * (1 + _FLOAT_SLACK)) * step
        steady = cast("SteadyDeadline", super().from_timeout(min(whole, timeout)))
        steady._step = step
        return steady

    def time_remaining(self) -> float:
        """The time left in seconds, rounded down to the step (0 once it is under a step)."""
        left = super().time_remaining()
        step = self._step
        # Float rounding could lift the product to the next step: never give more than is left.
        return min(math.floor(left / step) * step, left)
