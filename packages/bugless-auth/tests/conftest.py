"""Fixtures: one throwaway PostgreSQL per session, one Authenticator schema per server.

Every Authenticator a test starts gets a fresh schema in the session's
database, real backends from the real plugin, and a real gRPC socket; tests
talk to it through ``v1.AuthenticatorStub`` exactly as the frontends do.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from grpclib.client import Channel
from prometheus_client import CollectorRegistry

import bugless_auth.plugin
from bugless_auth.runner import start_auth
from bugless_auth.service import AuthService
from bugless_auth.settings import AuthSettings, PasswordHashing, ThrottleSettings
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.tokens import generate_ed25519_pem
from bugless_auth.user_admin import create_local_user
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_core.plugins import load_plugins
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

pytest_plugins = [
    "bugless_testing.postgres",
    "bugless_testing.auth_contracts.plugin",
    "bugless_testing.oidc_provider",
    "bugless_testing.slapd",
    "bugless_testing.slapd_replica",
]

#: Cheap argon2 parameters: the tests check behaviour, not cost.
FAST_HASHING = PasswordHashing(time_cost=1, memory_kib=1024, parallelism=1)
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class KeyFiles:
    """Token keys on disk: two Ed25519 keys and one shared secret."""

    first: Path
    second: Path
    secret: Path


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


@dataclass
class AuthServer:
    """One running Authenticator and a client for it."""

    service: AuthService
    runner: GrpcServiceRunner
    channel: Channel
    settings: AuthSettings
    stub: v1.AuthenticatorStub = field(init=False)

    def __post_init__(self) -> None:
        self.stub = v1.AuthenticatorStub(self.channel)

    @property
    def store(self) -> IdentityStore:
        return self.service.store

    async def add_user(
        self,
        username: str,
        *,
        password: str = PASSWORD,
        groups: Iterable[str] = (),
        display_name: str = "",
        email: str = "",
    ) -> UserRecord:
        """Add a local user straight to the store (as ``bugless auth user add`` does)."""
        return await create_local_user(
            self.store,
            self.service.hashes,
            username=username,
            display_name=display_name,
            email=email,
            password=password,
            groups=list(groups),
            min_password_length=1,
        )

    async def sign_in(self, username: str, password: str = PASSWORD) -> v1.AuthenticationResult:
        return await self.stub.authenticate_password(
            v1.AuthenticatePasswordRequest(username=username, password=password)
        )


StartAuth = Callable[..., Awaitable[AuthServer]]


def unique(prefix: str) -> str:
    """A username no other test uses."""
    return f"{prefix}-{secrets.token_hex(3)}"


@contextlib.asynccontextmanager
async def start_auth_servers(key_files: KeyFiles, **defaults: Any) -> AsyncIterator[StartAuth]:
    """Start Authenticators on fresh schemas (or a given one); all stopped on exit.

    ``defaults`` are settings every server gets unless a call overrides them
    (``database_url`` is required; ``database_dialect`` picks the store's).
    """
    started: list[AuthServer] = []

    async def start(
        *,
        schema: str | None = None,
        extra_plugins: Iterable[ModuleType | object] = (),
        **overrides: Any,
    ) -> AuthServer:
        schema = schema or f"auth_{secrets.token_hex(4)}"
        values: dict[str, Any] = {
            "schema": schema,
            "token_keys": (key_files.first,),
            "hashing": FAST_HASHING,
            "throttle": ThrottleSettings(per_user_limit=50, per_address_limit=500),
            "pool_max_size": 4,
            **defaults,
        }
        values.update(overrides)
        await IdentityStore.migrate(
            values["database_url"], schema, dialect=values.get("database_dialect", "postgres")
        )
        plugins = load_plugins(entry_points=False, extra=[bugless_auth.plugin, *extra_plugins])
        service, runner = await start_auth(
            plugins,
            AuthSettings(**values),
            GrpcServerSettings(insecure_local=True, drain_seconds=0, grace_seconds=1),
            metrics_registry=CollectorRegistry(),
        )
        server = AuthServer(service, runner, Channel("127.0.0.1", runner.port), service.settings)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.channel.close()
            await server.runner.close()
            await server.service.close()


@pytest.fixture
async def start_auth_server(auth_database: str, key_files: KeyFiles) -> AsyncIterator[StartAuth]:
    """Start Authenticators on fresh schemas (or a given one); all stopped at teardown."""
    async with start_auth_servers(key_files, database_url=auth_database) as start:
        yield start


@pytest.fixture
async def auth(start_auth_server: StartAuth) -> AuthServer:
    """An Authenticator with the local backend on a fresh schema."""
    return await start_auth_server()
