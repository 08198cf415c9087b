"""The blob store conformance suite on the ``database`` store, on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import DatabaseBlobSettings, DatabaseBlobStore, PostgresBackend
from bugless_testing.blob_contracts import (
    ConcurrencyContract,
    DedupContract,
    DeleteContract,
    Footprint,
    LimitContract,
    MissingBlobContract,
    RangeContract,
    RoundTripContract,
    StoreUnderTest,
)
from bugless_testing.postgres import ThrowawayPostgres

SCHEMA = "blob_contracts"
CHUNK = 16 * 1024

FOOTPRINT = """
SELECT (SELECT coalesce(sum(octet_length(c.data)), 0)
          FROM blob_chunks c JOIN blobs b ON b.blob_id = c.blob_id) AS stored_bytes,
       (SELECT count(*) FROM blobs) AS blobs,
       (SELECT count(*) FROM blob_chunks c
         WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.blob_id = c.blob_id)) AS pending
"""


@pytest.fixture(scope="module", params=["read_committed", "serializable"])
async def blob_store_under_test(
    postgres_server: ThrowawayPostgres, request: pytest.FixtureRequest
) -> AsyncIterator[StoreUnderTest]:
    """The store on PostgreSQL's default isolation, then at SERIALIZABLE.

    SERIALIZABLE is how CockroachDB runs every transaction (the Cockroach
    backend's compatibility mode): racing puts of one content then lose with
    serialization failures instead of waiting on the unique key.
    """
    isolation: str = request.param
    url = await postgres_server.acreate_database(f"blobs_{isolation}")
    admin = await asyncpg.connect(url)
    try:
        database = await admin.fetchval("SELECT current_database()")
        await admin.execute(
            f'ALTER DATABASE "{database}" SET default_transaction_isolation = '
            f"'{isolation.replace('_', ' ')}'"
        )
    finally:
        await admin.close()
    await PostgresBackend.migrate(
        ModelSettings(database_url=url, page_token_secret="-" * 16, schema=SCHEMA)
    )
    store = await DatabaseBlobStore.connect(
        DatabaseBlobSettings(database_url=url, schema=SCHEMA, chunk_bytes=CHUNK)
    )
    observer = await asyncpg.connect(url, server_settings={"search_path": SCHEMA})
    assert await observer.fetchval("SHOW transaction_isolation") == isolation.replace("_", " ")

    async def footprint() -> Footprint:
        row = await observer.fetchrow(FOOTPRINT)
        assert row is not None
        return Footprint(int(row["stored_bytes"]), row["blobs"], row["pending"])

    try:
        yield StoreUnderTest(store=store, footprint=footprint, piece_size=CHUNK)
    finally:
        await observer.close()
        await store.close()


class TestRoundTrip(RoundTripContract): ...


class TestDedup(DedupContract): ...


class TestRanges(RangeContract): ...


class TestMissing(MissingBlobContract): ...


class TestLimits(LimitContract): ...


class TestConcurrency(ConcurrencyContract): ...


class TestDelete(DeleteContract): ...
