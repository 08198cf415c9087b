"""Losing the database is UNAVAILABLE, never a driver error or INTERNAL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from urllib.parse import urlsplit

import asyncpg
import pytest

from bugless_core.errors import NotFound, Unavailable
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres._database import translated_errors
from bugless_proto import v1
from bugless_testing.cuttable_proxy import CuttableProxy, via_proxy

ADMIN = v1.Caller(user_id="root", admin=True)


async def test_unreachable_server_is_unavailable(model_settings: ModelSettings) -> None:
    settings = dataclasses.replace(
        model_settings, database_url="postgresql://postgres@127.0.0.1:1/nothing"
    )
    with pytest.raises(Unavailable, match="the database is unreachable"):
        await PostgresBackend.open(settings)
    with pytest.raises(Unavailable, match="the database is unreachable"):
        await PostgresBackend.migrate(settings)


async def test_losing_the_connection_is_unavailable_and_recovers(
    model_settings: ModelSettings, bugless_model_backend: PostgresBackend
) -> None:
    real = urlsplit(model_settings.database_url)
    proxy = CuttableProxy(real.hostname or "127.0.0.1", real.port or 5432)
    await proxy.start()
    settings = dataclasses.replace(
        model_settings,
        database_url=via_proxy(model_settings.database_url, proxy.port),
        pool_min_size=1,
        pool_max_size=1,
    )
    backend = await PostgresBackend.open(settings)
    try:
        assert (await backend.get_server_info()).schema_version >= 1
        await proxy.cut()
        with pytest.raises(Unavailable, match="the database is unreachable"):
            await backend.get_server_info()
        with pytest.raises(Unavailable, match="the database is unreachable"):
            await backend.get_issue(v1.GetIssueRequest(caller=ADMIN, issue_id=1))
        assert not await backend.check_ready()
        await proxy.start()
        assert (await backend.get_server_info()).schema_version >= 1
    finally:
        await backend.close()
        with contextlib.suppress(Exception):
            await proxy.cut()


async def test_translated_errors_maps_what_escapes_the_block(model_settings: ModelSettings) -> None:
    """A cancelled statement and a lost connection become Unavailable; the rest pass as raised."""
    conn = await asyncpg.connect(model_settings.database_url)
    try:
        with pytest.raises(Unavailable, match="ran too long; narrow the query") as cancelled:
            async with translated_errors():
                await conn.execute("SET statement_timeout = 1; SELECT pg_sleep(1)")
        assert isinstance(cancelled.value.__cause__, asyncpg.QueryCanceledError)
        await conn.execute("RESET statement_timeout")
        mine = NotFound("issue 7")
        with pytest.raises(NotFound) as passed:
            async with translated_errors():
                raise mine
        assert passed.value is mine
        with pytest.raises(asyncpg.UndefinedTableError):
            async with translated_errors():
                await conn.execute("SELECT * FROM no_such_table_here")
        with pytest.raises(Unavailable, match="the database is unreachable: gone") as lost:
            async with translated_errors():
                raise ConnectionResetError("gone")
        assert isinstance(lost.value.__cause__, ConnectionResetError)
        with pytest.raises(asyncio.CancelledError):
            async with translated_errors():
                raise asyncio.CancelledError
        async with translated_errors():
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_a_database_that_is_not_there_is_unavailable(model_settings: ModelSettings) -> None:
    # 3D000, as while a database is dropped and restored: UNAVAILABLE with the
    # server's words (at start-up too, where a wrong URL says the same).
    parts = urlsplit(model_settings.database_url)
    settings = dataclasses.replace(
        model_settings, database_url=parts._replace(path="/no_such_database").geturl()
    )
    with pytest.raises(Unavailable, match='database "no_such_database" does not exist') as gone:
        await PostgresBackend.open(settings)
    assert isinstance(gone.value.__cause__, asyncpg.InvalidCatalogNameError)


async def test_a_lock_not_taken_in_time_is_unavailable(model_settings: ModelSettings) -> None:
    """55P03 (an operator's lock_timeout ran out): UNAVAILABLE, retry; not INTERNAL."""
    holder = await asyncpg.connect(model_settings.database_url)
    waiter = await asyncpg.connect(model_settings.database_url)
    try:
        await waiter.execute("SET lock_timeout = 50")
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(55003)")
            with pytest.raises(Unavailable, match="retry shortly") as waited:
                async with translated_errors(), waiter.transaction():
                    await waiter.execute("SELECT pg_advisory_xact_lock(55003)")
        assert isinstance(waited.value.__cause__, asyncpg.LockNotAvailableError)
        assert "lock timeout" in str(waited.value)
    finally:
        await waiter.close()
        await holder.close()
