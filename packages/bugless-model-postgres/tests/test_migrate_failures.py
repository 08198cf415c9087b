"""``bugless model migrate`` when a migration file fails on the data it meets: 1, one line.

Exit 2 is for the operator's settings (a database URL refused, regions the
server cannot have); a file of the release that the database refuses for
itself (here migration 0029 casting an access list's role, stored by hand as
a word, to an integer) is no setting the operator can correct. Before, the
database's exception left the command as a traceback. A real PostgreSQL, the
command as an operator runs it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg

from bugless_core.migrations import AdvisoryLock, applied_version, migrate
from bugless_model_postgres import PostgresBackend
from bugless_testing.start_refusals import run_bugless

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

#: The file the test makes fail, and the version before it.
FAILING = "0029_acl_one_entry_per_principal"
BEFORE = 28


async def test_a_migration_file_that_fails_on_the_data_exits_1_naming_the_file(
    postgres_server: ThrowawayPostgres,
) -> None:
    url = await postgres_server.acreate_database("migrate_data_error")
    files = PostgresBackend.migrations()
    assert f"{files[BEFORE].version:04d}_{files[BEFORE].name}" == FAILING
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        await migrate(
            pool,
            "bugless",
            files[:BEFORE],
            component=PostgresBackend.component,
            lock=AdvisoryLock(),
        )
        await pool.execute(
            "INSERT INTO bugless.components (name, acl, path_ids, path, path_key, created_at, "
            'modified_at) VALUES (\'web\', \'[{"p": "user:u1", "r": "admin"}]\', \'{1}\', '
            "'web', '{web}', now(), now())"
        )
        done = await asyncio.to_thread(
            run_bugless, ["model", "migrate", "--database-url", url], timeout=180
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert done.stderr.splitlines()[-1].startswith(
            f"error: bugless-model-postgres migration {FAILING} failed on schema 'bugless': "
            'invalid input syntax for type integer: "admin" (SQLSTATE 22P02); '
            "nothing was applied"
        ), done.stderr
        async with pool.acquire() as conn:
            assert await applied_version(conn, "bugless") == BEFORE
    finally:
        await pool.close()
