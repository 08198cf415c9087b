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
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg

from bugless_core.errors import BuglessError, Unavailable
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres._context import IssueIdSource, WriteContext, sequence_issue_id
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
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


@dataclass(frozen=True)
class RetryPolicy:
    """How a transaction that lost a conflict is run again.

    The whole transaction is re-run from the start (a fresh context, nothing
    of the failed attempt kept), after a capped exponential backoff; after
    ``attempts`` tries the caller gets Unavailable. With ``jitter`` each
    delay is drawn uniformly from ``[0, capped delay]`` ("full jitter"), so
    transactions that collided once do not collide again in lockstep.

    Attributes:
        attempts: Tries in all, the first included.
        base_delay: Seconds before the second try; doubles per try.
        max_delay: Upper bound of one delay, in seconds.
        jitter: Randomise each delay.
    """

    attempts: int = 4
    base_delay: float = 0.01
    max_delay: float = 0.08
    jitter: bool = False

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` means "this transaction lost a conflict: run it again"."""
        return isinstance(exc, _RETRYABLE)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based)."""
        capped = min(self.max_delay, self.base_delay * (2**attempt))
        return random.uniform(0, capped) if self.jitter else capped


#: PostgreSQL's policy: conflicts are rare (writers lock rows in id order).
POSTGRES_RETRIES = RetryPolicy()


async def retrying(policy: RetryPolicy, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` until it succeeds, retrying what ``policy`` calls retryable.

    Raises:
        Unavailable: still conflicting after ``policy.attempts`` tries.
    """
    for number in range(policy.attempts):
        try:
            return await attempt()
        except Exception as exc:
            if not policy.is_retryable(exc):
                raise
            if number == policy.attempts - 1:
                msg = (
                    f"the transaction conflicted with concurrent ones {policy.attempts} times "
                    "in a row and was given up; nothing was written, retry it"
                )
                raise Unavailable(msg) from exc
            _log.debug("transaction conflict (try %d): %s", number + 1, exc)
            await asyncio.sleep(policy.delay(number))
    raise AssertionError  # pragma: no cover - the loop returns or raises


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
    *,
    dialect: Dialect = POSTGRES,
    policy: RetryPolicy = POSTGRES_RETRIES,
    new_issue_id: IssueIdSource = sequence_issue_id,
) -> tuple[T, WriteContext]:
    """Run ``work`` in one transaction, retrying serialization failures.

    Returns the result and the context of the attempt that committed (its
    ``written`` entries are exactly the committed ones), so side effects are
    announced once, after the final commit, never for a failed try.
    """

    async def attempt() -> tuple[T, WriteContext]:
        async with translated_errors(), pool.acquire() as conn, conn.transaction():
            ctx = WriteContext(
                conn, caller, datetime.now(UTC), channel, dialect, new_issue_id=new_issue_id
            )
            result = await work(ctx)
        return result, ctx

    return await retrying(policy, attempt)
