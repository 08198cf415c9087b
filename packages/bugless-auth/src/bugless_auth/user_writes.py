"""The one way to write ``users``: every write is logged in the users' change feed.

Caches of users (every Authenticator replica's, every frontend's) keep people
until the feed says they changed (:mod:`bugless_core.user_changes`), so a
write that is not logged would be served stale until the caches' backstop.
Every statement that writes ``users`` is in :data:`bugless_auth._queries.USER_WRITES`,
returns the ids it wrote, and runs through :class:`UserWrites`, which
refuses any other; :meth:`IdentityStore.write_users
<bugless_auth.store.IdentityStore.write_users>` then logs them as the
transaction's last statement (:data:`~bugless_auth._queries.LOG_USER_CHANGES`).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from bugless_auth import _queries as sql


class UserWrites:
    """One transaction's writes of ``users``, and the ids they changed.

    Attributes:
        conn: The transaction's connection, for statements on other tables.
        version: The feed version the changes were logged under (after
            :meth:`log`; None while nothing changed).
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._changed: dict[str, None] = {}
        self.version: int | None = None

    async def fetchrow(self, statement: str, *args: Any) -> asyncpg.Record | None:
        """Run one of :data:`~bugless_auth._queries.USER_WRITES`; its row, if it wrote one."""
        rows = await self.fetch(statement, *args)
        return rows[0] if rows else None

    async def fetch(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        """Run one of :data:`~bugless_auth._queries.USER_WRITES`; the rows it wrote.

        Raises:
            ValueError: ``statement`` is not one of them (a write that would
                not be logged; a programming error).
        """
        if statement not in sql.USER_WRITES:
            raise ValueError("UserWrites runs only the statements in _queries.USER_WRITES")
        rows: list[asyncpg.Record] = await self.conn.fetch(statement, *args)
        for row in rows:
            self._changed[row["user_id"]] = None
        return rows

    def changed(self, user_id: str) -> None:
        """Log ``user_id`` as changed although no row of it was written.

        For an account whose answers change with another's row: a real
        account gains a merged placeholder (its ``merged_user_ids``).
        """
        self._changed[user_id] = None

    async def log(self) -> int | None:
        """Log the changed ids under the next version (once, as the last statement)."""
        if self._changed and self.version is None:
            self.version = await self.conn.fetchval(sql.LOG_USER_CHANGES, list(self._changed))
        return self.version
