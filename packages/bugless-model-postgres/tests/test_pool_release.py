"""A cancelled call still returns its connection, reset, to the pool.

The backend's pool (:class:`~bugless_model_postgres._database.ReleasingPool`)
releases in the caller's task until the release must wait, and finishes a
release that waits in a shielded task, as asyncpg's own pool does for every
release. These tests cancel calls where a release must wait — with an open
transaction to roll back, and in a statement PostgreSQL is still running —
on a pool of one connection: the next call must get the same server session,
out of any transaction, nothing left running.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres._database import ReleasingPool, open_pool


@pytest.fixture
async def pool(model_settings: ModelSettings) -> AsyncIterator[asyncpg.Pool]:
    """The backend's pool as ``open_pool`` makes it, with one connection."""
    settings = dataclasses.replace(model_settings, pool_min_size=1, pool_max_size=1)
    made = await open_pool(settings, "public")
    assert isinstance(made, ReleasingPool)
    try:
        yield made
    finally:
        await made.close()


async def _server_pid(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        pid: int = conn.get_server_pid()
        return pid


async def _assert_back_and_clean(pool: asyncpg.Pool, pid: int) -> None:
    """The one connection is free again: same session, no transaction, usable."""
    async with pool.acquire(timeout=60) as conn:
        assert conn.get_server_pid() == pid
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT pg_current_xact_id_if_assigned() IS NULL")
        assert await conn.fetchval("SELECT 41 + 1") == 42


async def test_a_plain_release_returns_the_connection(pool: asyncpg.Pool) -> None:
    pid = await _server_pid(pool)
    for _ in range(3):
        await _assert_back_and_clean(pool, pid)


async def test_a_release_cancelled_while_it_rolls_back_still_returns_the_connection(
    pool: asyncpg.Pool,
) -> None:
    """The release sends ROLLBACK and waits for it; the caller is cancelled there.

    (asyncpg logs "Resetting connection with an active transaction": the
    transaction here is deliberately left open.) Without the shield on the
    rest of the release this fails: the cut-short release terminates the
    connection, and the next call gets a new session.
    """
    pid = await _server_pid(pool)
    conn = await pool.acquire()
    await conn.execute("BEGIN")
    await conn.fetchval("SELECT pg_current_xact_id()")
    release = asyncio.create_task(pool.release(conn))
    await asyncio.sleep(0)  # its first step: ROLLBACK sent, waiting for the reply
    assert not release.done()
    release.cancel()
    with pytest.raises(asyncio.CancelledError):
        await release
    await _assert_back_and_clean(pool, pid)


async def test_a_call_cancelled_in_a_running_statement_returns_the_connection(
    pool: asyncpg.Pool, model_settings: ModelSettings
) -> None:
    """Cancelled mid-statement: the release waits for PostgreSQL's acknowledgement."""
    pid = await _server_pid(pool)

    async def call() -> None:
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_sleep(600)")

    task = asyncio.create_task(call())
    watcher = await asyncpg.connect(model_settings.database_url)
    try:
        running = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%'"
        while True:  # until PostgreSQL runs the statement (no event to wait for)
            if await watcher.fetchval(running + " AND state = 'active'", pid):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _assert_back_and_clean(pool, pid)
        assert not await watcher.fetchval(running + " AND state = 'active'", pid)
    finally:
        await watcher.close()
