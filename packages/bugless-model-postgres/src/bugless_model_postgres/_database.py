"""Connections: the pool, driver-error translation and transaction retries.

Driver errors never reach a caller. Connection trouble becomes
:class:`~bugless_core.errors.Unavailable` ("the database is unreachable: ...");
serialization failures and deadlocks are retried a few times and then become
Unavailable too; anything else is re-raised for the servicer to log as
INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import asyncpg.pool

from bugless_core.errors import BuglessError, Unavailable
from bugless_core.model.backend import ModelSettings
from bugless_core.transactions import POSTGRES_RETRIES, RetryPolicy, retrying
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import IssueIdSource, WriteContext
from bugless_model_postgres._dialect import POSTGRES, Dialect
from bugless_proto import v1

T = TypeVar("T")
_log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # Raised by the pool when it resets a connection the server dropped
    # (seen in the failover drill while PostgreSQL restarts).
    asyncpg.exceptions.InternalClientError,
)


def server_settings(settings: ModelSettings, schema_sql: str) -> dict[str, str]:
    """Per-connection settings: the schema and the statement timeout."""
    return {
        "search_path": f"{schema_sql}, public",
        "statement_timeout": str(settings.statement_timeout_ms),
        "application_name": "bugless-model",
    }


def unavailable(exc: BaseException) -> Unavailable:
    """The error a caller gets when the database cannot be used."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Unavailable(f"the database is unreachable: {detail}")


@contextlib.asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Turn driver connection errors into Unavailable; let the rest through."""
    try:
        yield
    except BuglessError:
        raise
    except asyncpg.QueryCanceledError as exc:
        msg = "the database cancelled a statement that ran too long; narrow the query"
        raise Unavailable(msg) from exc
    except _CONNECTION_ERRORS as exc:
        raise unavailable(exc) from exc


async def release_as_is(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond asyncpg's own ROLLBACK of a stray transaction.

    asyncpg's default reset runs ``pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`` on every release, one more round trip per call
    (10-15 % of the Model's CPU on a create). None of it has anything to undo
    here, because no code of this package (or of bugless-model-cockroach)
    leaves session state on a pooled connection:

    * advisory locks are only ever ``pg_advisory_xact_lock`` (the hierarchy
      lock), released at commit or rollback, and the migration's session lock,
      released explicitly before its short-lived pool closes;
    * the watch feed LISTENs on its own dedicated connection, never a pooled one;
    * cursors are not used (and asyncpg's would end with their transaction);
    * settings are fixed per connection by ``server_settings``; the only
      ``SET`` is ``SET TRANSACTION`` (stale reads), which ends with its
      transaction; CockroachDB leases are rows, not session state.

    asyncpg still rolls back a transaction left open (and drops client-side
    listener callbacks) before calling this. Code that needs session state
    must take a dedicated connection, or undo it itself before release (as
    ``Connection.reset()`` does).
    """
    del conn


class _Resumed:
    """The rest of a coroutine that has already run to its first suspension.

    Awaiting this yields the object the coroutine yielded (the future it
    waits for) and then drives it on, passing in what its task sends or
    throws, until it returns.
    """

    def __init__(self, step: Coroutine[Any, Any, None], pending: Any) -> None:
        self._step = step
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, None]:
        step, pending = self._step, self._pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # thrown in by the task; the coroutine decides
                try:
                    pending = step.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    pending = step.send(sent)
                except StopIteration:
                    return


async def _finish(step: Coroutine[Any, Any, None], pending: Any) -> None:
    await _Resumed(step, pending)


class ReleasingPool(asyncpg.Pool):
    """asyncpg's pool, whose release runs in the caller's task until it must wait.

    ``asyncpg.Pool.release`` runs the holder's release in ``asyncio.shield``
    so that a cancelled caller still returns its connection, reset: a new
    task and two loop turns on every Model call. Here the release starts in
    the caller's task. A cancellation can only arrive where a coroutine
    waits, so a release that finishes without waiting (the common one: no
    open transaction, no statement being cancelled, with ``release_as_is``)
    cannot be cut short, and then one bare loop turn follows (callbacks the
    call scheduled, such as asyncpg's query loggers, have run when it
    returns, as before). A release that must wait (a ROLLBACK, a cancelled
    statement's acknowledgement) is finished from there in a shielded task,
    as asyncpg would (``test_pool_release`` cancels one there). Releases
    with a timeout, and anything asyncpg refuses or ignores, go through
    asyncpg's own ``release`` (its timeout belongs to the task that runs the
    whole release). Acquire + release: 20.6 -> 12.5 us of CPU.

    Relies on asyncpg's pool internals (read on 0.32: the proxy's ``_holder``
    and ``_con``, ``Connection._on_release``, ``Pool._check_init``).
    """

    async def release(
        self,
        connection: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (asyncpg's signature)
    ) -> None:
        """Return ``connection`` to the pool (see the class)."""
        holder: Any = getattr(connection, "_holder", None)
        con: Any = getattr(connection, "_con", None)
        if (
            type(connection) is not asyncpg.pool.PoolConnectionProxy
            or holder is None
            or holder._pool is not self
            or con is None
            or (timeout if timeout is not None else holder._timeout) is not None
        ):
            await super().release(connection, timeout=timeout)
            return
        self._check_init()
        con._on_release()
        step = holder.release(None)
        try:
            pending = step.send(None)
        except StopIteration:
            # One loop turn still, as asyncpg's release gives (a bare yield,
            # no task): what the call scheduled with call_soon, e.g. asyncpg's
            # query-logger callbacks, has run when the call returns.
            await asyncio.sleep(0)
            return
        await asyncio.shield(_finish(step, pending))


async def open_pool(settings: ModelSettings, schema_sql: str) -> asyncpg.Pool:
    """The backend's connection pool, released connections kept as they are.

    A :class:`ReleasingPool`: built as ``asyncpg.create_pool`` builds its
    pool, with that function's defaults for what is not set here.
    """
    async with translated_errors():
        pool: asyncpg.Pool = await ReleasingPool(
            settings.database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            max_queries=50000,
            max_inactive_connection_lifetime=300.0,
            server_settings=server_settings(settings, schema_sql),
            reset=release_as_is,
            loop=None,
            connection_class=asyncpg.Connection,
            record_class=asyncpg.Record,
        )
    return pool


async def default_isolation(pool: asyncpg.Pool) -> str:
    """The isolation level a transaction of ``pool`` gets (``read committed``, ...)."""
    async with translated_errors(), pool.acquire() as conn:
        level: str = await conn.fetchval("SELECT current_setting('default_transaction_isolation')")
    return level


async def append_to_feed(ctx: WriteContext) -> None:
    """Append the transaction's change-feed row, if it changed anything reported.

    Must be the transaction's last statement: from it to the commit the
    transaction holds the feed's ``head`` row, and every other writer waits
    there (see migration 0005), so the window is kept to one round trip.
    Nothing to do when the transaction's last statement appended it already
    (the one-statement create).
    """
    if ctx.feed_position or not ctx.dialect.change_feed:
        return
    if not ctx.written and not ctx.components_changed:
        return
    values = (
        ctx.now,
        ctx.caller.user_id,
        [i for i, _ in ctx.written],
        [v for _, v in ctx.written],
        ctx.components_changed,
    )
    if ctx.dialect.notify is None:
        ctx.feed_position = await ctx.conn.fetchval(q.FEED_APPEND, *values)
    else:
        ctx.feed_position = await ctx.conn.fetchval(ctx.dialect.notify, *values, ctx.channel)


async def run_write(
    pool: asyncpg.Pool,
    caller: v1.Caller,
    channel: str,
    work: Callable[[WriteContext], Awaitable[T]],
    *,
    dialect: Dialect = POSTGRES,
    policy: RetryPolicy = POSTGRES_RETRIES,
    new_issue_id: IssueIdSource | None = None,
    one_statement: bool = False,
) -> tuple[T, WriteContext]:
    """Run ``work`` in one transaction, retrying serialization failures.

    Returns the result and the context of the attempt that committed (its
    ``written`` entries are exactly the committed ones), so side effects are
    announced once, after the final commit, never for a failed try.

    With ``one_statement``, ``work`` promises to read without taking locks,
    then write everything it writes, its change-feed row included, in ONE
    statement (reads after it are fine). Where the dialect's
    ``statement_snapshots`` says each statement reads a snapshot of its own
    anyway (READ COMMITTED), such work runs without BEGIN and COMMIT, two
    round trips fewer: that statement is atomic by itself, and the reads see
    what they would have seen in the transaction. Elsewhere it runs in a
    transaction like any other work.
    """
    bare = one_statement and dialect.statement_snapshots

    async def attempt() -> tuple[T, WriteContext]:
        async with translated_errors(), pool.acquire() as conn:
            ctx = WriteContext(
                conn,
                caller,
                datetime.now(UTC),
                channel,
                dialect,
                new_issue_id=new_issue_id,
                one_statement=bare,
            )
            if bare:
                result = await work(ctx)
                _check_one_statement(ctx)
                return result, ctx
            async with conn.transaction():
                result = await work(ctx)
                await append_to_feed(ctx)
        return result, ctx

    return await retrying(policy, attempt)


def _check_one_statement(ctx: WriteContext) -> None:
    """A ``one_statement`` write wrote its feed row with its rows (else a bug, said loudly)."""
    if ctx.written and ctx.dialect.change_feed and not ctx.feed_position:
        msg = "a one-statement write committed changes without their change-feed row"
        raise RuntimeError(msg)
