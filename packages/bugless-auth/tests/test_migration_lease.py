"""The CockroachDB dialect's migration lease tells an outage from a bug, on a real PostgreSQL.

Its :class:`~bugless_core.migrations.LeaseLock` takes a renewal on a
connection the server ended for an outage (whichever of asyncpg's errors the
timing gives: the server's own, ``InternalClientError`` or ``InterfaceError``,
:mod:`bugless_core.database_errors`) and tries again, while a bug on the
renewal's path is still logged as one, with its traceback
(``bugless_testing.lease_renewal``).
"""

from __future__ import annotations

import pytest

from bugless_auth._dialect import COCKROACH
from bugless_core.migrations import LeaseLock
from bugless_dev.postgres import ThrowawayPostgres
from bugless_testing.lease_renewal import (
    check_a_bug_is_logged_as_one,
    check_an_outage_is_logged_as_one,
)


@pytest.fixture(scope="module")
async def database(postgres_server: ThrowawayPostgres) -> str:
    return await postgres_server.acreate_database("auth_migration_lease")


def _lock() -> LeaseLock:
    lock = COCKROACH.migration_lock
    assert isinstance(lock, LeaseLock)
    return lock


async def test_a_renewal_on_a_closed_connection_is_an_outage(database: str) -> None:
    await check_an_outage_is_logged_as_one(_lock(), database)


async def test_a_bug_on_the_renewals_path_is_logged_as_a_bug(database: str) -> None:
    await check_a_bug_is_logged_as_one(_lock(), database)
