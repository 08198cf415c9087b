"""Draining: stop taking new page loads while in-flight work finishes.

On SIGTERM (Kubernetes is about to stop the pod) or an admin's action, the
replica fails ``/readyz`` so balancers stop sending it traffic, and any page
load that still arrives is steered (303) to ``--steer-to``: another instance
or another version. Requests already running, and form submissions, finish
normally; the server itself stops accepting connections only after the drain
period (see :mod:`bugless_web.server`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class DrainState:
    """Whether this replica is draining, since when and why.

    Attributes:
        draining: True once a drain started; never goes back by itself.
        reason: What started it ("SIGTERM", "admin alice").
        since: ``time.monotonic()`` when it started.
    """

    draining: bool = False
    reason: str = ""
    since: float = 0.0

    def start(self, reason: str) -> None:
        """Begin draining (idempotent: the first reason is kept)."""
        if self.draining:
            return
        self.draining = True
        self.reason = reason
        self.since = time.monotonic()

    def stop(self) -> None:
        """Take traffic again (an admin cancelled the drain)."""
        self.draining = False
        self.reason = ""
        self.since = 0.0
