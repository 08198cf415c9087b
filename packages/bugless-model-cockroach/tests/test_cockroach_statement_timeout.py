"""The cockroach backend's connections carry ``--statement-timeout-seconds`` too.

It opens its pool through the PostgreSQL backend's (``server_settings``), so
the bound is a startup parameter of each connection: a statement running
past it is cancelled and answered UNAVAILABLE, and shorter ones run. On a
real cluster (``BUGLESS_TEST_COCKROACH_URL``) this checks CockroachDB's own
``statement_timeout``; without it, compatibility mode.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from bugless_core.errors import Unavailable
from bugless_core.model.backend import ModelSettings
from bugless_model_cockroach import CockroachBackend
from bugless_model_postgres.blobs import DatabaseBlobStore
from bugless_model_postgres.seam import translated_errors
from bugless_testing.model_backends import opened_model


async def test_a_statement_past_the_setting_is_cancelled_as_unavailable(
    model_settings: ModelSettings, bugless_model_backend: CockroachBackend
) -> None:
    settings = dataclasses.replace(model_settings, statement_timeout_seconds=0.3)
    async with (
        opened_model(CockroachBackend, settings, DatabaseBlobStore) as backend,
        backend._pool.acquire() as conn,
    ):
        began = time.monotonic()
        with pytest.raises(Unavailable, match="ran too long"):
            async with translated_errors():
                await conn.execute("SELECT pg_sleep(30)")
        # Cut at the setting: far short of the statement's 30 s, with room
        # for a loaded machine (the cut arriving late is no failure of it).
        assert 0.3 <= time.monotonic() - began < 15
        assert await conn.fetchval("SELECT pg_sleep(0.05) IS NOT NULL")
