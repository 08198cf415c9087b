"""The Authenticator's database: its schema, pooled connections, transactions and leases.

:class:`StoreDatabase` is what every table of the Authenticator's schema goes
through: creating or upgrading the schema (``bugless auth migrate``), opening
a pool once the schema is this release's, running work in a transaction
re-run whole on a conflict, logging writes of ``users`` to the users' change
feed, readiness, and the leases one replica at a time holds. What is read and
written is :class:`bugless_auth.store.IdentityStore`'s, its subclass.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Self, TypeVar

import asyncpg
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_auth import _dialect
from bugless_auth.name_keys import fold_users, key_usernames
from bugless_auth.user_writes import UserWrites
from bugless_core import leases
from bugless_core.database_errors import is_statement_given_up, is_unreachable
from bugless_core.errors import Unavailable
from bugless_core.migrations import (
    applied_version,
    check_schema_version,
    load_migrations,
    migrate,
    quote_schema,
)
from bugless_core.schema_skew import SchemaSkewCheck
from bugless_core.transactions import retrying

T = TypeVar("T")
_COMPONENT = "bugless-auth"


def _known_version() -> int:
    """The newest schema version this release ships."""
    return load_migrations("bugless_auth")[-1].version


class StoreDatabase:
    """The Authenticator's schema on a pool: the connections and transactions of its tables.

    Database outages surface as :class:`~bugless_core.errors.Unavailable`,
    never as a wrong password or an unknown user.

    Attributes:
        logged_version: The newest users' change feed version a write through
            this store committed (0: none yet); the replica's feed follower
            answers ``GetUserChanges`` from memory only once it has read that far.
        schema_skew: The schema's version against this code's, as
            :meth:`check_ready` reads it (its gauge on ``metrics_registry``).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        dialect: _dialect.StoreDialect = _dialect.POSTGRES,
        *,
        metrics_registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """Wrap an open pool whose connections use ``schema``; see :meth:`open`."""
        self._pool = pool
        self.schema = schema
        self.dialect = dialect
        self.logged_version = 0
        self.schema_skew = SchemaSkewCheck(
            _COMPONENT, _known_version(), schema=schema, registry=metrics_registry
        )

    @classmethod
    async def migrate(cls, database_url: str, schema: str, *, dialect: str = "postgres") -> int:
        """Create or upgrade the schema; return its version. Safe from many replicas.

        ``dialect`` (:mod:`bugless_auth._dialect`) picks how concurrent runs
        are kept apart: an advisory lock on PostgreSQL, a lease on CockroachDB.

        Raises:
            InvalidArgument: the server cannot serve ``dialect``.
            Unavailable: the database cannot be reached.
        """
        chosen = _dialect.dialect_named(dialect)
        quote_schema(schema)
        try:
            pool = await asyncpg.create_pool(
                database_url, min_size=1, max_size=2, reset=_dialect.keep_session_as_is
            )
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            raise Unavailable(f"cannot reach the Authenticator's database: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                await _dialect.check_server(conn, chosen)
            version = await migrate(
                pool,
                schema,
                load_migrations("bugless_auth"),
                component=_COMPONENT,
                lock=chosen.migration_lock,
            )
            async with pool.acquire() as conn:
                await fold_users(conn, schema)
                await key_usernames(conn, schema)
            return version
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            raise Unavailable(f"cannot reach the Authenticator's database: {exc}") from exc
        finally:
            await pool.close()

    @classmethod
    async def open(
        cls,
        database_url: str,
        schema: str,
        *,
        pool_max_size: int = 10,
        dialect: str = "postgres",
        metrics_registry: CollectorRegistry = REGISTRY,
        session_settings: Mapping[str, str] | None = None,
    ) -> Self:
        """Connect and check that the schema is migrated to this release's version.

        ``session_settings``: more settings of every connection (the user
        commands' ``lock_timeout`` and ``application_name``,
        :mod:`bugless_auth.lock_waits`).

        Raises:
            FailedPrecondition: the schema is older (run ``bugless auth
                migrate``) or newer (upgrade this replica) than this code.
            InvalidArgument: the server cannot serve ``dialect``.
            Unavailable: the database cannot be reached.
        """
        chosen = _dialect.dialect_named(dialect)
        quoted = quote_schema(schema)
        try:
            pool = await asyncpg.create_pool(
                database_url,
                min_size=min(2, pool_max_size),
                max_size=pool_max_size,
                server_settings={**(session_settings or {}), "search_path": quoted},
                reset=_dialect.keep_session_as_is,
            )
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            raise Unavailable(f"cannot reach the Authenticator's database: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                await _dialect.check_server(conn, chosen)
                found = await applied_version(conn, schema)
            check_schema_version(
                found,
                _known_version(),
                schema=schema,
                component=_COMPONENT,
                migrate_command="bugless auth migrate",
            )
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema, chosen, metrics_registry=metrics_registry)

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()

    def connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A pooled connection of this schema; an outage is :class:`Unavailable`.

        For the other tables of the Authenticator's schema (sessions, the
        throttle), which share the pool rather than opening their own.
        """
        return self._connection()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except Exception as exc:
            if is_statement_given_up(exc):
                # statement_timeout, lock_timeout or an operator's cancel: busy, not a bug.
                raise Unavailable(
                    f"the Authenticator's database gave up on a statement ({type(exc).__name__}: "
                    f"{str(exc).strip()}); retry shortly"
                ) from exc
            if not is_unreachable(exc):
                raise
            raise Unavailable(
                f"the Authenticator's database cannot be reached now ({type(exc).__name__}); "
                "retry shortly"
            ) from exc

    async def run(self, work: Callable[[Any], Awaitable[T]], *, transaction: bool = True) -> T:
        """Run ``work(conn)`` on a pooled connection, re-run whole on a conflict.

        Every statement of the Authenticator's schema goes through here, so
        that on CockroachDB (and PostgreSQL at SERIALIZABLE) a transaction the
        database aborted with 40001 is retried from the start, per the
        dialect's :class:`~bugless_core.transactions.RetryPolicy`. ``work`` must
        therefore have no effect outside the database before it returns.

        Raises:
            Unavailable: the database cannot be reached, or the transaction
                kept conflicting.
        """

        async def attempt() -> T:
            async with self._connection() as conn:
                if not transaction:
                    return await work(conn)
                async with conn.transaction():
                    return await work(conn)

        return await retrying(self.dialect.retries, attempt)

    async def write_users(self, work: Callable[[UserWrites], Awaitable[T]]) -> T:
        """Run ``work`` in a transaction whose writes of ``users`` go to the change feed.

        ``work`` writes ``users`` only through the :class:`UserWrites` it is
        given (other tables through its ``conn``); the ids it changed are
        logged under the next feed version as the transaction's last
        statement. Re-run whole on a conflict, like :meth:`run`.
        """
        logged_as: int | None = None

        async def logged(conn: Any) -> T:
            nonlocal logged_as
            writes = UserWrites(conn)
            result = await work(writes)
            logged_as = await writes.log()
            return result

        result = await self.run(logged)  # the last attempt's version is the committed one
        if logged_as is not None:
            self.logged_version = max(self.logged_version, logged_as)
        return result

    async def check_ready(self) -> bool:
        """Whether the database answers with a schema not older than this code (readiness).

        As the Model's: a newer schema (a rolling upgrade) is ready, an older
        one (a restored backup) is not; :attr:`schema_skew` says which.
        """
        try:
            async with self._connection() as conn:
                return await self.schema_skew.read(conn)
        except (Unavailable, asyncpg.PostgresError):
            return False

    # ---- leases ----

    async def take_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take lease ``name`` for ``ttl_ms`` (or keep it: ``holder`` has it); False if taken.

        The schema's ``bugless_leases`` (migration 0008): one replica at a time
        runs what only one should, on PostgreSQL and CockroachDB alike.

        Raises:
            Unavailable: the database cannot be reached.
        """
        async with self._connection() as conn:
            return await leases.try_take(conn, name, holder, ttl_ms)

    async def release_lease(self, name: str, holder: str) -> None:
        """Give lease ``name`` up at once if ``holder`` has it (another replica may take it)."""
        async with self._connection() as conn:
            await conn.execute(leases.RELEASE_LEASE, name, holder)
