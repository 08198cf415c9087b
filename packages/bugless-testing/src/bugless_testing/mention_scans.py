"""The Model's mention scans (migration 0028) against the one statements they replace.

Migrations 0025 and 0027 queued the issues whose ``mention:`` rows a new
reading may change with one ``INSERT ... SELECT`` each, in the migration's
transaction; 0028 records a scan that ``migrate`` runs after the files in
batches of ids, one short transaction each. :class:`MentionScanChecks` holds
what that must keep, for any backend whose migrations are the PostgreSQL
package's (a backend's test module subclasses it in one line and provides
the ``mention_scan_backend`` fixture next to ``model_settings``): on a table
of several batches, the queue is the released statement's, issue for issue;
which scan runs depends on the files this migrate applied; a migrate stopped
part-way goes on from the last batch that committed; two at once queue
each issue once. Each test migrates a schema of its own, up to the version
its deployment would be at, through the migration engine, fills it with SQL
(thousands of issues in one statement) and then runs the backend's own
``migrate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Protocol

import asyncpg
import pytest

from bugless_core.mentions import mentioned_usernames
from bugless_core.migrations import Migration, MigrationLock, migrate, quote_schema
from bugless_core.model.backend import ModelSettings

__all__ = ["RELEASED", "MentionScanChecks", "SqlBackendClass"]

#: The issues 0025 and 0027 queued, as the released files selected them.
RELEASED = {
    25: """
SELECT i.id
  FROM issues i
 WHERE strpos(i.title, '@') > 0
    OR strpos(i.title, '&') > 0
    OR EXISTS (SELECT 1 FROM issue_history h
                WHERE h.issue_id = i.id
                  AND (strpos(h.comment, '@') > 0 OR strpos(h.comment, '&') > 0))
""",
    27: """
SELECT i.id
  FROM issues i
 WHERE (strpos(i.title, '@') > 0 AND i.title ~ '[.+@-]_|_[.+@-]')
    OR EXISTS (SELECT 1 FROM issue_history h
                WHERE h.issue_id = i.id
                  AND strpos(h.comment, '@') > 0
                  AND h.comment ~ '[.+@-]_|_[.+@-]')
""",
}

#: The scan's batch (bugless_model_postgres._mention_scans.SCAN_BATCH).
SCAN_BATCH = 1000
#: Issues per test: three batches, the last one short.
ISSUES = 2 * SCAN_BATCH + 300
_SCAN_LOGGER = "bugless_model_postgres._mention_scans"

_TITLES = ["plain title", "ask @ann", "AT&T outage", "for @0._0_.0.", "nothing", "cc me_@bob.x"]
_TEXTS = ["", "mail me_@ann.example", "see &#64;bob", "x @a_b", "no one", "_@a_b_.c_ here"]
#: Issues ``7 * g + 1`` (ids need not be dense: CockroachDB's are not), a
#: title and a description each, a comment on every third.
_FILL = [
    "INSERT INTO components (id, name, path_ids, path, path_key, created_at, modified_at)"
    " VALUES (1, 'scan', ARRAY[1]::bigint[], 'scan', ARRAY['scan'], now(), now())",
    "INSERT INTO issues (id, title, status, priority, severity, type, component_id, reporter,"
    "                    created_at, modified_at)"
    " SELECT 7 * g + 1, ($1::text[])[1 + g % 6], 1, 1, 1, 1, 1, 'r', now(), now()"
    "   FROM generate_series(1, $2::int) AS g",
    "INSERT INTO issue_history (issue_id, version, author, created_at, comment)"
    " SELECT 7 * g + 1, 1, 'r', now(), ($1::text[])[1 + g % 5]"
    "   FROM generate_series(1, $2::int) AS g",
    "INSERT INTO issue_history (issue_id, version, author, created_at, comment)"
    " SELECT 7 * g + 1, 2, 'r', now(), ($1::text[])[1 + g % 6]"
    "   FROM generate_series(1, $2::int) AS g WHERE g % 3 = 0",
]
#: What the drain waits on while a test holds every issue's row lock.
_DRAIN_LOCK = "%FROM issues WHERE id = ANY ($1::bigint[]) ORDER BY id FOR UPDATE%"
#: What a scan's batch waits on while a test holds an uncommitted queue row.
_SCAN_INSERT = "%INSERT INTO issue_mentions_pending%"


class SqlBackendClass(Protocol):
    """A Model backend class whose schema is the PostgreSQL package's migrations."""

    @property
    def component(self) -> str:
        """Its name in schema messages."""

    @property
    def migration_lock(self) -> MigrationLock:
        """How its migrations are kept apart."""

    def migrations(self) -> list[Migration]:
        """Its migrations, in version order."""

    async def migrate(self, settings: ModelSettings) -> int:
        """Apply them and run what runs after them (the scans and backfills)."""


@dataclasses.dataclass
class _Deployment:
    """A schema of its own, migrated through ``version``, with its issues."""

    backend: SqlBackendClass
    settings: ModelSettings
    conn: asyncpg.Connection

    async def ids(self, statement: str) -> set[int]:
        return {int(r["id"]) for r in await self.conn.fetch(statement)}

    async def pending(self) -> set[int]:
        return await self.ids("SELECT issue_id AS id FROM issue_mentions_pending")

    async def scans(self) -> dict[int, tuple[int, int]]:
        rows = await self.conn.fetch("SELECT * FROM issue_mention_scans")
        return {r["version"]: (r["scanned_to"], r["through_id"]) for r in rows}

    async def apply_files(self, through: int) -> None:
        """Apply the migration files up to ``through`` with the engine alone (no scan)."""
        pool = await asyncpg.create_pool(
            self.settings.database_url, min_size=1, max_size=2, reset=_release_as_is
        )
        try:
            await migrate(
                pool,
                self.settings.schema,
                self.backend.migrations()[:through],
                component=self.backend.component,
                lock=self.backend.migration_lock,
            )
        finally:
            await pool.close()

    async def texts(self) -> dict[int, list[str]]:
        """Every issue's title and texts, by id."""
        rows = await self.conn.fetch(
            "SELECT i.id, i.title, array_agg(h.comment ORDER BY h.version) AS texts"
            "  FROM issues i JOIN issue_history h ON h.issue_id = i.id GROUP BY i.id, i.title"
        )
        return {int(r["id"]): [r["title"], *r["texts"]] for r in rows}

    async def mentions(self) -> dict[int, list[str]]:
        rows = await self.conn.fetch(
            "SELECT issue_id, array_agg(username ORDER BY username) AS names"
            "  FROM issue_mentions GROUP BY issue_id"
        )
        return {int(r["issue_id"]): list(r["names"]) for r in rows}


async def _release_as_is(conn: asyncpg.Connection) -> None:
    """A pool's reset that sends nothing (asyncpg's own calls what CockroachDB lacks)."""
    del conn


@contextlib.asynccontextmanager
async def _deployment(
    backend: SqlBackendClass, settings: ModelSettings, version: int
) -> AsyncIterator[_Deployment]:
    """A fresh schema migrated through ``version`` and filled with :data:`ISSUES` issues."""
    schema = f"scan_{uuid.uuid4().hex[:8]}"
    mine = dataclasses.replace(settings, schema=schema)
    conn = await asyncpg.connect(settings.database_url)
    deployment = _Deployment(backend, mine, conn)
    try:
        await deployment.apply_files(version)
        await conn.execute(f"SET search_path TO {quote_schema(schema)}")
        async with conn.transaction():
            await conn.execute(_FILL[0])
            await conn.execute(_FILL[1], _TITLES, ISSUES)
            await conn.execute(_FILL[2], _TEXTS, ISSUES)
            await conn.execute(_FILL[3], _TEXTS, ISSUES)
        yield deployment
    finally:
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_schema(schema)} CASCADE")
        await conn.close()


async def _waiting(conn: asyncpg.Connection, query: str) -> int | None:
    """The pid of a session of this database waiting on a lock in ``query`` (LIKE), if any."""
    pid: int | None = await conn.fetchval(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1"
        " LIMIT 1",
        query,
    )
    return pid


async def _until(ready: asyncio.Future[int], conn: asyncpg.Connection, query: str) -> int | None:
    """Wait until a session waits on a lock in ``query`` (its pid) or ``ready`` is done (None)."""
    async with asyncio.timeout(60):
        while not ready.done():
            pid = await _waiting(conn, query)
            if pid is not None:
                return pid
            await asyncio.sleep(0.02)
    return None


async def _queue_the_drain_finds(d: _Deployment) -> set[int]:
    """Run ``migrate``; the queue its scans left, read while the drain waits on an issue.

    Another session holds every issue's row lock (as writers hold theirs):
    the scans read past it, the drain's first lock waits for it, and the
    queue is read then, before the drain empties it.
    """
    holder = await asyncpg.connect(d.settings.database_url)
    try:
        await holder.execute(f"SET search_path TO {quote_schema(d.settings.schema)}")
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT id FROM issues ORDER BY id FOR UPDATE")
        migrating = asyncio.ensure_future(d.backend.migrate(d.settings))
        try:
            await _until(migrating, d.conn, _DRAIN_LOCK)
            queued = await d.pending()
        finally:
            await hold.rollback()
        async with asyncio.timeout(120):
            await migrating
    finally:
        await holder.close()
    return queued


class MentionScanChecks:
    """What migration 0028's scans keep, on a backend whose migrations are PostgreSQL's."""

    @pytest.mark.parametrize(
        ("deployed", "scans"),
        [(10, {25}), (22, {25}), (24, {25}), (25, {27}), (26, {27}), (27, set())],
    )
    async def test_the_scan_recorded_is_the_one_the_files_applied_now_left_out(
        self,
        mention_scan_backend: SqlBackendClass,
        model_settings: ModelSettings,
        deployed: int,
        scans: set[int],
    ) -> None:
        """A deployment at ``deployed`` gets the scan of the widest rule it has not run."""
        async with _deployment(mention_scan_backend, model_settings, deployed) as d:
            newest = max(await d.ids("SELECT id FROM issues"))
            await d.apply_files(28)
            assert await d.scans() == {v: (0, newest) for v in scans}
            assert await d.pending() == set()

    async def test_a_fresh_database_records_no_scan(
        self, mention_scan_backend: SqlBackendClass, model_settings: ModelSettings
    ) -> None:
        """No issue, nothing to scan: a new install's ``migrate`` leaves no row."""
        schema = f"scan_{uuid.uuid4().hex[:8]}"
        settings = dataclasses.replace(model_settings, schema=schema)
        await mention_scan_backend.migrate(settings)
        conn = await asyncpg.connect(settings.database_url)
        try:
            table = f"{quote_schema(schema)}.issue_mention_scans"
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
        finally:
            await conn.execute(f"DROP SCHEMA {quote_schema(schema)} CASCADE")
            await conn.close()

    @pytest.mark.parametrize("deployed", [24, 26])
    async def test_batches_queue_what_the_released_statement_did(
        self,
        mention_scan_backend: SqlBackendClass,
        model_settings: ModelSettings,
        deployed: int,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """From 24 the queue is 0025's statement's, from 26 0027's, over three batches."""
        rule = 25 if deployed < 25 else 27
        async with _deployment(mention_scan_backend, model_settings, deployed) as d:
            expected = await d.ids(RELEASED[rule])
            assert 0 < len(expected) < ISSUES
            with caplog.at_level(logging.INFO, logger=_SCAN_LOGGER):
                assert await _queue_the_drain_finds(d) == expected
            said = [r.getMessage() for r in caplog.records if r.name == _SCAN_LOGGER]
            assert said[-1].startswith(
                f"migration {rule:04d}'s mention scan: done, {len(expected)} issues queued "
                "in 3 batches"
            ), said
            assert await d.scans() == {}
            assert await d.pending() == set()
            texts, kept = await d.texts(), await d.mentions()
            for issue_id, its_texts in texts.items():
                want = sorted(set(mentioned_usernames(*its_texts))) if issue_id in expected else []
                assert kept.get(issue_id, []) == want, (issue_id, its_texts)

    async def test_a_migrate_stopped_part_way_goes_on_from_the_last_batch(
        self,
        mention_scan_backend: SqlBackendClass,
        model_settings: ModelSettings,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The third batch's connection is killed; the next ``migrate`` starts after the second."""
        async with _deployment(mention_scan_backend, model_settings, 24) as d:
            expected = await d.ids(RELEASED[25])
            ids = sorted(await d.ids("SELECT id FROM issues"))
            second = ids[2 * SCAN_BATCH - 1]
            in_third = min(i for i in expected if i > second)
            holder = await asyncpg.connect(d.settings.database_url)
            try:
                await holder.execute(f"SET search_path TO {quote_schema(d.settings.schema)}")
                hold = holder.transaction()
                await hold.start()
                # The third batch's insert waits for this uncommitted row of its range.
                await holder.execute(
                    "INSERT INTO issue_mentions_pending (issue_id) VALUES ($1)", in_third
                )
                migrating = asyncio.ensure_future(d.backend.migrate(d.settings))
                pid = await _until(migrating, d.conn, _SCAN_INSERT)
                assert pid is not None
                await d.conn.execute("SELECT pg_terminate_backend($1)", pid)
                with pytest.raises(Exception, match="connection"):
                    await migrating
                await hold.rollback()
            finally:
                await holder.close()
            assert await d.scans() == {25: (second, ids[-1])}
            assert await d.pending() == {i for i in expected if i <= second}
            # As if a drain had recomputed those: a scan starting over would queue them again.
            await d.conn.execute("DELETE FROM issue_mentions_pending")
            with caplog.at_level(logging.INFO, logger=_SCAN_LOGGER):
                await d.backend.migrate(d.settings)
            said = [r.getMessage() for r in caplog.records if r.name == _SCAN_LOGGER]
            assert f"ids after {second} up to {ids[-1]}" in said[0], said
            assert await d.scans() == {}
            assert await d.pending() == set()
            texts, kept = await d.texts(), await d.mentions()
            assert {i for i in kept if i <= second} == set()
            for issue_id in (i for i in expected if i > second):
                want = sorted(set(mentioned_usernames(*texts[issue_id])))
                assert kept.get(issue_id, []) == want, (issue_id, texts[issue_id])

    async def test_a_scan_another_migrate_is_running_is_left_to_it(
        self,
        mention_scan_backend: SqlBackendClass,
        model_settings: ModelSettings,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A migrate finding the scan's row locked goes on without it, and says so.

        Waiting would make a second replica's migrate queue behind every batch
        of the first (and, at SERIALIZABLE on PostgreSQL, lose each time its
        wait ends: 40001). The scan is the holder's; the next migrate finishes
        it if the holder does not.
        """
        async with _deployment(mention_scan_backend, model_settings, 24) as d:
            await d.apply_files(28)
            recorded = await d.scans()
            holder = await asyncpg.connect(d.settings.database_url)
            try:
                await holder.execute(f"SET search_path TO {quote_schema(d.settings.schema)}")
                async with holder.transaction():
                    await holder.execute("SELECT * FROM issue_mention_scans FOR UPDATE")
                    with caplog.at_level(logging.INFO, logger=_SCAN_LOGGER):
                        async with asyncio.timeout(60):
                            await d.backend.migrate(d.settings)
            finally:
                await holder.close()
            said = [r.getMessage() for r in caplog.records if r.name == _SCAN_LOGGER]
            assert said == [
                "migration 0025's mention scan is being run by another migrate: left to it "
                "(a migrate run after that one stopped finishes it)"
            ]
            assert await d.scans() == recorded
            assert await d.pending() == set()
            await d.backend.migrate(d.settings)
            assert await d.scans() == {}
            assert len(await d.mentions()) > 0

    async def test_queued_issues_another_backfill_holds_are_left_to_it(
        self, mention_scan_backend: SqlBackendClass, model_settings: ModelSettings
    ) -> None:
        """The backfill takes the queued issues no other batch holds, and leaves the rest."""
        async with _deployment(mention_scan_backend, model_settings, 24) as d:
            expected = await d.ids(RELEASED[25])
            held = sorted(expected)[:3]
            await d.conn.execute(
                "INSERT INTO issue_mentions_pending (issue_id) SELECT unnest($1::bigint[])", held
            )
            holder = await asyncpg.connect(d.settings.database_url)
            try:
                await holder.execute(f"SET search_path TO {quote_schema(d.settings.schema)}")
                async with holder.transaction():
                    await holder.execute(
                        "SELECT * FROM issue_mentions_pending WHERE issue_id = ANY ($1::bigint[])"
                        " FOR UPDATE",
                        held,
                    )
                    async with asyncio.timeout(120):
                        await d.backend.migrate(d.settings)
            finally:
                await holder.close()
            assert await d.pending() == set(held)
            kept = await d.mentions()
            assert set(held) & set(kept) == set()
            assert set(kept) <= expected - set(held)
            await d.backend.migrate(d.settings)
            assert await d.pending() == set()
            kept = await d.mentions()
            texts = await d.texts()
            for issue_id in held:
                assert kept.get(issue_id, []) == sorted(set(mentioned_usernames(*texts[issue_id])))

    async def test_two_migrates_at_once_queue_and_fill_each_issue_as_one_would(
        self, mention_scan_backend: SqlBackendClass, model_settings: ModelSettings
    ) -> None:
        """Two replicas' ``migrate`` scan and drain together; the rows are one run's."""
        async with _deployment(mention_scan_backend, model_settings, 24) as d:
            expected = await d.ids(RELEASED[25])
            async with asyncio.timeout(180):
                await asyncio.gather(d.backend.migrate(d.settings), d.backend.migrate(d.settings))
            assert await d.scans() == {}
            assert await d.pending() == set()
            texts, kept = await d.texts(), await d.mentions()
            for issue_id, its_texts in texts.items():
                want = sorted(set(mentioned_usernames(*its_texts))) if issue_id in expected else []
                assert kept.get(issue_id, []) == want, (issue_id, its_texts)
