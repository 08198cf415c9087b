"""A user command's wait for a lock: said while it lasts, bounded, and explained when given up.

``bugless auth user add|set-password|disable`` write the Authenticator's
tables directly. Behind a transaction holding a lock they need (a
``LOCK TABLE``, a long statement, a session left ``idle in transaction``)
their connection waited as PostgreSQL's default ``lock_timeout`` of 0 lets
it: for ever, and saying nothing, so the command looked hung (session 19
saw ``bugless auth user disable`` so; it had reached the database and was
waiting on ``sessions``, which ``pg_stat_activity`` read inside the
lock-holder's own transaction did not show: that view is read once per
transaction). Now their connection has ``lock_timeout`` set to
``--lock-wait-seconds`` and an ``application_name`` naming the command;
while a command waits for a lock it says on stderr which backends hold
it (asked from a second connection every :data:`SAY_WAITING_AFTER_SECONDS`);
when the lock wait runs out, the transaction is rolled back
and the command fails saying so: nothing was changed.

The user commands import this module when they run, not for ``--help``,
and it imports the database driver only when a command waits.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: How often a command that has not finished asks what it waits for.
SAY_WAITING_AFTER_SECONDS = 2.0
#: How long asking what it waits for may take (a second connection, one query).
ASK_SECONDS = 5.0
#: PostgreSQL's lock_not_available: ``lock_timeout`` ran out (or a NOWAIT lock was taken).
LOCK_NOT_AVAILABLE = "55P03"

#: The backends that block any backend of application $1 (the command's
#: connection), with what they are doing.
BLOCKERS = """
SELECT DISTINCT b.pid, b.state, b.application_name, b.xact_start, left(b.query, 120) AS query
  FROM pg_stat_activity w
 CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocker(pid)
  JOIN pg_stat_activity b ON b.pid = blocker.pid
 WHERE w.application_name = $1
 ORDER BY b.pid
"""


def application_name(command: str) -> str:
    """What the command's connection is called in ``pg_stat_activity`` (its process id too)."""
    return f"bugless auth user {command} #{os.getpid()}"[:63]


def session_settings(command: str, lock_wait_seconds: float) -> dict[str, str]:
    """The command connection's settings: its name, and how long a lock may be waited for."""
    return {
        "application_name": application_name(command),
        "lock_timeout": f"{max(1, round(lock_wait_seconds * 1000))}ms",
    }


def gave_up_on_a_lock(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is ``lock_timeout`` running out."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return True
        seen = seen.__cause__
    return False


async def said_while_waiting(
    work: Awaitable[T],
    *,
    database_url: str,
    command: str,
    lock_wait_seconds: float,
    say: Callable[[str], None],
) -> T:
    """Await ``work``, saying which backends hold a lock it waits for, once each.

    Asked every :data:`SAY_WAITING_AFTER_SECONDS` while ``work`` runs, on a
    second connection opened at the first asking; nothing is said when none
    is found (a command busy hashing a password waits for no one). ``work``
    is cancelled if this is (Ctrl-C), so it never outlives the command.
    """
    task = asyncio.ensure_future(work)
    watcher = _Watcher(database_url, application_name(command))
    named: set[int] = set()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=SAY_WAITING_AFTER_SECONDS)
            if done:
                return await task
            new = [row for row in await watcher.blockers() if row["pid"] not in named]
            if new and not task.done():
                named.update(row["pid"] for row in new)
                holders = "; ".join(_holder(row) for row in new)
                say(
                    f"waiting for a lock another transaction holds: {holders}; giving up after "
                    f"{lock_wait_seconds:g} s of waiting (--lock-wait-seconds)"
                )
    finally:
        task.cancel()  # a no-op once it is done
        await watcher.close()


class _Watcher:
    """The second connection that asks what blocks the command's (best effort)."""

    def __init__(self, database_url: str, application: str) -> None:
        self._url = database_url
        self._application = application
        self._conn: Any = None
        self._given_up = False

    async def blockers(self) -> list[Any]:
        """The rows of :data:`BLOCKERS`; none when the database cannot say."""
        import asyncpg  # noqa: PLC0415 - the user commands' --help loads no driver

        if self._given_up:
            return []
        try:
            async with asyncio.timeout(ASK_SECONDS):
                if self._conn is None:
                    self._conn = await asyncpg.connect(self._url)
                rows: list[Any] = await self._conn.fetch(BLOCKERS, self._application)
                return rows
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # No second connection, or no pg_blocking_pids (CockroachDB): the
            # command waits all the same, bounded by its lock_timeout.
            self._given_up = True
            return []

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


def _holder(row: Any) -> str:
    since = ""
    if isinstance(row["xact_start"], datetime.datetime):
        at = row["xact_start"].astimezone(datetime.UTC).strftime("%H:%M:%S UTC")
        since = f", its transaction open since {at}"
    app = f", application {row['application_name']!r}" if row["application_name"] else ""
    query = " ".join(str(row["query"] or "").split())
    return f"PostgreSQL backend {row['pid']} ({row['state']}{since}{app}, last statement: {query})"
