"""Following a bugless client that does not honour a draining server's GOAWAY.

A stopping bugless server sends a graceful GOAWAY to the clients that say
they honour one (every bugless channel does, ``bugless_core.grpc._goaway``),
and their next calls go down a new connection. Clients from before that,
and a call that raced the GOAWAY, still meet the other way a draining server
turns calls away: UNAVAILABLE tagged ``DRAINING``, which bugless's failover
and retries send again. Tests of that path make this process's clients
silent about the GOAWAY with :func:`without_goaway`.
"""

from __future__ import annotations

import pytest

from bugless_core.grpc import GRACEFUL_GOAWAY_CLIENT_SETTINGS

__all__ = ["without_goaway"]


def without_goaway(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the bugless client connections this process opens from now on not declare it.

    A draining bugless server then refuses their new calls as DRAINING, as it
    refuses a bugless client from before its GOAWAY. Undone with
    ``monkeypatch``.
    """
    for setting in list(GRACEFUL_GOAWAY_CLIENT_SETTINGS):
        monkeypatch.delitem(GRACEFUL_GOAWAY_CLIENT_SETTINGS, setting)
