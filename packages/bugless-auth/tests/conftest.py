"""Fixtures: one throwaway PostgreSQL per session, one Authenticator schema per server.

Every Authenticator a test starts gets a fresh schema in the session's
database, real backends from the real plugin, and a real gRPC socket; tests
talk to it through ``v1.AuthenticatorStub`` exactly as the frontends do.
What test modules import (the server, its keys, names) is in
``auth_support``, not here (see that module); the fixtures several modules
use (a people CA, two replicas of one schema and a connection of the test's
to it) are here.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
import trustme
from auth_support import AuthServer, KeyFiles, StartAuth, UserCommands, start_auth_servers

from bugless_auth.settings import PeopleCaSettings
from bugless_auth.tokens import generate_ed25519_pem
from bugless_core.migrations import quote_schema
from bugless_testing.polling import eventually

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

pytest_plugins = [
    "bugless_testing.postgres",
    "bugless_testing.auth_contracts.plugin",
    "bugless_testing.oidc_provider",
    "bugless_testing.slapd",
    "bugless_testing.slapd_replica",
]


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    root = tmp_path_factory.mktemp("keys")
    files = KeyFiles(root / "first.pem", root / "second.pem", root / "secret.key")
    files.first.write_bytes(generate_ed25519_pem())
    files.second.write_bytes(generate_ed25519_pem())
    files.secret.write_text(secrets.token_urlsafe(48))
    return files


@pytest.fixture(scope="session")
async def auth_database(postgres_server: ThrowawayPostgres) -> str:
    """DSN of the session's Authenticator database (schemas per server)."""
    return await postgres_server.acreate_database("auth")


@pytest.fixture
async def start_auth_server(auth_database: str, key_files: KeyFiles) -> AsyncIterator[StartAuth]:
    """Start Authenticators on fresh schemas (or a given one); all stopped at teardown."""
    async with start_auth_servers(key_files, database_url=auth_database) as start:
        yield start


@pytest.fixture
async def auth(start_auth_server: StartAuth) -> AuthServer:
    """An Authenticator with the local backend on a fresh schema."""
    return await start_auth_server()


@pytest.fixture
def user_commands(auth: AuthServer) -> UserCommands:
    """``bugless auth user ...`` as a subprocess on ``auth``'s database and schema."""
    return UserCommands(auth.cli_env)


@pytest.fixture
def people_ca_settings(tmp_path: Path) -> PeopleCaSettings:
    """A people CA of the test's own (trustme): 1 h certificates, 2 h at most, 3 an hour."""
    ca = trustme.CA(organization_name="bugless people CA")
    cert, key = tmp_path / "people-ca.pem", tmp_path / "people-ca.key"
    ca.cert_pem.write_to_path(str(cert))
    ca.private_key_pem.write_to_path(str(key))
    return PeopleCaSettings(
        cert_file=cert, key_file=key, default_seconds=3600, max_seconds=7200, issue_per_hour=3
    )


#: Longer than a test on ``two_replicas``: a replica's follower reads at its start, then not again.
SLOW_POLL_SECONDS = 60.0


@pytest.fixture
async def two_replicas(
    start_auth_server: StartAuth, people_ca_settings: PeopleCaSettings
) -> tuple[AuthServer, AuthServer]:
    """Two replicas of one schema whose followers read at their start only (then 60 s on)."""
    first = await start_auth_server(
        user_changes_seconds=SLOW_POLL_SECONDS, people_ca=people_ca_settings
    )
    second = await start_auth_server(
        schema=first.settings.schema,
        user_changes_seconds=SLOW_POLL_SECONDS,
        people_ca=people_ca_settings,
    )

    async def both_follow() -> bool:  # what they look up from now on is kept
        return first.service.directory.following.following and (
            second.service.directory.following.following
        )

    await eventually(both_follow, "both replicas' followers made their first read")
    return first, second


@pytest.fixture
async def lock_connection(
    two_replicas: tuple[AuthServer, AuthServer],
) -> AsyncIterator[asyncpg.Connection]:
    """The test's own connection to the replicas' schema (for locks and the disable)."""
    first = two_replicas[0]
    opened = await asyncpg.connect(
        first.settings.database_url,
        server_settings={"search_path": quote_schema(first.settings.schema)},
    )
    try:
        yield opened
    finally:
        await opened.close()
