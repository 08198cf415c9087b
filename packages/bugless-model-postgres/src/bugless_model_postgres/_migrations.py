"""Versioned, forward-only schema migrations shipped inside the package.

Files are ``migrations/NNNN_description.sql``; each is applied once, in
order, and recorded in ``schema_migrations``. :func:`migrate` runs every
pending file in one transaction under a transaction-scoped advisory lock, so
several replicas starting at once apply each file exactly once and a failed
file leaves the database as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from bugless_core.errors import FailedPrecondition, InvalidArgument

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('bugless-migrate:' || $1, 0))"
APPLIED = "SELECT coalesce(max(version), 0) FROM schema_migrations"
RECORD = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
LEDGER_EXISTS = "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL"


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version number, name and statements."""

    version: int
    name: str
    sql: str


def quote_schema(schema: str) -> str:
    """The schema as a quoted identifier, after checking it is a plain name.

    Raises:
        InvalidArgument: the name is not lower-case letters, digits and ``_``.
    """
    if not _SCHEMA_NAME.match(schema):
        msg = f"schema: {schema!r} is not a plain lower-case identifier"
        raise InvalidArgument(msg)
    return f'"{schema}"'


def shipped_migrations() -> list[Migration]:
    """Every migration file in the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(versions) + 1)):
        msg = f"migration files must be numbered 1..n without gaps, found {versions}"
        raise RuntimeError(msg)
    return found


def newest_version() -> int:
    """The schema version this code was written for."""
    return shipped_migrations()[-1].version


def too_new(found: int, known: int) -> FailedPrecondition:
    """The error for a database migrated by a newer bugless."""
    return FailedPrecondition(
        f"the database schema is at version {found}, but this bugless-model-postgres "
        f"only knows versions up to {known}; upgrade bugless on this replica "
        "(a newer release has migrated the database)",
        metadata={"schema_version": str(found), "known_version": str(known)},
    )


async def applied_version(conn: asyncpg.Connection, schema: str) -> int:
    """The highest migration recorded in ``schema`` (0 for an empty database)."""
    if not await conn.fetchval(LEDGER_EXISTS, schema):
        return 0
    version: int = await conn.fetchval(APPLIED)
    return version


async def apply_pending(conn: asyncpg.Connection, schema: str, lock: str | None = LOCK) -> int:
    """Apply every pending migration on ``conn``; return the version now applied.

    ``conn`` must not be in a transaction; its search_path must be ``schema``.
    ``lock`` (given the schema as ``$1``) runs first in the transaction; pass
    ``None`` only when the caller already excludes concurrent migrations.

    Raises:
        FailedPrecondition: the database is newer than this code.
    """
    migrations = shipped_migrations()
    async with conn.transaction():
        if lock is not None:
            await conn.execute(lock, schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_schema(schema)}")
        await conn.execute(CREATE_LEDGER)
        current: int = await conn.fetchval(APPLIED)
        if current > migrations[-1].version:
            raise too_new(current, migrations[-1].version)
        for migration in migrations:
            if migration.version > current:
                await conn.execute(migration.sql)
                await conn.execute(RECORD, migration.version, migration.name)
                current = migration.version
    return current
