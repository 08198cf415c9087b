"""``--statement-timeout-seconds`` bounds every statement the Model sends.

The setting is ``statement_timeout`` of each pool connection: a call whose
statement runs past it is cancelled by the server and answered UNAVAILABLE
("ran too long"), without waiting for whatever held it up, and the next call
on the same pool runs normally.
"""

from __future__ import annotations

import dataclasses
import time

import asyncpg
import pytest

from bugless_core.errors import Unavailable
from bugless_core.model.backend import ModelSettings
from bugless_core.sql_names import quote_schema
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres.blobs import DatabaseBlobStore
from bugless_proto import v1
from bugless_testing.model_backends import opened_model

ADMIN = v1.Caller(user_id="root", admin=True)


async def test_a_call_held_past_the_statement_timeout_is_unavailable_and_the_pool_recovers(
    model_settings: ModelSettings, bugless_model_backend: PostgresBackend
) -> None:
    """A read waiting on another session's table lock is cut at the setting, not left waiting.

    The lock is held for far longer than the bound (until the test lets it
    go), so the call can only end by the server cancelling it.
    """
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=0.3)
    async with opened_model(PostgresBackend, settings, DatabaseBlobStore) as backend:
        holder = await asyncpg.connect(model_settings.database_url)
        try:
            async with holder.transaction():
                await holder.execute(
                    f"LOCK TABLE {quote_schema(model_settings.schema)}.issues "
                    "IN ACCESS EXCLUSIVE MODE"
                )
                began = time.monotonic()
                with pytest.raises(Unavailable, match="ran too long"):
                    await backend.search_issues(v1.SearchIssuesRequest(caller=ADMIN))
                waited = time.monotonic() - began
            assert 0.3 <= waited < 5
        finally:
            await holder.close()
        found = await backend.search_issues(v1.SearchIssuesRequest(caller=ADMIN))
        assert found.total_count >= 0
        async with backend._pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "300ms"


async def test_the_default_bound_is_thirty_seconds(bugless_model_backend: PostgresBackend) -> None:
    async with bugless_model_backend._pool.acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "30s"
