"""Migrations under the lease: concurrent replicas apply each file once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import uuid

import asyncpg
import pytest
from prometheus_client import REGISTRY

from bugless_core.errors import FailedPrecondition
from bugless_core.model.backend import ModelSettings
from bugless_model_cockroach import CockroachBackend
from bugless_model_cockroach._regions import GLOBAL, IN_PRIMARY_REGION, REGIONAL_BY_ROW
from bugless_testing.cockroach_sql import StatementRecorder
from bugless_testing.schemas import SKEW_LOGGER, assert_said_ahead, drop_schema, migrate_ahead


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
        assert {"watch", "change_feed"} <= set(info.capabilities)  # the sequenced feed
    finally:
        await backend.close()
    # Migrating and opening send nothing CockroachDB lacks (no advisory lock,
    # no asyncpg pool reset calling pg_advisory_unlock_all()).
    assert any("bugless_leases" in s for s in recorder.statements)
    assert recorder.incompatibilities() == {}


async def test_every_table_the_migrations_make_has_a_home_region(
    model_settings: ModelSettings,
) -> None:
    """A multi-region deployment homes each table by the lists of ``_regions``.

    A table left out is placed by CockroachDB's default, not by a decision,
    and no test said so: 0033's ``issue_text_rebuilds`` queue was left out.
    """
    settings = dataclasses.replace(model_settings, schema=f"homes_{uuid.uuid4().hex[:8]}")
    await CockroachBackend.migrate(settings)
    conn = await asyncpg.connect(model_settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
            settings.schema,
        )
    finally:
        await conn.close()
        await drop_schema(model_settings.database_url, settings.schema)
    homed = [*REGIONAL_BY_ROW, *GLOBAL, *IN_PRIMARY_REGION]
    assert len(homed) == len(set(homed))
    assert {r["table_name"] for r in rows} == set(homed)


async def test_schema_messages_and_the_skew_gauge_name_the_cockroach_backend(
    model_settings: ModelSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator running CockroachDB is told to upgrade bugless-model-cockroach.

    The backend reuses the PostgreSQL backend's migrations, and its refusals,
    its skew log lines and ``bugless_schema_version_skew``'s ``component``
    label said ``bugless-model-postgres``, a package such a deployment may
    not even know it runs (docs/alerts.md lists the label's values).
    """
    schema = f"named_{uuid.uuid4().hex[:8]}"
    settings = dataclasses.replace(model_settings, schema=schema)
    with pytest.raises(FailedPrecondition, match="bugless model migrate") as unmigrated:
        await CockroachBackend.open(settings)
    assert f"the bugless-model-cockroach schema {schema!r}" in unmigrated.value.message
    await CockroachBackend.migrate(settings)
    running = await CockroachBackend.open(settings)
    try:
        await migrate_ahead(settings.database_url, schema, newest_version() + 1)
        with caplog.at_level(logging.INFO, logger=SKEW_LOGGER):
            assert await running.check_ready()
        assert_said_ahead(caplog.records, "bugless-model-cockroach", newest_version() + 1)
        labels = {"component": "bugless-model-cockroach", "schema": schema}
        assert REGISTRY.get_sample_value("bugless_schema_version_skew", labels) == 1
        postgres = {"component": "bugless-model-postgres", "schema": schema}
        assert REGISTRY.get_sample_value("bugless_schema_version_skew", postgres) is None
        with pytest.raises(FailedPrecondition) as restarted:
            await CockroachBackend.open(settings)
        assert "upgrade bugless-model-cockroach on this replica" in restarted.value.message
        with pytest.raises(FailedPrecondition, match="upgrade bugless-model-cockroach"):
            await CockroachBackend.migrate(settings)
    finally:
        await running.close()
        await drop_schema(settings.database_url, schema)


async def test_the_migrate_command_names_the_cockroach_package(
    model_settings: ModelSettings,
) -> None:
    """``bugless model migrate`` names the package as ``bugless auth migrate`` does.

    It printed the backend's name (``(cockroach)``, ``(postgres)``) where the
    Authenticator's prints its package (``(bugless-auth)``).
    """
    schema = f"cli_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "BUGLESS_DATABASE_URL": model_settings.database_url}
    command = [sys.executable, "-c", "from bugless_core.cli import main; main()"]
    process = await asyncio.create_subprocess_exec(
        *command,
        *("model", "migrate", "--model", "cockroach", "--schema", schema),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, err.decode()
        assert out.decode().strip() == (
            f"schema {schema!r} is at version {newest_version()} (bugless-model-cockroach)"
        )
    finally:
        await drop_schema(model_settings.database_url, schema)
