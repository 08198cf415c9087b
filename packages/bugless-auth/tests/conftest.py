"""Fixtures: one throwaway PostgreSQL per session, one Authenticator schema per server.

Every Authenticator a test starts gets a fresh schema in the session's
database, real backends from the real plugin, and a real gRPC socket; tests
talk to it through ``v1.AuthenticatorStub`` exactly as the frontends do.
What test modules import (the server, its keys, names) is in
``auth_support``, not here (see that module).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from auth_support import AuthServer, KeyFiles, StartAuth, UserCommands, start_auth_servers

from bugless_auth.tokens import generate_ed25519_pem

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
