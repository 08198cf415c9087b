"""The one migration engine: versioned, forward-only SQL for every service that owns a schema.

A package ships ``migrations/NNNN_description.sql`` next to its code; each file
is applied once, in order, and recorded in a ``schema_migrations`` ledger inside
the service's own schema. :func:`migrate` runs every pending file in one
transaction while holding a :class:`MigrationLock`, so several replicas
starting at once apply each file exactly once and a failed file leaves the
database as it was. The Model backends and the Authenticator use the same
engine, so an operator learns its rules once; what differs is the package
(where the files are), the component name (in messages) and the lock:

* :class:`AdvisoryLock` on PostgreSQL: a session-level advisory lock;
* :class:`LeaseLock` on CockroachDB, which has no advisory locks: a row of
  ``bugless_leases`` held and renewed (:mod:`bugless_core.leases`).

The functions take an asyncpg pool or connection but import nothing from
asyncpg, so bugless-core does not depend on a database driver.
"""

from __future__ import annotations

import contextlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bugless_core import leases
from bugless_core.database_errors import is_database_error, is_statement_given_up
from bugless_core.errors import FailedPrecondition, Unavailable
from bugless_core.sql_names import quote_schema

# quote_schema is re-exported: the engine's callers import it from here; its home
# is sql_names, which settings import without the lease machinery.
__all__ = [
    "AdvisoryLock",
    "LeaseLock",
    "Migration",
    "MigrationLock",
    "applied_version",
    "check_schema_version",
    "load_migrations",
    "migrate",
    "quote_schema",
    "schema_too_new",
]

_log = logging.getLogger("bugless.migrations")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_ADVISORY_LOCK = "SELECT pg_advisory_lock(hashtextextended('bugless-migrate:' || $1, 0))"
_ADVISORY_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('bugless-migrate:' || $1, 0))"
_APPLIED = "SELECT coalesce(max(version), 0) FROM {schema}.schema_migrations"
_RECORD = "INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"
_LEDGER_EXISTS = "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL"


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version number, name and statements."""

    version: int
    name: str
    sql: str


def load_migrations(
    package: str, directory: str = "migrations", *, numbered_from_one: bool = True
) -> list[Migration]:
    """Every migration file shipped in ``package``'s ``directory``, in version order.

    Two files with one number are refused by name, not sorted in some order:
    the ledger records a version once, so a replica would apply one of them
    and count the other as applied (two branches each adding the next number
    meet this way in a rebase). A ``.sql`` file whose name does not read
    ``NNNN_description.sql`` is refused too, not left out unapplied.

    Args:
        package: the package shipping the files.
        directory: the folder in it that holds them.
        numbered_from_one: the files are a component's whole ledger, 1..n.
            False for files that replace some versions of another package's
            ledger (bugless-model-cockroach's own), which may have gaps and
            may be none.

    Raises:
        RuntimeError: two files share a number, a ``.sql`` file is misnamed,
            or (``numbered_from_one``) the files are not numbered 1..n without
            gaps (a packaging mistake, caught before anything touches a
            database).
    """
    found: list[Migration] = []
    named: dict[int, str] = {}
    for entry in sorted(
        resources.files(package).joinpath(directory).iterdir(), key=lambda e: e.name
    ):
        match = _FILE_NAME.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                msg = (
                    f"{package}: migration file {entry.name!r} is not named "
                    "NNNN_description.sql (four digits, then lower-case letters, digits, _)"
                )
                raise RuntimeError(msg)
            continue
        version = int(match[1])
        if version in named:
            msg = (
                f"{package}: migration files {named[version]} and {entry.name} share the "
                f"number {match[1]}: give the later one the next free number"
            )
            raise RuntimeError(msg)
        named[version] = entry.name
        found.append(Migration(version, match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if numbered_from_one and (not versions or versions != list(range(1, len(versions) + 1))):
        msg = f"{package}: migration files must be numbered 1..n without gaps, found {versions}"
        raise RuntimeError(msg)
    return found


def schema_too_new(found: int, known: int, component: str, *, schema: str) -> FailedPrecondition:
    """The error for ``schema`` migrated by a newer release of ``component``."""
    return FailedPrecondition(
        f"the {component} schema {schema!r} is at version {found}, but this {component} only "
        f"knows versions up to {known}: upgrade {component} on this replica "
        "(a newer release has migrated the database)",
        metadata={"schema": schema, "schema_version": str(found), "known_version": str(known)},
    )


def check_schema_version(
    found: int, known: int, *, schema: str, component: str, migrate_command: str
) -> None:
    """Refuse to start ``component`` on ``schema`` at ``found`` unless it is ``known``.

    The start-time rule of every service that owns a schema (the Model
    backends, the Authenticator): a replica starts only on the schema its
    code ships. One message shape names the schema, both versions and what
    to do: ``migrate_command`` for a schema behind the code, an upgrade for
    one a newer release migrated. (Once running, a replica tolerates a newer
    schema: :mod:`bugless_core.schema_skew`.)

    Raises:
        FailedPrecondition: ``found`` is not ``known``.
    """
    if found > known:
        raise schema_too_new(found, known, component, schema=schema)
    if found < known:
        raise FailedPrecondition(
            f"the {component} schema {schema!r} is at version {found}, but this {component} "
            f"needs version {known}: run `{migrate_command}` first",
            metadata={"schema": schema, "schema_version": str(found), "known_version": str(known)},
        )


async def applied_version(conn: Any, schema: str) -> int:
    """The highest migration recorded in ``schema`` (0 for a database never migrated)."""
    if not await conn.fetchval(_LEDGER_EXISTS, schema):
        return 0
    version: int = await conn.fetchval(_APPLIED.format(schema=quote_schema(schema)))
    return version


class MigrationLock(ABC):
    """How concurrent migrations of one schema are kept apart (a strategy of :func:`migrate`)."""

    #: For messages and tests.
    name: str

    @abstractmethod
    def held(self, pool: Any, conn: Any, schema: str) -> AbstractAsyncContextManager[None]:
        """Hold the lock of ``schema`` around the migration transaction run on ``conn``.

        ``pool`` is where ``conn`` came from, for a strategy that needs a second
        connection (renewing a lease while ``conn`` is busy).
        """


class AdvisoryLock(MigrationLock):
    """PostgreSQL: a session-level advisory lock on the migrating connection.

    Released when the transaction is over, or by the server if the connection
    dies, so a crashed migration never leaves the schema locked.
    """

    name = "advisory"

    @contextlib.asynccontextmanager
    async def held(self, pool: Any, conn: Any, schema: str) -> AsyncIterator[None]:
        """Wait for the lock, run the body, release it."""
        del pool
        await conn.execute(_ADVISORY_LOCK, schema)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a dead connection released it already
                await conn.execute(_ADVISORY_UNLOCK, schema)


class LeaseLock(MigrationLock):
    """CockroachDB (no advisory locks): the ``migrate`` row of ``bugless_leases``.

    The lease is renewed in the background (on another connection of the
    pool) while the files are applied, and expires by itself if the migrating
    replica dies. If a renewal finds it taken by another replica (it expired
    before a renewal got through), the migration is cancelled: its one
    transaction rolls back and :func:`migrate` raises ``Unavailable`` (reason
    :data:`~bugless_core.leases.LEASE_LOST`) naming the new holder; noticed
    while the transaction's COMMIT is in flight, the migration may have been
    applied all the same, and the message says so (running ``migrate`` again
    is safe: it applies nothing recorded in the ledger). The loser
    stops at its next renewal (a third of ``ttl_ms`` at most) rather than
    migrating alongside the new holder; until then the transaction and the
    ledger's primary key keep a file from being recorded twice.
    """

    name = "lease"

    def __init__(
        self,
        *,
        ttl_ms: int = leases.MIGRATION_LEASE_MS,
        wait_seconds: float = leases.MIGRATION_WAIT_SECONDS,
        expected: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Lease for ``ttl_ms`` at a time; give up after ``wait_seconds`` of waiting.

        Args:
            ttl_ms: How long the lease lasts without renewal.
            wait_seconds: How long to wait for another replica's migration.
            expected: Another driver's client-side errors that a failed
                renewal logs as an outage, not a bug
                (:func:`bugless_core.leases.renew_every`); asyncpg's are
                known already (:mod:`bugless_core.database_errors`).
        """
        self.ttl_ms = ttl_ms
        self.wait_seconds = wait_seconds
        self.expected = expected

    @contextlib.asynccontextmanager
    async def held(self, pool: Any, conn: Any, schema: str) -> AsyncIterator[None]:
        """Create the lease table if needed, take the lease, run the body, give it back."""
        quoted = quote_schema(schema)
        await _create_if_missing(conn, f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        table = leases.CREATE_LEASES.replace("bugless_leases", f"{quoted}.bugless_leases")
        await _create_if_missing(conn, table)
        async with leases.held_lease(
            _InSchema(pool, quoted),
            leases.MIGRATION_LEASE,
            ttl_ms=self.ttl_ms,
            wait=self.wait_seconds,
            expected=self.expected,
        ):
            yield


class _InSchema:
    """A pool whose lease statements name ``schema.bugless_leases`` (any search_path)."""

    def __init__(self, pool: Any, quoted_schema: str) -> None:
        self._pool = pool
        self._table = f"{quoted_schema}.bugless_leases"

    def _sql(self, statement: str) -> str:
        return statement.replace("bugless_leases", self._table)

    async def fetchrow(self, statement: str, *args: Any) -> Any:
        return await self._pool.fetchrow(self._sql(statement), *args)

    async def fetchval(self, statement: str, *args: Any) -> Any:
        return await self._pool.fetchval(self._sql(statement), *args)

    async def execute(self, statement: str, *args: Any) -> Any:
        return await self._pool.execute(self._sql(statement), *args)


async def _create_if_missing(conn: Any, statement: str) -> None:
    """Run a ``CREATE ... IF NOT EXISTS`` that concurrent replicas may race on.

    PostgreSQL can fail the loser of two simultaneous ``IF NOT EXISTS``
    creations with a unique violation on its catalog (SQLSTATE 23505 or
    42710); the object exists then, which is all the caller wanted.
    """
    try:
        await conn.execute(statement)
    except Exception as exc:
        if getattr(exc, "sqlstate", "") not in {"23505", "42710", "42P06", "42P07"}:
            raise


async def migrate(
    pool: Any,
    schema: str,
    migrations: list[Migration],
    *,
    component: str,
    lock: MigrationLock,
) -> int:
    """Apply every pending migration to ``schema`` under ``lock``; the version now applied.

    The SQL files use unqualified names: the transaction's ``search_path`` is
    ``schema`` while they run. They run without a statement timeout, whatever
    the pool's (an index build or a table's copy over a large deployment
    outlasts any request's bound).

    Raises:
        FailedPrecondition: the database was migrated by a newer release, or
            a file failed on what the database holds (:func:`_apply`).
        Unavailable: the lock could not be had in time (another replica's
            migration runs too long), or a :class:`LeaseLock` was lost
            mid-way (reason :data:`~bugless_core.leases.LEASE_LOST`: the
            migration was rolled back, or, lost while its COMMIT was in
            flight, may have been applied; the message says which).
    """
    quoted = quote_schema(schema)
    committing = False
    applied: list[Migration] = []
    try:
        async with (
            pool.acquire() as conn,
            lock.held(pool, conn, schema),
            conn.transaction(),
        ):
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
            await conn.execute(f"SET LOCAL search_path TO {quoted}")
            # The files run to the end, however long their whole-table work
            # takes: the pool's statement_timeout is a request's bound (30 s
            # for the Model), and a file cut at it rolls the upgrade back,
            # every time (docs/upgrades.md, "Whole-table work").
            await conn.execute("SET LOCAL statement_timeout = 0")
            await conn.execute(_CREATE_LEDGER.format(schema=quoted))
            current: int = await conn.fetchval(_APPLIED.format(schema=quoted))
            newest = migrations[-1].version
            if current > newest:
                raise schema_too_new(current, newest, component, schema=schema)
            for migration in migrations:
                if migration.version > current:
                    await _apply(conn, migration, component=component, schema=schema)
                    await conn.execute(
                        _RECORD.format(schema=quoted), migration.version, migration.name
                    )
                    current = migration.version
                    applied.append(migration)
            committing = True  # the next await is the COMMIT
    except Unavailable as exc:
        if exc.reason != leases.LEASE_LOST or not committing:
            raise
        raise _lost_while_committing(exc) from exc
    _log_applied(component, schema, applied, current)
    return current


async def _apply(conn: Any, migration: Migration, *, component: str, schema: str) -> None:
    """Run one file's SQL; a failure that is the file's own is said as that file failing.

    A statement of the file the database refused for itself (a value it
    cannot cast, a constraint the rows break, a name it does not know:
    SQLSTATE classes 22, 23, 42 and the like) is no setting of the
    operator's and no outage: the file meets data or a schema it was not
    written for. It is raised as :class:`FailedPrecondition` naming the file
    and the database's words, so ``migrate`` exits 1 with one line (not a
    traceback, and not 2, which is for the operator's settings), and the
    transaction rolls every file of this run back. The database away, a
    statement it gave up on (a timeout) or a lost lease are raised as they
    are, for the caller to translate.
    """
    try:
        await conn.execute(migration.sql)
    except Exception as exc:
        sqlstate = getattr(exc, "sqlstate", None)
        if not isinstance(sqlstate, str) or is_database_error(exc) or is_statement_given_up(exc):
            raise
        said = str(exc).strip().splitlines()
        msg = (
            f"{component} migration {migration.version:04d}_{migration.name} failed on schema "
            f"{schema!r}: {said[0] if said else type(exc).__name__} (SQLSTATE {sqlstate}); "
            "nothing was applied (the run's files share one transaction): the file does not "
            "fit what this database holds; report it with this line"
        )
        raise FailedPrecondition(
            msg, metadata={"migration": f"{migration.version:04d}", "sqlstate": sqlstate}
        ) from exc


def _log_applied(component: str, schema: str, applied: list[Migration], current: int) -> None:
    """Say what a committed :func:`migrate` did: each file applied, or that none was.

    Whoever runs an upgrade (a Helm hook Job's log, ``bugless model
    migrate`` in a shell) reads what changed in the schema, not only the
    version it ended at, which is the same whether the run applied files
    or another replica had.
    """
    for migration in applied:
        _log.info(
            "%s schema %r: applied migration %04d_%s",
            component,
            schema,
            migration.version,
            migration.name,
            extra={"schema": schema, "version": migration.version},
        )
    if not applied:
        _log.info(
            "%s schema %r: at version %d already, nothing to apply", component, schema, current
        )


def _lost_while_committing(lost: Unavailable) -> Unavailable:
    """``lost`` (the lease lost while the migration's COMMIT was in flight), told as it is.

    The cancellation reaches a COMMIT the server may already have done (or
    be doing), so nobody here knows whether the files were applied; what an
    operator can rely on is that running ``migrate`` again is safe.
    """
    holder = lost.metadata.get("holder", "unknown")
    msg = (
        f"lost the migration lease to holder {holder!r} while the migration's transaction "
        "was committing: the migration may have been applied, or not; running migrate again "
        "is safe (it applies nothing twice: the ledger, schema_migrations, records each "
        "version once)"
    )
    return Unavailable(msg, reason=lost.reason, metadata=lost.metadata)
