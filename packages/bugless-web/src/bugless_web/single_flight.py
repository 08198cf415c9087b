"""One backend call per cache key at a time, however many requests miss it at once.

The web tier keeps short-lived answers per viewer (hotlists, the component
tree, custom fields, validated tokens) and a few for everyone (the Model's
capabilities, the sign-in methods). When such an entry expires under load,
every request in flight misses it together: with eight connections that was
up to eight identical calls to the Model or the Authenticator for one
expiry. :class:`SingleFlight` makes the first miss start the call and lets
the others await that same call.

Invalidation stays exact: :meth:`SingleFlight.forget` (after a write through
this replica) makes later misses start a new call instead of joining one
that began before the write, and the old call's :attr:`SingleFlight.generation`
no longer matches, so its caller does not store an answer that may predate
the write.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """In-flight loads by key; a caller missing a key being loaded awaits that load."""

    def __init__(self) -> None:
        """No load in flight."""
        self._loading: dict[K, asyncio.Future[V]] = {}
        #: Bumped by :meth:`forget`: a load that began before compares it to keep its answer.
        self.generation = 0

    async def load(self, key: K, start: Callable[[], Awaitable[V]]) -> V:
        """The answer of the load of ``key`` in flight, or of ``start()`` begun now.

        The load runs as a task of its own, so a caller that goes away (a
        closed connection cancels its request) does not cancel it for the
        others waiting. A load that fails fails for every caller waiting on
        it; the next miss starts a new one.
        """
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(start())
            self._loading[key] = loading
            loading.add_done_callback(functools.partial(self._done, key))
        return await asyncio.shield(loading)

    def forget(self, key: K | None = None) -> None:
        """Let later misses of ``key`` (of every key when None) start a new load."""
        if key is None:
            self._loading.clear()
        else:
            self._loading.pop(key, None)
        self.generation += 1

    def _done(self, key: K, done: asyncio.Future[V]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone away


__all__ = ["SingleFlight"]
