"""Migrations under the lease: concurrent replicas apply each file once."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from bugless_core.model.backend import ModelSettings
from bugless_model_cockroach import CockroachBackend
from bugless_testing.cockroach_sql import StatementRecorder


def newest_version() -> int:
    return CockroachBackend.migrations()[-1].version


async def test_concurrent_migrations_apply_each_file_once(model_settings: ModelSettings) -> None:
    schema = f"migrate_{uuid.uuid4().hex[:8]}"
    settings = ModelSettings(
        database_url=model_settings.database_url,
        page_token_secret=model_settings.page_token_secret,
        schema=schema,
    )
    with StatementRecorder() as recorder:
        versions = await asyncio.gather(*(CockroachBackend.migrate(settings) for _ in range(4)))
    assert versions == [newest_version()] * 4
    conn = await asyncpg.connect(model_settings.database_url)
    try:
        applied = await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations')
        held = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".bugless_leases '
            "WHERE name = 'migrate' AND expires_at > now()"
        )
    finally:
        await conn.close()
    assert sorted(r["version"] for r in applied) == list(range(1, newest_version() + 1))
    assert held == 0  # released, not left to expire
    with recorder:
        backend = await CockroachBackend.open(settings)
    try:
        info = await backend.get_server_info()
        assert info.backend == "cockroach"
        assert info.schema_version == newest_version()
        assert "snowflake_ids" in info.capabilities
        assert not {"watch", "change_feed"} & set(info.capabilities)
    finally:
        await backend.close()
    # Migrating and opening send nothing CockroachDB lacks (no advisory lock,
    # no asyncpg pool reset calling pg_advisory_unlock_all()).
    assert any("bugless_leases" in s for s in recorder.statements)
    assert recorder.incompatibilities() == {}
