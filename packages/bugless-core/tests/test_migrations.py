"""The one migration engine, with each lock strategy, on a real PostgreSQL.

The Model backends and the Authenticator apply their files through
:func:`bugless_core.migrations.migrate`; only the lock differs (an advisory lock
on PostgreSQL, a lease row on CockroachDB). Each strategy must keep
concurrent replicas apart, and a failed file must leave nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from bugless_core.errors import FailedPrecondition, Unavailable
from bugless_core.leases import LEASE_LOST, TAKE_LEASE
from bugless_core.migrations import (
    AdvisoryLock,
    LeaseLock,
    Migration,
    MigrationLock,
    applied_version,
    check_schema_version,
    migrate,
)
from bugless_dev.postgres import ThrowawayPostgres
from bugless_testing.lease_renewal import (
    check_an_outage_is_logged_as_one,
)

#: A slow first file: replicas that do not wait for each other would both apply it.
MIGRATIONS = [
    Migration(1, "slow", "SELECT pg_sleep(0.3); CREATE TABLE things (id int PRIMARY KEY)"),
    Migration(2, "more", "ALTER TABLE things ADD COLUMN name text"),
]
LOCKS: list[MigrationLock] = [AdvisoryLock(), LeaseLock(wait_seconds=30)]


@pytest.fixture(scope="module")
async def database(postgres_server: ThrowawayPostgres) -> str:
    return await postgres_server.acreate_database("migration_engine")


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    made = await asyncpg.create_pool(database, min_size=1, max_size=8)
    try:
        yield made
    finally:
        await made.close()


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.name)
async def test_concurrent_replicas_apply_each_file_once(
    pool: asyncpg.Pool, lock: MigrationLock
) -> None:
    schema = f"race_{lock.name}"
    versions = await asyncio.gather(
        *(migrate(pool, schema, MIGRATIONS, component="test", lock=lock) for _ in range(4))
    )
    assert versions == [2, 2, 2, 2]
    rows = await pool.fetch(f"SELECT version FROM {schema}.schema_migrations ORDER BY 1")
    assert [r["version"] for r in rows] == [1, 2]
    async with pool.acquire() as conn:
        assert await applied_version(conn, schema) == 2


async def test_what_a_migration_applied_is_logged_file_by_file(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    # Before, only the version it ended at was said: the same whether this run
    # applied files or another replica had, so an upgrade's Job log showed nothing.
    caplog.set_level(logging.INFO, logger="bugless.migrations")
    lock = AdvisoryLock()
    await migrate(pool, "told", MIGRATIONS[:1], component="the tester", lock=lock)
    await migrate(pool, "told", MIGRATIONS, component="the tester", lock=lock)
    await migrate(pool, "told", MIGRATIONS, component="the tester", lock=lock)
    assert [r.getMessage() for r in caplog.records if r.name == "bugless.migrations"] == [
        "the tester schema 'told': applied migration 0001_slow",
        "the tester schema 'told': applied migration 0002_more",
        "the tester schema 'told': at version 2 already, nothing to apply",
    ]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.name)
async def test_a_failing_file_leaves_the_schema_as_it_was(
    pool: asyncpg.Pool, lock: MigrationLock
) -> None:
    schema = f"broken_{lock.name}"
    await migrate(pool, schema, MIGRATIONS[:1], component="test", lock=lock)
    broken = [*MIGRATIONS, Migration(3, "broken", "CREATE TABLE things (id int)")]
    with pytest.raises(FailedPrecondition) as refused:
        await migrate(pool, schema, broken, component="test", lock=lock)
    # The file and the database's words, not a driver's exception to trace back.
    assert refused.value.message.startswith(
        f"test migration 0003_broken failed on schema {schema!r}: "
        'relation "things" already exists (SQLSTATE 42P07); nothing was applied'
    )
    assert isinstance(refused.value.__cause__, asyncpg.DuplicateTableError)
    async with pool.acquire() as conn:
        assert await applied_version(conn, schema) == 1
    columns = await pool.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 "
        "AND table_name = 'things'",
        schema,
    )
    assert columns == 1  # file 2 was rolled back with file 3


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.name)
async def test_a_file_outlasting_the_pools_statement_timeout_is_applied(
    database: str, lock: MigrationLock
) -> None:
    """The Model's pool bounds each statement (30 s); a file's whole-table work may take longer.

    A file cut at that bound failed with the statement cancelled and rolled
    the upgrade back, on every try: a deployment whose tables took longer to
    copy or index than the bound could not upgrade. Here the pool's bound is
    0.2 s and the file sleeps 0.5 s; the pool's other statements keep it.
    """
    slow = [Migration(1, "slow", "SELECT pg_sleep(0.5); CREATE TABLE slow (id int)")]
    schema = f"slow_{lock.name}"
    bounded = await asyncpg.create_pool(
        database, min_size=1, max_size=2, server_settings={"statement_timeout": "200"}
    )
    try:
        assert await migrate(bounded, schema, slow, component="test", lock=lock) == 1
        async with bounded.acquire() as conn:
            assert await applied_version(conn, schema) == 1
            with pytest.raises(asyncpg.QueryCanceledError):
                await conn.execute("SELECT pg_sleep(0.5)")
    finally:
        await bounded.close()


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.name)
async def test_a_schema_from_a_newer_release_is_refused(
    pool: asyncpg.Pool, lock: MigrationLock
) -> None:
    schema = f"newer_{lock.name}"
    await migrate(pool, schema, MIGRATIONS, component="test", lock=lock)
    with pytest.raises(FailedPrecondition, match="only knows versions up to 1"):
        await migrate(pool, schema, MIGRATIONS[:1], component="the tester", lock=lock)


async def test_a_replica_starts_only_on_the_schema_its_code_ships(pool: asyncpg.Pool) -> None:
    """Behind or ahead, the refusal names the schema, both versions and what to do."""
    await migrate(pool, "at_one", MIGRATIONS[:1], component="test", lock=AdvisoryLock())
    async with pool.acquire() as conn:
        found = await applied_version(conn, "at_one")
    rule = {"schema": "at_one", "component": "bugless-test", "migrate_command": "bugless t migrate"}
    check_schema_version(found, 1, **rule)
    with pytest.raises(FailedPrecondition) as behind:
        check_schema_version(found, 2, **rule)
    assert behind.value.message == (
        "the bugless-test schema 'at_one' is at version 1, but this bugless-test needs "
        "version 2: run `bugless t migrate` first"
    )
    with pytest.raises(FailedPrecondition) as ahead:
        check_schema_version(found, 0, **rule)
    assert ahead.value.message.startswith(
        "the bugless-test schema 'at_one' is at version 1, but this bugless-test only knows "
        "versions up to 0: upgrade bugless-test on this replica"
    )
    assert ahead.value.metadata == {"schema": "at_one", "schema_version": "1", "known_version": "0"}


async def test_the_lease_is_given_back_not_left_to_expire(pool: asyncpg.Pool) -> None:
    await migrate(pool, "lease_back", MIGRATIONS, component="test", lock=LeaseLock())
    live = await pool.fetchval(
        "SELECT count(*) FROM lease_back.bugless_leases WHERE expires_at > now()"
    )
    assert live == 0


async def test_an_expired_lease_of_a_dead_replica_is_taken_over(pool: asyncpg.Pool) -> None:
    await migrate(pool, "lease_dead", MIGRATIONS[:1], component="test", lock=LeaseLock())
    await pool.fetchrow(
        TAKE_LEASE.replace("bugless_leases", "lease_dead.bugless_leases"), "migrate", "dead", 1
    )
    await asyncio.sleep(0.05)
    version = await migrate(
        pool, "lease_dead", MIGRATIONS, component="test", lock=LeaseLock(wait_seconds=5)
    )
    assert version == 2


async def test_a_live_lease_makes_others_wait_then_give_up(pool: asyncpg.Pool) -> None:
    await migrate(pool, "lease_live", MIGRATIONS[:1], component="test", lock=LeaseLock())
    await pool.fetchrow(
        TAKE_LEASE.replace("bugless_leases", "lease_live.bugless_leases"),
        "migrate",
        "slow-replica",
        60_000,
    )
    with pytest.raises(Unavailable, match="another replica has been migrating"):
        await migrate(
            pool, "lease_live", MIGRATIONS, component="test", lock=LeaseLock(wait_seconds=0.3)
        )
    async with pool.acquire() as conn:
        assert await applied_version(conn, "lease_live") == 1


async def _until_true(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(3000):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_migration_that_loses_its_lease_stops_and_rolls_back(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    # File 2 creates a table, then waits for a lock this test holds; while it
    # waits, another replica takes the lease (expired, then taken, in one
    # transaction so a renewal cannot slip in between).
    schema = "lease_lost"
    await migrate(pool, schema, MIGRATIONS[:1], component="test", lock=LeaseLock())
    waiting = [
        MIGRATIONS[0],
        Migration(2, "waits", "CREATE TABLE others (id int); ALTER TABLE things ADD COLUMN x int"),
    ]
    leases_table = f"{schema}.bugless_leases"
    async with pool.acquire() as blocker, pool.acquire() as other, blocker.transaction():
        await blocker.execute(f"LOCK TABLE {schema}.things")
        migrating = asyncio.create_task(
            migrate(pool, schema, waiting, component="test", lock=LeaseLock(ttl_ms=600))
        )

        async def step_waits() -> bool:
            waiters = await other.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass",
                f"{schema}.things",
            )
            return bool(waiters)

        await _until_true(step_waits, "file 2 waits for the lock")
        with caplog.at_level(logging.ERROR, logger="bugless_core.leases"):
            async with other.transaction():
                await other.execute(
                    f"UPDATE {leases_table} SET expires_at = now() WHERE name = 'migrate'"
                )
                taken = await other.fetchrow(
                    TAKE_LEASE.replace("bugless_leases", leases_table),
                    "migrate",
                    "other-replica",
                    60_000,
                )
                assert taken is not None
            with pytest.raises(Unavailable, match="lost the lease 'migrate'") as lost:
                await migrating
    assert lost.value.reason == LEASE_LOST
    assert lost.value.metadata == {"lease": "migrate", "holder": "other-replica"}
    errors = [r for r in caplog.records if r.name == "bugless_core.leases"]
    assert [r.levelno for r in errors] == [logging.ERROR]
    assert "to holder 'other-replica'" in errors[0].getMessage()
    async with pool.acquire() as conn:
        assert await applied_version(conn, schema) == 1
    assert await pool.fetchval("SELECT to_regclass($1)", f"{schema}.others") is None
    holder = await pool.fetchval(f"SELECT holder FROM {leases_table} WHERE name = 'migrate'")
    assert holder == "other-replica"  # the loser did not give away a lease it no longer held


async def test_a_lease_lock_logs_a_closed_connection_as_an_outage(
    database: str,
) -> None:
    await check_an_outage_is_logged_as_one(LeaseLock(), database)


def _waits_at_commit(*, commit_goes_through: bool) -> list[Migration]:
    """Two files; the second's deferred trigger runs at COMMIT and waits for table ``gate``.

    With ``commit_goes_through`` the trigger ignores the cancel that the
    migration's cancellation sends (asyncpg cancels the statement in flight),
    so the COMMIT finishes: the server had already committed, as far as the
    migrating replica can tell. Without it, the cancel ends the COMMIT.
    """
    ignore_cancel = "EXCEPTION WHEN query_canceled THEN NULL;" if commit_goes_through else ""
    return [
        Migration(1, "gate", "CREATE TABLE gate (id int); CREATE TABLE things (id int)"),
        Migration(
            2,
            "waits_at_commit",
            f"""
            CREATE TABLE others (id int);
            CREATE FUNCTION wait_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                BEGIN
                    LOCK TABLE gate IN ACCESS EXCLUSIVE MODE;
                {ignore_cancel}
                END;
                RETURN NULL;
            END $$;
            CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON things
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wait_at_commit();
            INSERT INTO things VALUES (1);
            """,
        ),
    ]


@pytest.mark.parametrize("applied", [True, False], ids=["committed", "rolled_back"])
async def test_a_lease_lost_while_committing_says_the_migration_may_be_applied(
    pool: asyncpg.Pool, *, applied: bool
) -> None:
    # The COMMIT waits (in file 2's deferred trigger) for a lock this test
    # holds; meanwhile another replica takes the lease, and the next renewal
    # cancels the migration mid-COMMIT. Whether the files are in then depends
    # on the server, not on the migrating replica: the error must not say they
    # were rolled back, and running migrate again must finish the job.
    schema = f"lease_commit_{applied}".lower()
    migrations = _waits_at_commit(commit_goes_through=applied)
    await migrate(pool, schema, migrations[:1], component="test", lock=LeaseLock())
    leases_table = f"{schema}.bugless_leases"
    async with pool.acquire() as blocker, pool.acquire() as other:
        async with blocker.transaction():
            await blocker.execute(f"LOCK TABLE {schema}.gate")
            migrating = asyncio.create_task(
                migrate(pool, schema, migrations, component="test", lock=LeaseLock(ttl_ms=600))
            )

            async def commit_waits() -> bool:
                waiters = await other.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass",
                    f"{schema}.gate",
                )
                return bool(waiters)

            await _until_true(commit_waits, "the COMMIT waits for the gate")
            async with other.transaction():
                await other.execute(
                    f"UPDATE {leases_table} SET expires_at = now() WHERE name = 'migrate'"
                )
                taken = await other.fetchrow(
                    TAKE_LEASE.replace("bugless_leases", leases_table),
                    "migrate",
                    "other-replica",
                    60_000,
                )
                assert taken is not None
            with pytest.raises(Unavailable) as lost:
                await migrating
        assert lost.value.reason == LEASE_LOST
        assert lost.value.metadata == {"lease": "migrate", "holder": "other-replica"}
        assert "while the migration's transaction was committing" in lost.value.message
        assert "may have been applied" in lost.value.message
        assert "running migrate again is safe" in lost.value.message
        async with pool.acquire() as conn:
            assert await applied_version(conn, schema) == (2 if applied else 1)
        # The other replica's migration ends (its lease is given back): run it again.
        await other.execute(f"UPDATE {leases_table} SET expires_at = now() WHERE name = 'migrate'")
    assert await migrate(pool, schema, migrations, component="test", lock=LeaseLock()) == 2
    rows = await pool.fetch(f"SELECT version FROM {schema}.schema_migrations ORDER BY 1")
    assert [r["version"] for r in rows] == [1, 2]
    assert await pool.fetchval(f"SELECT count(*) FROM {schema}.things") == 1
