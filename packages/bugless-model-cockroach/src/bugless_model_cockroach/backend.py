"""The CockroachDB Model backend: the PostgreSQL backend with what differs.

Everything that both databases run identically is inherited from
:class:`~bugless_model_postgres.PostgresBackend` (statements, the search
compiler, the write logic). This class replaces only:

* **ids**: issue ids come from a Snowflake generator whose node id is leased
  in the database (:mod:`._leases`, :mod:`._snowflake`), not from a sequence;
* **retries**: every write and every search transaction runs in a retry loop
  on 40001 / "restart transaction" with capped, jittered exponential backoff
  (:data:`._dialect.COCKROACH_RETRIES`); change listeners run once, after the
  final commit;
* **locking**: migrations hold a lease row instead of an advisory lock
  (:class:`bugless_core.migrations.LeaseLock`);
* **reads**: ``allow_stale`` searches read at ``follower_read_timestamp()``;
* **regions**: ``migrate`` applies ``ModelSettings.regions`` and
  ``survival_goal``; ``open`` checks ``locality`` against the database's
  regions and the gateway its connections land on (:mod:`._regions`).

* **the change feed**: a write appends its change to a pending table
  (this package's migration 0026) instead of updating the ``head`` row
  every other writer needs; a sequencer run by the feed's readers numbers
  what has committed (:mod:`._sequencer`). Readers poll (no LISTEN/NOTIFY);
  ReadFeed, Watch and its resume are then the PostgreSQL backend's.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar, Self

import asyncpg

from bugless_core.errors import FailedPrecondition, InvalidArgument
from bugless_core.migrations import LeaseLock, Migration, MigrationLock, load_migrations
from bugless_core.model.backend import Capability, ModelSettings
from bugless_model_cockroach import _dialect, _leases, _regions, _sequencer
from bugless_model_cockroach import _queries as q
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres.seam import Conn, Dialect, translated_errors

_log = logging.getLogger(__name__)
#: Model migration versions that only make PostgreSQL-specific objects.
_POSTGRES_ONLY = frozenset({8, 13, 15, 16, 17})
_NO_OP = "SELECT 1"


def with_own_migrations(postgres: list[Migration], package: str) -> list[Migration]:
    """PostgreSQL's ledger with each version ``package`` ships a file for run from that file.

    The files are read from the package's ``migrations/`` directory, so a file
    added there is run, never left out because a list elsewhere lacks it. Its
    version must be one PostgreSQL's ledger has (a no-op there, as its 0026
    is) and not one of the PostgreSQL-only versions this backend skips: both
    backends number alike, and a file that could not run is refused before
    anything touches a database rather than ignored.

    Raises:
        RuntimeError: a file is misnamed, two share a number, or its version
            is not one PostgreSQL's ledger has or is PostgreSQL-only here.
    """
    own = {m.version: m for m in load_migrations(package, numbered_from_one=False)}
    known = {m.version for m in postgres}
    for version in sorted(own):
        if version not in known or version in _POSTGRES_ONLY:
            why = (
                "is PostgreSQL-only, a no-op here"
                if version in _POSTGRES_ONLY
                else f"is not one of PostgreSQL's (1..{max(known, default=0)})"
            )
            msg = (
                f"{package}: migration file {version:04d}_{own[version].name}.sql replaces a "
                f"version of bugless-model-postgres's ledger, and {version} {why}: number it "
                "as the PostgreSQL migration it replaces (a no-op there)"
            )
            raise RuntimeError(msg)
    return [
        dataclasses.replace(m, sql=_NO_OP)
        if m.version in _POSTGRES_ONLY
        else dataclasses.replace(m, sql=own[m.version].sql)
        if m.version in own
        else m
        for m in postgres
    ]


class CockroachBackend(PostgresBackend):
    """Model backend on CockroachDB 23.2+ (or PostgreSQL in compatibility mode)."""

    name: ClassVar[str] = "cockroach"
    #: Its schema messages and skew gauge name this package, not the
    #: PostgreSQL backend's (the upgrade they ask for is of this one).
    component: ClassVar[str] = "bugless-model-cockroach"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.FOLLOWER_READS,
            Capability.TRANSACTION_RETRIES,
            Capability.SNOWFLAKE_IDS,
            Capability.MULTI_REGION,
            Capability.RELATION_FLAGS,
            Capability.CHANGE_FEED,
            Capability.WATCH,
        }
    )
    migration_lock: ClassVar[MigrationLock] = LeaseLock()

    @staticmethod
    def migrations() -> list[Migration]:
        """PostgreSQL's migrations, with the PostgreSQL-only ones as no-ops here.

        Version 8 adds a ``jsonb_path_ops`` GIN index, an operator class
        CockroachDB does not have and does not need: its inverted index on
        ``issues.custom_fields`` (version 4) already keys JSON by path and
        value. The version stays in the ledger so both backends number alike.
        (Version 10 drops both indexes again, ``IF EXISTS``: searches read
        the value rows it adds.) Version 13 creates an aggregate
        (``tsvector_concat_agg``), and CockroachDB has no user-defined
        aggregates: its dialect makes an edited issue's comment vector
        from the texts (``Dialect.stored_comment_vectors``). Version 15 is a
        trigger refusing a value row that names an option its field no
        longer has (an UpdateCustomField removing it raced the write); 23.2
        has no triggers, and SERIALIZABLE refuses that race by itself (a
        write skew: each transaction read what the other wrote); 16 and 17
        alter that trigger's function (its search_path; an exact comparison).

        The other way round, version 26 is a no-op in PostgreSQL's files and
        this package's ``migrations/0026_change_feed_pending.sql`` here: the
        pending table of the change feed (:mod:`._sequencer`). Every file in
        that directory is run in its version's place
        (:func:`with_own_migrations`).
        """
        return with_own_migrations(PostgresBackend.migrations(), "bugless_model_cockroach")

    def __init__(self, settings: ModelSettings, pool: asyncpg.Pool) -> None:
        """Use an open pool; call :meth:`open` rather than this."""
        super().__init__(settings, pool)
        self._dialect = _dialect.COMPATIBILITY
        self._retry_policy = _dialect.COCKROACH_RETRIES
        self._node = _leases.NodeLease(pool)
        self._feed.sequencer = self.sequencer = _sequencer.Sequencer(pool, self._retry_policy)
        self._new_issue_id = self._snowflake_id
        #: The region this replica runs in (``locality``), checked on open.
        self.home_region: str | None = None

    @property
    def node_id(self) -> int:
        """The Snowflake node id this replica holds."""
        return self._node.node_id

    @property
    def on_cockroach(self) -> bool:
        """Whether the server is CockroachDB (not PostgreSQL in compatibility mode)."""
        return self._dialect is _dialect.COCKROACH

    async def _snowflake_id(self, _conn: Conn) -> int:
        generator = self._node.generator
        if generator is None:  # pragma: no cover - open() takes the lease first
            msg = "the backend is not open"
            raise FailedPrecondition(msg)
        return await generator.next_id()

    # ---- lifecycle ----

    @staticmethod
    async def _server_dialect(conn: Conn) -> Dialect:
        """The dialect of the server; refuse PostgreSQL not running SERIALIZABLE.

        Raises:
            InvalidArgument: PostgreSQL whose default isolation is not
                SERIALIZABLE: the configuration (``--backend cockroach`` on
                it, or the database's setting) is at fault, as for the
                Authenticator's ``--database-dialect`` (``bugless model
                migrate`` exits 2, bad configuration).
        """
        dialect = _dialect.dialect_for(await conn.fetchval(q.SERVER_VERSION))
        if dialect is _dialect.COMPATIBILITY:
            isolation = await conn.fetchval(q.DEFAULT_ISOLATION)
            if isolation != "serializable":
                msg = (
                    "the cockroach backend on PostgreSQL (compatibility mode) needs "
                    f"default_transaction_isolation = serializable, the server has {isolation!r}: "
                    "ALTER DATABASE ... SET default_transaction_isolation = 'serializable'"
                )
                raise InvalidArgument(msg)
        return dialect

    @classmethod
    async def _before_migrate(cls, pool: asyncpg.Pool, settings: ModelSettings) -> None:
        """Refuse a PostgreSQL that is not SERIALIZABLE, and regions without CockroachDB.

        Raises:
            InvalidArgument: a survival goal the regions cannot have (``region``
                with fewer than three), the server cannot serve this backend, or
                regions were given but the server is not CockroachDB: each a
                setting that does not fit, before anything is written.
        """
        regions = _regions.check_regions(settings.regions)
        _regions.check_survival_goal(settings.survival_goal, regions)
        async with pool.acquire() as conn:
            dialect = await cls._server_dialect(conn)
        if regions and dialect is not _dialect.COCKROACH:
            msg = (
                "regions: a multi-region database needs CockroachDB; this server is "
                "PostgreSQL (compatibility mode), run migrate without --regions"
            )
            raise InvalidArgument(msg, metadata={"field": "regions"})

    @classmethod
    async def _after_migrate(cls, pool: asyncpg.Pool, settings: ModelSettings) -> None:
        """Home the tables in ``settings.regions`` with its survival goal (checked before)."""
        regions = _regions.check_regions(settings.regions)
        if not regions:
            return
        async with pool.acquire() as conn:
            database = await conn.fetchval(q.CURRENT_DATABASE)
            for statement in _regions.region_statements(
                database, settings.schema, regions, settings.survival_goal
            ):
                await conn.execute(statement)

    @classmethod
    async def open(cls, settings: ModelSettings) -> Self:
        """Open as the PostgreSQL backend does, then pick the dialect and lease a node id."""
        backend = await super().open(settings)
        try:
            async with translated_errors(), backend._pool.acquire() as conn:
                backend._dialect = await cls._server_dialect(conn)
                if not backend.on_cockroach:  # no predicate locks on writers (see _sequencer)
                    backend.sequencer.isolation = "read_committed"
                backend.home_region = await backend._check_locality(conn)
            async with translated_errors():
                await backend._node.start()
        except BaseException:
            await backend.close()
            raise
        return backend

    async def _check_locality(self, conn: Any) -> str | None:
        """The locality's region, checked against the database; None without a locality.

        A region the database does not have is refused: new issues could not
        be homed there. Connections landing in another region are allowed
        (the database URL may lead elsewhere while this region's nodes are
        down) but logged, since every issue this replica files is then homed
        in that other region.

        Raises:
            InvalidArgument: the locality does not parse, is set on
                PostgreSQL (compatibility mode, which has no regions), or
                names a region the database lacks (its regions are made by
                ``migrate --regions``): a setting that does not fit the
                server, as ``--regions`` is for ``migrate`` (``bugless model
                serve`` exits 2).
        """
        region = _regions.locality_region(self.settings.locality)
        if region is None:
            return None
        if not self.on_cockroach:
            msg = (
                "locality: regions need CockroachDB; this server is PostgreSQL "
                "(compatibility mode): serve without --locality (BUGLESS_COCKROACH_LOCALITY)"
            )
            raise InvalidArgument(msg, metadata={"field": "locality"})
        known = [r["region"] for r in await conn.fetch(_regions.DATABASE_REGIONS)]
        _regions.check_locality_region(region, known)
        gateway = await conn.fetchval(_regions.GATEWAY_REGION)
        if gateway != region:
            _log.warning(
                "this replica runs in %s but its database connections land in %s: issues it "
                "files are homed in %s; point --database-url at %s's nodes",
                region,
                gateway,
                gateway,
                region,
                extra={"locality_region": region, "gateway_region": gateway},
            )
        return region

    async def close(self) -> None:
        """Give the node id back, then close as the PostgreSQL backend does."""
        await self._node.stop()
        await super().close()
