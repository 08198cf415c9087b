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
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg

from bugless_core.errors import BuglessError, Unavailable
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres._context import WriteContext
from bugless_proto import v1

T = TypeVar("T")
RETRIES = 4

_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


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


async def run_write(
    pool: asyncpg.Pool,
    caller: v1.Caller,
    channel: str,
    work: Callable[[WriteContext], Awaitable[T]],
) -> tuple[T, WriteContext]:
    """Run ``work`` in one transaction, retrying serialization failures.

    Returns the result and the context of the attempt that committed (its
    ``written`` entries are exactly the committed ones).
    """
    for attempt in range(RETRIES):
        try:
            async with translated_errors(), pool.acquire() as conn, conn.transaction():
                ctx = WriteContext(conn, caller, datetime.now(UTC), channel)
                result = await work(ctx)
            return result, ctx
        except _RETRYABLE as exc:
            if attempt == RETRIES - 1:
                msg = "the change conflicted with concurrent changes; retry it"
                raise Unavailable(msg) from exc
            await asyncio.sleep(0.01 * (2**attempt))
    raise AssertionError  # pragma: no cover - the loop returns or raises
