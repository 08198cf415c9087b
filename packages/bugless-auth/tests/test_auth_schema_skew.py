"""A running Authenticator whose schema moves under it: the Model's rule, for its own schema.

docs/upgrades.md: the first replica of a newer release migrates the
Authenticator's schema while the old ones serve; they must serve on (ready,
a WARNING once, ``bugless_schema_version_skew`` above 0) and refuse only to
start again. A schema that falls behind the code (a restore of an older
backup) makes a replica not ready (an ERROR once, the gauge below 0) until
``migrate`` brings it back. The schema is changed under a real server on a
real PostgreSQL; readiness is read through its gRPC health service, the gauge
from the registry its ``/metrics`` serves.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest
from auth_support import AuthServer, StartAuth, unique

from bugless_auth.store import IdentityStore
from bugless_core.errors import FailedPrecondition
from bugless_core.migrations import load_migrations
from bugless_core.service_address import ServiceAddress
from bugless_dev.processes import check_grpc_health
from bugless_testing.health import health_until
from bugless_testing.schemas import (
    SKEW_LOGGER,
    assert_said_ahead,
    assert_said_behind_then_back,
    drop_schema,
    migrate_ahead,
    restore_older,
)

SERVICE = "bugless.v1.Authenticator"


def newest_version() -> int:
    return load_migrations("bugless_auth")[-1].version


def _skew(server: AuthServer) -> float | None:
    """``bugless_schema_version_skew`` of the server's schema, as its ``/metrics`` says."""
    return server.metrics.get_sample_value(
        "bugless_schema_version_skew", {"component": "bugless-auth", "schema": server.store.schema}
    )


async def test_a_replica_serving_when_a_newer_release_migrates_serves_on_until_restarted(
    start_auth_server: StartAuth, auth_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    schema = f"auth_rolling_{secrets.token_hex(3)}"
    server = await start_auth_server(schema=schema)
    address = ServiceAddress("127.0.0.1", server.runner.port)
    user = unique("rolling")
    await server.add_user(user)
    await health_until(address, SERVICE, "SERVING")
    assert _skew(server) == 0

    await migrate_ahead(auth_database, schema, newest_version() + 1)
    with caplog.at_level(logging.INFO, logger=SKEW_LOGGER):
        async with asyncio.timeout(15):
            while _skew(server) != 1:
                assert await check_grpc_health(address, SERVICE) == "SERVING"
                await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)  # one more readiness read: still said once
        assert await check_grpc_health(address, SERVICE) == "SERVING"

    assert_said_ahead(caplog.records, "bugless-auth", newest_version() + 1)
    signed_in = await server.sign_in(user)  # it serves on: reads and writes
    assert signed_in.identity is not None
    assert signed_in.identity.user is not None
    assert signed_in.identity.user.username == user
    with pytest.raises(FailedPrecondition, match="upgrade bugless"):
        await IdentityStore.open(auth_database, schema)


async def test_a_replica_whose_schema_falls_behind_its_code_is_not_ready_until_migrated(
    start_auth_server: StartAuth, auth_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The schema swapped under the replica for one a version older, as a restore does."""
    schema = f"auth_restored_{secrets.token_hex(3)}"
    server = await start_auth_server(schema=schema)
    address = ServiceAddress("127.0.0.1", server.runner.port)
    await health_until(address, SERVICE, "SERVING")
    aside = await restore_older(
        auth_database, schema, load_migrations("bugless_auth"), component="bugless-auth"
    )
    try:
        with caplog.at_level(logging.INFO, logger=SKEW_LOGGER):
            await health_until(address, SERVICE, "NOT_SERVING")
            assert _skew(server) == -1
            await asyncio.sleep(2.5)  # read again: still not ready, not said again
            assert await check_grpc_health(address, SERVICE) == "NOT_SERVING"
            await IdentityStore.migrate(auth_database, schema)
            await health_until(address, SERVICE, "SERVING")
        assert _skew(server) == 0
        assert_said_behind_then_back(caplog.records, "bugless-auth", newest_version())
    finally:
        await drop_schema(auth_database, aside)
