"""Versioned, forward-only SQL migrations for any bugless service that owns a schema.

A package ships ``migrations/NNNN_description.sql`` next to its code; each file
is applied once, in order, and recorded in a ``schema_migrations`` ledger inside
the service's own schema. :func:`apply_migrations` runs every pending file in
one transaction under a transaction-scoped advisory lock, so several replicas
starting at once apply each file exactly once and a failed file leaves the
database as it was. The Model backends and the Authenticator use the same
rules, so an operator learns them once; only the package (where the files
are) and the component name (in messages) differ.

The functions take an asyncpg connection but import nothing from asyncpg, so
bugless-core does not depend on a database driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bugless_core.errors import FailedPrecondition, InvalidArgument

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('bugless-migrate:' || $1, 0))"
_APPLIED = "SELECT coalesce(max(version), 0) FROM {schema}.schema_migrations"
_RECORD = "INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"
_LEDGER_EXISTS = "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL"


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
        msg = f"schema: {schema!r} is not a plain lower-case identifier (letters, digits, '_')"
        raise InvalidArgument(msg)
    return f'"{schema}"'


def load_migrations(package: str, directory: str = "migrations") -> list[Migration]:
    """Every migration file shipped in ``package``'s ``directory``, in version order.

    Raises:
        RuntimeError: the files are not numbered 1..n without gaps (a packaging
            mistake, caught before anything touches a database).
    """
    found: list[Migration] = []
    for entry in resources.files(package).joinpath(directory).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if not versions or versions != list(range(1, len(versions) + 1)):
        msg = f"{package}: migration files must be numbered 1..n without gaps, found {versions}"
        raise RuntimeError(msg)
    return found


def schema_too_new(found: int, known: int, component: str) -> FailedPrecondition:
    """The error for a database migrated by a newer release of ``component``."""
    return FailedPrecondition(
        f"the database schema is at version {found}, but this {component} only knows "
        f"versions up to {known}; upgrade {component} on this replica "
        "(a newer release has migrated the database)",
        metadata={"schema_version": str(found), "known_version": str(known)},
    )


async def applied_version(conn: Any, schema: str) -> int:
    """The highest migration recorded in ``schema`` (0 for a database never migrated)."""
    if not await conn.fetchval(_LEDGER_EXISTS, schema):
        return 0
    version: int = await conn.fetchval(_APPLIED.format(schema=quote_schema(schema)))
    return version


async def apply_migrations(
    conn: Any, schema: str, migrations: list[Migration], *, component: str
) -> int:
    """Apply every pending migration to ``schema``; return the version now applied.

    The SQL files use unqualified names: the transaction's ``search_path`` is
    set to ``schema`` while they run. ``conn`` must not be in a transaction.

    Raises:
        FailedPrecondition: the database was migrated by a newer release.
    """
    quoted = quote_schema(schema)
    async with conn.transaction():
        await conn.execute(_LOCK, schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(f"SET LOCAL search_path TO {quoted}")
        await conn.execute(_CREATE_LEDGER.format(schema=quoted))
        current: int = await conn.fetchval(_APPLIED.format(schema=quoted))
        newest = migrations[-1].version
        if current > newest:
            raise schema_too_new(current, newest, component)
        for migration in migrations:
            if migration.version > current:
                await conn.execute(migration.sql)
                await conn.execute(_RECORD.format(schema=quoted), migration.version, migration.name)
                current = migration.version
    return current
