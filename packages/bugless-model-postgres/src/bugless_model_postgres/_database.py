"""Connections: the pool, driver-error translation and transaction retries.

Driver errors never reach a caller. Connection trouble becomes
:class:`~bugless_core.errors.Unavailable` ("the database is unreachable: ...");
serialization failures and deadlocks are retried a few times and then become
Unavailable too; anything else is re-raised for the servicer to log as
INTERNAL.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import TypeVar

import asyncpg

from bugless_core.database_errors import is_unreachable
from bugless_core.errors import BuglessError, Unavailable
from bugless_core.model.backend import ModelSettings
from bugless_core.transactions import POSTGRES_RETRIES, RetryPolicy, retrying
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import IssueIdSource, WriteContext
from bugless_model_postgres._dialect import POSTGRES, Dialect
from bugless_proto import v1

T = TypeVar("T")
_log = logging.getLogger(__name__)


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


class translated_errors:  # noqa: N801 - used as a function: ``async with translated_errors():``
    """Turn driver connection errors into Unavailable; let the rest through.

    A statement the server cancelled (``statement_timeout``) becomes
    Unavailable with a hint to narrow the query, and one that waited out
    ``lock_timeout`` (55P03) Unavailable with a hint to retry; a :class:`BuglessError`
    passes unchanged, as does anything else (the servicer logs it as
    INTERNAL) and cancellation.

    A class rather than an ``@asynccontextmanager`` generator: every backend
    call enters it (a search page once per attempt), and the generator's
    enter and exit cost ~2-3 µs a time against ~1 (bench/JOURNAL.md,
    "Session 12"). It is entered in ``async with`` next to the pool's
    ``acquire()``, so it stays an asynchronous context manager.
    """

    __slots__ = ()

    async def __aenter__(self) -> None:
        """Nothing to set up."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Raise Unavailable for a connection error, a cancelled statement or a lock timeout."""
        if exc is None or isinstance(exc, BuglessError):
            return
        if isinstance(exc, asyncpg.QueryCanceledError):
            msg = "the database cancelled a statement that ran too long; narrow the query"
            raise Unavailable(msg) from exc
        if isinstance(exc, asyncpg.LockNotAvailableError):
            # 55P03: the database's lock_timeout (an operator's setting) ran out
            # while another transaction held a lock: contention, not a bug.
            msg = (
                "the database gave up waiting for a lock another transaction holds "
                f"({str(exc).strip()}); retry shortly"
            )
            raise Unavailable(msg) from exc
        if is_unreachable(exc):
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


async def open_pool(settings: ModelSettings, schema_sql: str) -> asyncpg.Pool:
    """The backend's connection pool, released connections kept as they are."""
    async with translated_errors():
        pool: asyncpg.Pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            server_settings=server_settings(settings, schema_sql),
            reset=release_as_is,
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
    Where the dialect appends to a pending table instead
    (``Dialect.feed_append``), nothing is held: it is last only to name
    every entry the transaction wrote.
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
    if ctx.dialect.feed_append is not None:  # numbered after commit by the sequencer
        ctx.feed_position = await ctx.conn.fetchval(ctx.dialect.feed_append, *values)
    elif ctx.dialect.notify is None:
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
        try:
            return await write()
        except asyncpg.ForeignKeyViolationError as exc:
            if exc.constraint_name != FIELD_KEY:
                raise
            raise FieldDeletedMeanwhile(exc) from exc
        except asyncpg.CheckViolationError as exc:
            if exc.constraint_name != OPTION_CHECK:
                raise
            raise OptionRemovedMeanwhile(exc) from exc

    async def write() -> tuple[T, WriteContext]:
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


#: Migration 0014's key from a custom value's search row to its field.
FIELD_KEY = "issue_custom_values_field_id_fkey"


class FieldDeletedMeanwhile(Exception):
    """A write's value names a custom field deleted since the write read it.

    The write read the field's definition before a DeleteCustomField
    committed, and inserted the value's search row after: migration 0014's
    key made the insert wait for the deletion, then refused it (23503).
    Nothing was written. It is the same kind of loss as a serialization
    failure, so it carries 40001 and the retry policy runs the write again:
    the new attempt reads the definitions as they are now, and answers what
    the call would have answered after the deletion (InvalidArgument for a
    value given for the field; no default applied from it).
    """

    sqlstate = "40001"


#: Migration 0015's check that a new custom value's search row names an option of its field.
OPTION_CHECK = "issue_custom_values_option"


class OptionRemovedMeanwhile(Exception):
    """A write's value names an option its field no longer has in that spelling.

    The write matched the value to the options it read, then an
    UpdateCustomField removing that option, or renaming it (its case only),
    committed before the write's value rows went in: migration 0015's
    trigger, which compares exactly since 0017, refused them (23514).
    Nothing was written. Like :class:`FieldDeletedMeanwhile` it carries
    40001, so the retry policy runs the write again: the new attempt
    matches the value against the options as they are now, answering
    InvalidArgument naming the option and the field for a removed option,
    storing the new spelling for a renamed one.
    """

    sqlstate = "40001"


def _check_one_statement(ctx: WriteContext) -> None:
    """A ``one_statement`` write wrote its feed row with its rows (else a bug, said loudly)."""
    if ctx.written and ctx.dialect.change_feed and not ctx.feed_position:
        msg = "a one-statement write committed changes without their change-feed row"
        raise RuntimeError(msg)
