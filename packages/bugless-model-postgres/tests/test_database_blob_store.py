"""The ``database`` blob store beyond the shared contracts: layout, setup, settings, memory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from bugless_core.blobs import connect_blob_store
from bugless_core.errors import FailedPrecondition, InvalidArgument, NotFound
from bugless_core.model.backend import ModelSettings
from bugless_core.plugins import load_plugins
from bugless_model_postgres import DatabaseBlobSettings, DatabaseBlobStore, PostgresBackend
from bugless_testing.blob_contracts import chunked, random_content
from bugless_testing.blob_contracts.probe import MIB, run_probe
from bugless_testing.postgres import ThrowawayPostgres

SCHEMA = "blob_store"


@pytest.fixture(scope="module")
async def database_url(postgres_server: ThrowawayPostgres) -> str:
    url = await postgres_server.acreate_database("blob_store")
    await PostgresBackend.migrate(
        ModelSettings(database_url=url, page_token_secret="-" * 16, schema=SCHEMA)
    )
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[DatabaseBlobStore]:
    opened = await DatabaseBlobStore.connect(
        DatabaseBlobSettings(database_url=database_url, schema=SCHEMA, chunk_bytes=16 * 1024)
    )
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_installed_plugin_offers_the_store_as_the_default(database_url: str) -> None:
    plugins = load_plugins()
    assert plugins.blob_stores.get("database") is DatabaseBlobStore
    store = await connect_blob_store(
        plugins.blob_stores,
        {"BUGLESS_DATABASE_URL": database_url, "BUGLESS_DATABASE_SCHEMA": SCHEMA},
    )
    try:
        assert isinstance(store, DatabaseBlobStore)
        assert await store.check_ready()
        assert store.capabilities == frozenset()
    finally:
        await store.close()


async def test_content_is_cut_into_rows_of_the_chunk_size(
    store: DatabaseBlobStore, database_url: str
) -> None:
    content = random_content(16 * 1024 * 2 + 100)
    ref = await store.put(chunked(content, 5000))
    conn = await asyncpg.connect(database_url, server_settings={"search_path": SCHEMA})
    try:
        rows = await conn.fetch(
            "SELECT c.seq, octet_length(c.data) AS n, b.size, b.chunk_size FROM blobs b "
            "JOIN blob_chunks c USING (blob_id) WHERE b.sha256 = $1 ORDER BY c.seq",
            bytes.fromhex(ref.sha256),
        )
    finally:
        await conn.close()
    assert [(r["seq"], r["n"]) for r in rows] == [(0, 16384), (1, 16384), (2, 100)]
    assert {(r["size"], r["chunk_size"]) for r in rows} == {(len(content), 16384)}


async def test_a_blob_deleted_while_it_is_read_ends_the_read_with_not_found(
    store: DatabaseBlobStore,
) -> None:
    content = random_content(4 * MIB)
    ref = await store.put(chunked(content, MIB))
    reader = await store.open(ref.sha256)
    first = await anext(reader)
    assert content.startswith(first)
    await store.delete(ref.sha256)
    with pytest.raises(NotFound, match="deleted while being read"):
        async for _ in reader:
            pass


async def test_a_cancelled_put_rolls_back_and_returns_its_connection(
    store: DatabaseBlobStore, database_url: str
) -> None:
    stalled = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield random_content(100_000)
        stalled.set()
        await asyncio.Event().wait()
        yield b"never"

    put = asyncio.create_task(store.put(stalls()))
    await asyncio.wait_for(stalled.wait(), 10)
    await asyncio.sleep(0.2)
    conn = await asyncpg.connect(database_url)
    try:
        open_transactions = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bugless-blobs' "
            "AND state LIKE 'idle in transaction%'"
        )
        assert await conn.fetchval(open_transactions) == 1
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        assert await conn.fetchval(open_transactions) == 0
    finally:
        await conn.close()
    ref = await store.put(chunked(random_content(10), 10))  # the pool still works
    assert await store.exists(ref.sha256)


async def test_a_schema_without_the_blob_tables_is_refused_with_what_to_run(
    database_url: str,
) -> None:
    with pytest.raises(FailedPrecondition, match="bugless model migrate"):
        await DatabaseBlobStore.connect(
            DatabaseBlobSettings(database_url=database_url, schema="never_migrated")
        )


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"chunk_bytes": 100}, "BUGLESS_BLOB_CHUNK_BYTES"),
        ({"chunk_bytes": 64 * MIB}, "BUGLESS_BLOB_CHUNK_BYTES"),
        ({"pool_max_size": 0}, "BUGLESS_BLOB_POOL_MAX_SIZE"),
        ({"schema": "Bad-Name"}, "schema"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    settings: dict[str, Any], variable: str
) -> None:
    with pytest.raises(InvalidArgument, match=variable):
        DatabaseBlobSettings(database_url="postgresql://x/y", **settings)


async def test_streaming_200_mib_up_and_down_keeps_the_process_small(database_url: str) -> None:
    """Peak RSS of a fresh process putting and reading 200 MiB stays far below 200 MiB."""
    environ = {
        **os.environ,
        "BUGLESS_BLOB_STORE": "database",
        "BUGLESS_DATABASE_URL": database_url,
        "BUGLESS_DATABASE_SCHEMA": SCHEMA,
    }
    result = run_probe(environ, 200 * MIB)
    print(  # the figures, for the record (-s)
        f"database: up {result.up_mib_per_second:.0f} MiB/s, down "
        f"{result.down_mib_per_second:.0f} MiB/s, RSS {result.baseline_rss / MIB:.0f} MiB "
        f"before, {result.transfer_peak_rss / MIB:.0f} MiB at most during the transfer, "
        f"lifetime peak {result.peak_rss / MIB:.0f} MiB"
    )
    assert result.size == 200 * MIB
    assert result.transfer_growth < 32 * MIB
    assert result.peak_rss < 150 * MIB
