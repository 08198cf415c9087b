"""Fixtures: the database the cockroach backend runs on, and the backend.

Without ``BUGLESS_TEST_COCKROACH_URL`` the backend runs in compatibility mode:
a throwaway PostgreSQL (``bugless_testing.postgres``) whose test database
defaults to SERIALIZABLE, as CockroachDB does. With it set (a CockroachDB 23.2+
URL whose user may create schemas), the same tests run against that cluster,
each session in a fresh schema.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bugless_core.model.backend import ModelSettings
from bugless_model_cockroach import CockroachBackend
from bugless_model_postgres.blobs import DatabaseBlobStore
from bugless_testing.cockroach_sql import StatementRecorder, serializable_database
from bugless_testing.model_backends import opened_model

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

pytest_plugins = ["bugless_testing.plugin", "bugless_testing.postgres"]

COCKROACH_URL = "BUGLESS_TEST_COCKROACH_URL"
SECRET = "test-page-token-secret-0123456789"


@pytest.fixture(scope="session")
def make_serializable_database(
    postgres_server: ThrowawayPostgres,
) -> Callable[[str], Awaitable[str]]:
    """Makes fresh SERIALIZABLE PostgreSQL databases (tests of compatibility mode itself)."""
    return lambda name: serializable_database(postgres_server, name)


@pytest.fixture(scope="session")
async def database_url(request: pytest.FixtureRequest) -> str:
    """A real cluster's URL, or a SERIALIZABLE PostgreSQL database (compatibility mode)."""
    url = os.environ.get(COCKROACH_URL)
    if url:
        return url
    server: ThrowawayPostgres = request.getfixturevalue("postgres_server")
    return await serializable_database(server, "cockroach_compat")


@pytest.fixture(scope="session")
def model_settings(database_url: str) -> ModelSettings:
    """Settings of the conformance database (a fresh schema per session)."""
    schema = f"bugless_{uuid.uuid4().hex[:8]}" if os.environ.get(COCKROACH_URL) else "bugless"
    return ModelSettings(
        database_url=database_url, page_token_secret=SECRET, pool_max_size=20, schema=schema
    )


@pytest.fixture(scope="session")
async def bugless_model_backend(
    model_settings: ModelSettings, cockroach_statements: StatementRecorder
) -> AsyncIterator[CockroachBackend]:
    """The backend under test: migrated, open, holding a node id.

    Its connections are opened under the session's statement recorder, so
    every statement any contract makes it send is checked at the end.
    """
    await CockroachBackend.migrate(model_settings)
    async with opened_model(CockroachBackend, model_settings, DatabaseBlobStore) as backend:
        yield backend


#: The session's recorder (:func:`cockroach_statements`), once a test asked for it.
_SESSION_RECORDER: list[StatementRecorder] = []


@pytest.fixture(scope="session")
def cockroach_statements() -> Iterator[StatementRecorder]:
    """Every statement the session's backend sends; none may be one CockroachDB lacks.

    Checked when the session ends (a failure shows as an error in the
    teardown of the session's last test). It records only while this
    directory's tests run (:func:`pytest_runtest_setup`,
    :func:`pytest_runtest_teardown`): a recorder records every asyncpg
    connection opened while it is active, so left on past them it took in the
    PostgreSQL backend's own statements when the model-postgres tests ran in
    the same pytest, and failed their last test's teardown.
    """
    with StatementRecorder() as recorder:
        _SESSION_RECORDER.append(recorder)
        try:
            yield recorder
        finally:
            _SESSION_RECORDER.remove(recorder)
    assert recorder.incompatibilities() == {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Record again as one of this directory's tests starts (before its fixtures open connections).

    A conftest's hooks are called for the tests under it only, so this and
    :func:`pytest_runtest_teardown` bracket this package's tests.
    """
    for recorder in _SESSION_RECORDER:
        with contextlib.suppress(RuntimeError):  # recording already
            recorder.__enter__()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop recording new connections when the next test is another directory's.

    Connections opened here keep being recorded: they are this package's.
    """
    if nextitem is not None and nextitem.path.is_relative_to(Path(__file__).parent):
        return
    for recorder in _SESSION_RECORDER:
        recorder.__exit__(None, None, None)
