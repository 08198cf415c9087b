"""Fixtures: one throwaway PostgreSQL per session, one migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres.blobs import DatabaseBlobStore
from bugless_testing.model_backends import opened_model

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

pytest_plugins = ["bugless_testing.plugin", "bugless_testing.postgres"]

SECRET = "test-page-token-secret-0123456789"


@pytest.fixture(scope="session")
async def model_settings(postgres_server: ThrowawayPostgres) -> ModelSettings:
    """Settings of the database the conformance suite runs on."""
    url = await postgres_server.acreate_database("model_conformance")
    return ModelSettings(database_url=url, page_token_secret=SECRET, pool_max_size=20)


@pytest.fixture(scope="session")
async def bugless_model_backend(model_settings: ModelSettings) -> AsyncIterator[PostgresBackend]:
    """The backend under test: fresh database, migrated, open."""
    await PostgresBackend.migrate(model_settings)
    async with opened_model(PostgresBackend, model_settings, DatabaseBlobStore) as backend:
        yield backend


@pytest.fixture
async def replica(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> AsyncIterator[PostgresBackend]:
    """A second Model on the same database (another replica), with its own blob store."""
    del bugless_model_backend  # only its migration
    async with opened_model(PostgresBackend, model_settings, DatabaseBlobStore) as backend:
        yield backend
