"""A small pool of service-account connections to one LDAP server.

bonsai ships ``AIOConnectionPool``, but it waits for a free connection without
a deadline and hands out idle connections without knowing whether the server
restarted since. Both matter here: a login must fail fast with ``Unavailable``
rather than queue forever, and after a directory restart every idle connection
is dead, so the first connection failure on a *reused* connection is retried
once on a fresh one instead of being reported as an outage. A timeout is not
retried: it says the server is slow or hung, not that the connection is
stale, and a second wait would only double the time a sign-in spends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import bonsai
import bonsai.errors

T = TypeVar("T")

#: What bonsai and asyncio raise when the server is gone or does not answer.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    bonsai.errors.ConnectionError,
    bonsai.errors.ClosedConnection,
    bonsai.errors.TimeoutError,
    TimeoutError,
    OSError,
)

#: The subset of :data:`CONNECTION_ERRORS` that means "no answer in time".
TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (bonsai.errors.TimeoutError, TimeoutError)


class PoolExhausted(Exception):
    """Every connection stayed busy for longer than the acquire timeout.

    The caller's ``acquire_timeout`` is the LDAP settings' own
    ``pool_wait_seconds``, not the search's ``operation_timeout``.
    """


class ServiceConnectionPool:
    """Up to ``size`` connections bound as the service account to one server.

    Connections are opened lazily, so a backend configured with a replica that
    is down still starts; the failure surfaces on the first search instead.
    """

    def __init__(self, client: bonsai.LDAPClient, *, size: int, connect_timeout: float) -> None:
        self._client = client
        self._connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Any] = []
        self._closed = False

    async def _connect(self) -> Any:
        return await self._client.connect(is_async=True, timeout=self._connect_timeout)

    def _discard_idle(self) -> None:
        while self._idle:
            with contextlib.suppress(Exception):
                self._idle.pop().close()

    async def run(self, operation: Callable[[Any], Awaitable[T]], *, acquire_timeout: float) -> T:
        """Run ``operation`` on a pooled connection and return its result.

        A connection that raised is closed, never returned to the pool, and
        so is one ``operation`` closed itself (it left state of its own on
        the server: a paged search stopped early). A connection error (not
        a timeout) on a reused connection drops every idle connection (they
        share the dead server) and retries once on a fresh one.

        Raises:
            PoolExhausted: no connection became free within ``acquire_timeout``.
            Any of :data:`CONNECTION_ERRORS`, or an ``LDAPError`` of the operation.
        """
        try:
            async with asyncio.timeout(acquire_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolExhausted from None
        try:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            try:
                result = await operation(conn)
            except CONNECTION_ERRORS as exc:
                conn.close()
                if not reused or isinstance(exc, TIMEOUT_ERRORS):
                    raise
                self._discard_idle()
                conn = await self._connect()
                try:
                    result = await operation(conn)
                except BaseException:
                    conn.close()
                    raise
            except BaseException:
                conn.close()
                raise
            if self._closed:
                conn.close()
            elif not conn.closed:
                self._idle.append(conn)
            return result
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close the idle connections; connections in use close when returned."""
        self._closed = True
        self._discard_idle()
