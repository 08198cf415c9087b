"""What the live pages' event streams share: the bounded backlog, keepalives and the drain poll.

The issue page's stream (:mod:`bugless_web.routes.live`) and the lists'
(:mod:`bugless_web.routes.live_list`: search results and hotlists) each
read a Model ``Watch`` on the pages' channel and send it on to one browser;
this module holds the parts both follow, so neither reaches into the other.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0
#: While draining, how often an idle stream checks whether to close.
DRAIN_POLL_SECONDS = 1.0

_Item = TypeVar("_Item")


class Backlog(Generic[_Item]):
    """The events one stream has not sent yet, at most ``size`` of them.

    The Model's watch is read on the pages' channel, so its reader must
    never wait for a browser: an item that does not fit marks the stream
    :attr:`behind` and the reader ends the watch; the stream then tells the
    page to reload or refresh instead of holding events without limit.

    Attributes:
        queue: What the reader offered, for the stream to send in order.
        behind: Whether an item did not fit (the browser stopped reading).
    """

    def __init__(self, size: int) -> None:
        """At most ``size`` items unsent."""
        self.queue: asyncio.Queue[_Item | BaseException] = asyncio.Queue(size)
        self.behind = False

    def offer(self, item: _Item | BaseException) -> bool:
        """Queue ``item`` without waiting; False (and behind) when the backlog is full."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.behind = True
            return False
        return True
