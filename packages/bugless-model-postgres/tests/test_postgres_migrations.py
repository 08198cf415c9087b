"""Migrations: idempotent, safe when replicas race, refuse newer schemas."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import asyncpg
import pytest
from prometheus_client import REGISTRY

from bugless_core.errors import FailedPrecondition
from bugless_core.migrations import Migration, migrate, quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _mention_scans
from bugless_proto import v1
from bugless_testing.model_contracts._custom_fields import create, custom_of, define, values
from bugless_testing.model_contracts._support import (
    eq,
    get_issue,
    make_component,
    make_issue,
    search_ids,
    unique,
    within,
)
from bugless_testing.schemas import (
    SKEW_LOGGER,
    assert_said_ahead,
    assert_said_behind_then_back,
    drop_schema,
    migrate_ahead,
    restore_older,
)


def shipped_migrations() -> list[Migration]:
    return PostgresBackend.migrations()


def newest_version() -> int:
    return shipped_migrations()[-1].version


def _in_schema(settings: ModelSettings, schema: str) -> ModelSettings:
    return dataclasses.replace(settings, schema=schema)


async def test_shipped_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in shipped_migrations()]
    assert versions == list(range(1, len(versions) + 1))


async def test_the_status_changes_index_built_beforehand_concurrently_is_kept(
    model_settings: ModelSettings,
) -> None:
    """0030's index may be built by an operator before the upgrade, without blocking writes.

    Built in the migration's transaction, the index makes writes of history
    wait for the build (docs/upgrades.md, "Whole-table work"); ``CREATE INDEX
    CONCURRENTLY`` cannot run there, but an operator can run it first, and
    the file (``IF NOT EXISTS``) then keeps that index, which the watch's
    statement reads as its own.
    """
    settings = _in_schema(model_settings, "mig_prebuilt")
    files = shipped_migrations()
    (index,) = [m for m in files if m.name == "history_status_changes"]
    pool = await asyncpg.create_pool(model_settings.database_url, min_size=1, max_size=2)
    try:
        await migrate(
            pool,
            settings.schema,
            files[: index.version - 1],
            component=PostgresBackend.component,
            lock=PostgresBackend.migration_lock,
        )
        async with pool.acquire() as conn:
            await conn.execute(f"SET search_path TO {quote_schema(settings.schema)}")
            build = index.sql[index.sql.index("\nCREATE INDEX") :]
            await conn.execute(build.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1))
            assert await PostgresBackend.migrate(settings) == newest_version()
            valid = await conn.fetchval(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = 'issue_history_status_changes'"
                " AND c.relnamespace = $1::regnamespace",
                settings.schema,
            )
        assert valid is True
    finally:
        await pool.close()


async def test_migrate_twice_is_idempotent(model_settings: ModelSettings) -> None:
    settings = _in_schema(model_settings, "mig_twice")
    assert await PostgresBackend.migrate(settings) == newest_version()
    assert await PostgresBackend.migrate(settings) == newest_version()
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch("SELECT version FROM mig_twice.schema_migrations ORDER BY 1")
    finally:
        await conn.close()
    assert [r["version"] for r in rows] == list(range(1, newest_version() + 1))


async def test_concurrent_migrations_apply_each_file_once(model_settings: ModelSettings) -> None:
    settings = _in_schema(model_settings, "mig_race")
    results = await asyncio.gather(*(PostgresBackend.migrate(settings) for _ in range(4)))
    assert results == [newest_version()] * 4
    backend = await PostgresBackend.open(settings)
    try:
        info = await backend.get_server_info()
    finally:
        await backend.close()
    assert info.schema_version == newest_version()
    assert info.backend == "postgres"
    assert "watch" in info.capabilities


async def test_open_refuses_a_schema_newer_than_the_code(model_settings: ModelSettings) -> None:
    settings = _in_schema(model_settings, "mig_future")
    await PostgresBackend.migrate(settings)
    future = newest_version() + 41
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO mig_future.schema_migrations (version, name) VALUES ($1, 'future')",
            future,
        )
    finally:
        await conn.close()
    with pytest.raises(FailedPrecondition) as info:
        await PostgresBackend.open(settings)
    assert str(future) in info.value.message
    assert str(newest_version()) in info.value.message
    assert "upgrade bugless" in info.value.message
    with pytest.raises(FailedPrecondition, match="upgrade bugless"):
        await PostgresBackend.migrate(settings)


def _skew(schema: str) -> float | None:
    """``bugless_schema_version_skew`` of the Model on ``schema``, as ``/metrics`` would say.

    One series per schema: the session's own Model (another schema, probed
    by its tests) does not overwrite what this test's replica read.
    """
    return REGISTRY.get_sample_value(
        "bugless_schema_version_skew", {"component": "bugless-model-postgres", "schema": schema}
    )


async def test_a_replica_serving_when_a_newer_release_migrates_serves_on_until_restarted(
    model_settings: ModelSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """A schema a newer release migrated is seen by readiness, said once, and served on.

    What docs/upgrades.md says of a rolling upgrade: the chart's migration
    hook runs while the old replicas serve, and they go on serving (reads,
    writes, readiness) until they are replaced; each says once that it runs
    behind the schema (a WARNING, the skew gauge); an old replica that
    restarts in that window refuses to start.
    """
    settings = _in_schema(model_settings, "mig_rolling")
    await PostgresBackend.migrate(settings)
    running = await PostgresBackend.open(settings)
    try:
        admin = v1.Caller(user_id="root", admin=True)
        component = await running.create_component(
            v1.CreateComponentRequest(caller=admin, name=unique("rolling"))
        )
        await migrate_ahead(settings.database_url, "mig_rolling", newest_version() + 1)
        issue = await running.create_issue(
            v1.CreateIssueRequest(
                caller=admin, fields=v1.IssueFields(title="after", component_id=component.id)
            )
        )
        read = await running.get_issue(v1.GetIssueRequest(caller=admin, issue_id=issue.id))
        assert (read.title, read.version) == ("after", 1)
        with caplog.at_level(logging.INFO, logger=SKEW_LOGGER):
            assert await running.check_ready()
            assert await running.check_ready()
        assert _skew("mig_rolling") == 1
        assert_said_ahead(caplog.records, "bugless-model-postgres", newest_version() + 1)
        with pytest.raises(FailedPrecondition, match="upgrade bugless"):
            await PostgresBackend.open(settings)
    finally:
        await running.close()


async def test_a_replica_whose_schema_falls_behind_its_code_is_not_ready_until_migrated(
    model_settings: ModelSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """A schema older than the code under a running replica (a restore) makes it unready.

    The schema is swapped under the open replica for one migrated to the
    version before, as restoring a backup taken before the upgrade does; the
    replica's readiness fails (an ERROR once, the gauge below 0) and comes
    back once ``migrate`` has brought the schema to its version again.
    """
    settings = _in_schema(model_settings, "mig_restored")
    await PostgresBackend.migrate(settings)
    running = await PostgresBackend.open(settings)
    aside: str | None = None
    try:
        assert await running.check_ready()
        assert _skew("mig_restored") == 0
        aside = await restore_older(
            settings.database_url,
            "mig_restored",
            shipped_migrations(),
            component="bugless-model-postgres",
            lock=PostgresBackend.migration_lock,
        )
        with caplog.at_level(logging.INFO, logger=SKEW_LOGGER):
            assert not await running.check_ready()
            assert not await running.check_ready()
            assert _skew("mig_restored") == -1
            await PostgresBackend.migrate(settings)
            assert await running.check_ready()
        assert _skew("mig_restored") == 0
        assert_said_behind_then_back(caplog.records, "bugless-model-postgres", newest_version())
    finally:
        await running.close()
        if aside is not None:
            await drop_schema(settings.database_url, aside)


async def test_open_refuses_an_unmigrated_database(model_settings: ModelSettings) -> None:
    with pytest.raises(FailedPrecondition, match="bugless model migrate"):
        await PostgresBackend.open(_in_schema(model_settings, "mig_never"))


async def test_mentions_written_before_0011_are_backfilled_after_migrating(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    """An upgrade from before 0011 queues issues with "@" in their texts; ``migrate`` fills them.

    The rows of one issue are removed and the scan 0028 records for such an
    upgrade (0025's rule, which covers 0011's) recorded again, as on a
    database written before 0011; the next ``migrate`` (with nothing left
    to apply) queues and drains with the Python rule.
    """
    root = await make_component(model)
    name = unique("backfilled")
    issue = await make_issue(model, root.id, description=f"ping @{name}, not me@{name}.x")
    mentioning = within(root.id, eq(v1.SearchField.MENTION, name))
    assert await search_ids(model, mentioning) == [issue.id]
    conn = await asyncpg.connect(model_settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(model_settings.schema)}")
        await conn.execute("DELETE FROM issue_mentions WHERE issue_id = $1", issue.id)
        await conn.execute(_mention_scans.RESCAN, 25)
        assert await search_ids(model, mentioning) == []
        assert await PostgresBackend.migrate(model_settings) == newest_version()
        assert await conn.fetchval("SELECT count(*) FROM issue_mentions_pending") == 0
        assert await conn.fetchval("SELECT count(*) FROM issue_mention_scans") == 0
    finally:
        await conn.close()
    assert await search_ids(model, mentioning) == [issue.id]


async def test_values_in_a_former_spelling_are_respelled_after_migrating(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    """0018 queues fields holding a value that is no option exactly; ``migrate`` respells them.

    The options are renamed behind the Model's back (their case only; one
    option dropped while held), as UpdateCustomField left values before
    0018. The next ``migrate`` respells the values by case folding: "Bug"
    to "bug" in a single value and in a list, "Äpfel" to "äpfel" (which
    ``lower()`` under the C locale would not pair); the stranded one stays.
    """
    root = await make_component(model)
    kind = await define(model, root.id, v1.CustomFieldType.ENUM, options=("Bug", "Äpfel", "gone"))
    tags = await define(model, root.id, v1.CustomFieldType.ENUM_MULTI, options=("Bug", "ui"))
    bug = await create(model, root.id, values(kind.id, "Bug"), values(tags.id, "ui", "Bug"))
    apple = await create(model, root.id, values(kind.id, "Äpfel"))
    stranded = await create(model, root.id, values(kind.id, "gone"))

    def term(field: v1.CustomField, raw: str) -> v1.SearchNode:
        return within(
            root.id,
            v1.SearchNode(
                term=v1.SearchTerm(
                    field=v1.SearchField.CUSTOM,
                    op=v1.SearchOperator.EQ,
                    values=[v1.SearchValue(text=raw)],
                    custom_field_id=field.id,
                )
            ),
        )

    (sql,) = [m.sql for m in shipped_migrations() if m.name == "custom_value_spellings"]
    queue = sql[sql.index("INSERT INTO custom_value_spellings_pending") :]
    rename = "UPDATE custom_fields SET options = $2, version = version + 1 WHERE id = $1"
    conn = await asyncpg.connect(model_settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(model_settings.schema)}")
        await conn.execute(rename, kind.id, ["bug", "äpfel"])
        await conn.execute(rename, tags.id, ["bug", "ui"])
        await conn.execute(queue)
        pending = {
            r["field_id"] for r in await conn.fetch("SELECT * FROM custom_value_spellings_pending")
        }
        assert {kind.id, tags.id} <= pending
        assert await search_ids(model, term(kind, "bug")) == []
        assert await PostgresBackend.migrate(model_settings) == newest_version()
        assert await conn.fetchval("SELECT count(*) FROM custom_value_spellings_pending") == 0
    finally:
        await conn.close()
    assert custom_of(await get_issue(model, bug.id)) == {kind.id: ["bug"], tags.id: ["bug", "ui"]}
    assert custom_of(await get_issue(model, apple.id)) == {kind.id: ["äpfel"]}
    assert custom_of(await get_issue(model, stranded.id)) == {kind.id: ["gone"]}
    assert await search_ids(model, term(kind, "BUG")) == [bug.id]
    assert await search_ids(model, term(tags, "bug")) == [bug.id]
    assert await search_ids(model, term(kind, "ÄPFEL")) == [apple.id]


async def test_fields_defined_before_0019_are_keyed_by_their_folded_name_after_migrating(
    model_settings: ModelSettings, model: v1.ModelStub
) -> None:
    """``migrate`` folds the names 0019 left unkeyed; terms then find the fields by name."""
    root = await make_component(model)
    name = unique("Äpfel")
    field = await define(model, root.id, v1.CustomFieldType.ENUM, name=name, options=("a",))
    issue = await create(model, root.id, values(field.id, "a"))
    by_name = within(
        root.id,
        v1.SearchNode(
            term=v1.SearchTerm(
                field=v1.SearchField.CUSTOM,
                op=v1.SearchOperator.EQ,
                values=[v1.SearchValue(text="a")],
                custom_field_name=name.upper(),
            )
        ),
    )
    assert await search_ids(model, by_name) == [issue.id]
    conn = await asyncpg.connect(model_settings.database_url)
    try:
        await conn.execute(f"SET search_path TO {quote_schema(model_settings.schema)}")
        unkey = "UPDATE custom_fields SET name_key = NULL, version = version + 1 WHERE id = $1"
        await conn.execute(unkey, field.id)
        assert await PostgresBackend.migrate(model_settings) == newest_version()
        key = await conn.fetchval("SELECT name_key FROM custom_fields WHERE id = $1", field.id)
        assert key == name.casefold()
        assert await conn.fetchval("SELECT count(*) FROM custom_fields WHERE name_key IS NULL") == 0
    finally:
        await conn.close()
    assert await search_ids(model, by_name) == [issue.id]


async def test_settings_saved_before_0024_are_version_1_and_webhook_became_email(
    model_settings: ModelSettings,
) -> None:
    """0024 versions the settings saved before it (1) and rewrites a personal "webhook".

    The notifier mailed a person whose channel was "webhook" (it has no
    personal webhook); the Model now refuses that channel, so the stored
    ones say "email", what the notifier did, and a client writing back what
    it read is not refused for a value it never chose.
    """
    settings = _in_schema(model_settings, "mig_settings_version")
    (added,) = [
        m.version for m in shipped_migrations() if m.name == "notification_settings_version"
    ]
    save = (
        "INSERT INTO mig_settings_version.notification_settings (user_id, settings, modified_at) "
        "VALUES ($1, $2::jsonb, now())"
    )
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    conn = await asyncpg.connect(settings.database_url)
    try:
        before = [m for m in shipped_migrations() if m.version < added]
        await migrate(
            pool,
            settings.schema,
            before,
            component="bugless-model-postgres",
            lock=PostgresBackend.migration_lock,
        )
        await conn.execute(save, "hooked", '{"channel": "webhook", "digest": 2}')
        await conn.execute(save, "silent", '{"channel": "none"}')
        assert await PostgresBackend.migrate(settings) == newest_version()
        backend = await PostgresBackend.open(settings)
        try:
            got = await backend.get_notification_settings(
                v1.GetNotificationSettingsRequest(
                    caller=v1.Caller(user_id="root", admin=True),
                    user_ids=["hooked", "silent", "never-saved"],
                )
            )
        finally:
            await backend.close()
    finally:
        await pool.close()
        await conn.execute("DROP SCHEMA IF EXISTS mig_settings_version CASCADE")
        await conn.close()
    assert [(s.user_id, s.channel, s.digest, s.version) for s in got.settings] == [
        ("hooked", "email", v1.DigestMode.DAILY, 1),
        ("silent", "none", v1.DigestMode.IMMEDIATE, 1),
        ("never-saved", "email", v1.DigestMode.IMMEDIATE, 1),
    ]
