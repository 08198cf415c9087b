"""``bugless model migrate`` and ``serve --model cockroach`` exit with the documented statuses.

A setting that does not fit the server is bad configuration, 2, as for
``bugless auth migrate --database-dialect``: the cockroach backend on a
PostgreSQL that is not SERIALIZABLE, ``--regions`` on PostgreSQL, a
``region`` survival goal without three regions. Each is said as what to
change, and nothing is made. The database away stays 1 (a failed service's
status). Before, every error of the command was 1: the root command's
handler gave any bugless error that status. ``serve`` reads the same way: a
locality on PostgreSQL is the setting at fault, as ``--regions`` is for
migrate.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg
import pytest

from bugless_dev.processes import unused_port
from bugless_testing.program import BUGLESS_SCRIPT

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

SCHEMA = "never_made"


async def _migrate(url: str, *options: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, with no BUGLESS_ variable of this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    command = [BUGLESS_SCRIPT, "model", "migrate", "--model", "cockroach", "--database-url", url]
    return await asyncio.to_thread(
        subprocess.run,
        [*command, "--schema", SCHEMA, *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def _schema_made(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", SCHEMA)
    finally:
        await conn.close()
    return bool(found)


async def test_the_backend_on_postgresql_that_is_not_serializable_is_bad_configuration(
    postgres_server: ThrowawayPostgres,
) -> None:
    url = await postgres_server.acreate_database("cockroach_cli_read_committed")
    done = await _migrate(url)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: the cockroach backend on PostgreSQL (compatibility mode) needs "
        "default_transaction_isolation = serializable, the server has 'read committed': "
        "ALTER DATABASE ... SET default_transaction_isolation = 'serializable'\n"
    )
    assert not await _schema_made(url)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (
            ["--regions", "eu-west1,us-east1"],
            "error: regions: a multi-region database needs CockroachDB; this server is "
            "PostgreSQL (compatibility mode), run migrate without --regions\n",
        ),
        (["--survival-goal", "region"], "region needs 3 or more regions"),
    ],
)
async def test_regions_the_server_cannot_have_are_bad_configuration(
    make_serializable_database: Callable[[str], Awaitable[str]],
    options: list[str],
    said: str,
) -> None:
    url = await make_serializable_database(
        "cockroach_cli_" + options[0].strip("-").replace("-", "_")
    )
    done = await _migrate(url, *options)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr
    assert done.stderr.startswith("error: ")
    assert not await _schema_made(url)


async def test_a_database_away_is_still_a_failed_service() -> None:
    done = await _migrate(f"postgresql://bugless@127.0.0.1:{unused_port()}/bugless")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr


async def test_serving_with_a_locality_on_postgresql_is_bad_configuration_as_migrate_says(
    make_serializable_database: Callable[[str], Awaitable[str]],
) -> None:
    """2 with what to change, as ``migrate --regions`` on PostgreSQL; it was 1 (a failed start).

    The database away at serve stays 1.
    """
    url = await make_serializable_database("cockroach_cli_serve_locality")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUGLESS_")}
    serve = [
        BUGLESS_SCRIPT, "model", "serve", "--model", "cockroach", "--schema", SCHEMA, "--migrate",
        "--insecure-local", "--host", "127.0.0.1", "--port", "0",
        "--page-token-secret", "a-secret-of-sixteen-or-more",
        "--locality", "region=us-east1,zone=us-east1-b",
    ]  # fmt: skip
    done, away = [
        await asyncio.to_thread(
            subprocess.run,
            [*serve, "--database-url", target],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        for target in (url, f"postgresql://bugless@127.0.0.1:{unused_port()}/bugless")
    ]
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(
        "error: locality: regions need CockroachDB; this server is PostgreSQL (compatibility "
        "mode): serve without --locality (BUGLESS_COCKROACH_LOCALITY)\n"
    )
    assert "Traceback" not in done.stderr
    assert away.returncode == 1, away.stderr
    assert "Traceback" not in away.stderr
