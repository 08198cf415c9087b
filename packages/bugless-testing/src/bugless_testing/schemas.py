"""A service's schema moved under a running replica, as upgrades and restores move it.

docs/upgrades.md ("A schema that moves under a running replica"): the Model,
the Authenticator and the notifier read their schema's version on every
readiness check. Their tests move it the two ways it moves in production:
:func:`migrate_ahead` records a migration this code does not ship (a newer
release's ``migrate`` ran), :func:`restore_older` puts a schema one
migration older in its place (a backup taken before the upgrade restored).
What the replica then says is checked by :func:`assert_said_ahead` and
:func:`assert_said_behind_then_back` (records captured at INFO from
:data:`SKEW_LOGGER`).
"""

from __future__ import annotations

import logging

import asyncpg

from bugless_core.migrations import AdvisoryLock, Migration, MigrationLock, migrate, quote_schema

#: The logger :mod:`bugless_core.schema_skew` speaks through.
SKEW_LOGGER = "bugless_core.schema_skew"


async def migrate_ahead(database_url: str, schema: str, version: int) -> None:
    """Record ``version`` in ``schema``'s ledger, as a newer release's ``migrate`` would."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            f"INSERT INTO {quote_schema(schema)}.schema_migrations (version, name) "
            "VALUES ($1, 'next')",
            version,
        )
    finally:
        await conn.close()


async def restore_older(
    database_url: str,
    schema: str,
    migrations: list[Migration],
    *,
    component: str,
    lock: MigrationLock | None = None,
) -> str:
    """Put ``schema`` one migration behind ``migrations`` under whatever uses it.

    The schema is renamed aside, and one migrated with all but the last of
    ``migrations`` takes its name, as restoring a backup taken before the
    newest migration does. Returns the name it was renamed to
    (``<schema>_upgraded``), which the caller drops when done.
    """
    aside = f"{schema}_upgraded"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"ALTER SCHEMA {quote_schema(schema)} RENAME TO {quote_schema(aside)}")
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await migrate(
            pool, schema, migrations[:-1], component=component, lock=lock or AdvisoryLock()
        )
    finally:
        await pool.close()
    return aside


async def drop_schema(database_url: str, schema: str) -> None:
    """``DROP SCHEMA … CASCADE`` if it exists (what :func:`restore_older` set aside)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_schema(schema)} CASCADE")
    finally:
        await conn.close()


def _said(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.name == SKEW_LOGGER]


def assert_said_ahead(records: list[logging.LogRecord], component: str, version: int) -> None:
    """``component`` said once, as a WARNING, that it serves on a schema at ``version``."""
    (said,) = _said(records)
    assert said.levelno == logging.WARNING
    message = said.getMessage()
    assert f"now at version {version}, newer than the" in message, message
    assert f"this {component} knows" in message, message
    assert "serving on" in message, message


def assert_said_behind_then_back(
    records: list[logging.LogRecord], component: str, newest: int
) -> None:
    """``component`` said once (ERROR) it is not ready one version behind, then (INFO) ready."""
    behind, back = _said(records)
    assert behind.levelno == logging.ERROR
    message = behind.getMessage()
    assert f"now at version {newest - 1}, older than the {newest} this {component}" in message
    assert "not ready" in message, message
    assert back.levelno == logging.INFO
    assert f"at version {newest} again, the one this {component} knows" in back.getMessage()
