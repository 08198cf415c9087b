"""What the Authenticator's tests share besides fixtures: a running server, its keys, names.

Kept out of ``conftest.py`` so that test modules import it by a name no other
test tree uses: pytest keeps one module named ``conftest``, so ``from conftest
import ...`` breaks as soon as two test trees run in one pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from grpclib.client import Channel
from prometheus_client import CollectorRegistry

import bugless_auth.plugin
from bugless_auth import disabling
from bugless_auth.runner import start_auth
from bugless_auth.service import AuthService
from bugless_auth.settings import AuthSettings, PasswordHashing, ThrottleSettings
from bugless_auth.store import IdentityStore, UserRecord
from bugless_auth.user_admin import create_local_user
from bugless_core.auth_backend import ExternalIdentity
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_core.plugins import load_plugins
from bugless_proto import v1
from bugless_testing.polling import eventually
from bugless_testing.program import BUGLESS_SCRIPT

#: Backends of the test's database waiting for a lock another one holds: the
#: lock's holder is $1 (its ``pg_backend_pid()``). ``pg_blocking_pids`` names
#: only backends that hold what is waited for, so a backend that connected
#: later is never seen.
WAITERS = """
SELECT DISTINCT pid FROM pg_locks WHERE NOT granted AND $1 = ANY(pg_blocking_pids(pid))
"""
#: A user's ($1) sessions that are not revoked nor expired.
LIVE_SESSIONS = """
SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
"""
#: A user's ($1) people-CA certificates that are not revoked nor expired.
LIVE_CERTIFICATES = """
SELECT count(*) FROM people_certificates
 WHERE user_id = $1 AND revoked_at IS NULL AND not_after > now()
"""

#: Cheap argon2 parameters: the tests check behaviour, not cost.
FAST_HASHING = PasswordHashing(time_cost=1, memory_kib=1024, parallelism=1)
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class KeyFiles:
    """Token keys on disk: two Ed25519 keys and one shared secret."""

    first: Path
    second: Path
    secret: Path


@dataclass
class AuthServer:
    """One running Authenticator and a client for it."""

    service: AuthService
    runner: GrpcServiceRunner
    channel: Channel
    settings: AuthSettings
    #: The registry its ``/metrics`` would serve.
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    stub: v1.AuthenticatorStub = field(init=False)

    def __post_init__(self) -> None:
        self.stub = v1.AuthenticatorStub(self.channel)

    @property
    def store(self) -> IdentityStore:
        return self.service.store

    @property
    def cli_env(self) -> dict[str, str]:
        """The environment of ``bugless auth`` commands on this server's database and schema."""
        return {
            **os.environ,
            "BUGLESS_AUTH_DATABASE_URL": self.settings.database_url,
            "BUGLESS_AUTH_SCHEMA": self.settings.schema,
        }

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


#: What a test's disable records on the sessions and certificates it ends.
TEST_ENDS = disabling.Ends(session_reason="disabled by a test", by="a test")


async def set_disabled(store: IdentityStore, username: str, disabled: bool = True) -> UserRecord:
    """Disable ``username`` (their sessions and certificates end with it) or re-enable them.

    Through :func:`bugless_auth.disabling.set_disabled`, the only way there is:
    a disable that left the user's sessions live is what no caller may do.
    """
    return (await disabling.set_disabled(store, username, disabled, TEST_ENDS)).record


def unique(prefix: str) -> str:
    """A username no other test uses."""
    return f"{prefix}-{secrets.token_hex(3)}"


def ldap_identity(
    name: str, display_name: str = "", *, groups: tuple[str, ...] = ()
) -> ExternalIdentity:
    """A person of the ldap backend as it hands them to the store: a subject stable for ``name``.

    ``display_name`` defaults to ``name.title()``; the same ``name`` is the
    same directory entry, so a second resolve is a returning person.
    """
    return ExternalIdentity(
        subject=f"ldap:{name}-uuid",
        username=name,
        display_name=display_name or name.title(),
        groups=groups,
    )


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
        metrics = CollectorRegistry()
        service, runner = await start_auth(
            plugins,
            AuthSettings(**values),
            GrpcServerSettings(insecure_local=True, drain_seconds=0, grace_seconds=1),
            metrics_registry=metrics,
        )
        server = AuthServer(
            service, runner, Channel("127.0.0.1", runner.port), service.settings, metrics
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.channel.close()
            await server.runner.close()
            await server.service.close()


@dataclass(frozen=True)
class UserCommands:
    """``bugless auth user COMMAND ...`` run as a subprocess, as an administrator would.

    The commands write to the schema of a running Authenticator, which must
    see what they wrote through the users' change feed: the tests of the
    commands and of what the server then shows share this.
    """

    env: dict[str, str]

    async def start(self, command: str, *args: str) -> asyncio.subprocess.Process:
        """``bugless auth user COMMAND ARGS`` started, its output piped (for a test that waits)."""
        return await asyncio.create_subprocess_exec(
            BUGLESS_SCRIPT,
            "auth",
            "user",
            command,
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def __call__(self, command: str, *args: str, status: int = 0) -> tuple[str, str]:
        """``bugless auth user COMMAND ARGS``, which must exit with ``status``: (stdout, stderr)."""
        process = await self.start(command, *args)
        async with asyncio.timeout(180):  # a CLI process imports a lot on a loaded machine
            stdout, stderr = await process.communicate()
        assert process.returncode == status, (args, stdout.decode(), stderr.decode())
        return stdout.decode(), stderr.decode()


def person_csr(
    *,
    common_name: str | None = None,
    san: str | None = None,
    ca: bool = False,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> str:
    """A PEM certificate signing request, as ``bugless login`` sends the people CA (a new key)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=False
        )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def certificate_der(pem: str) -> bytes:
    """The DER bytes of a PEM certificate, as a TLS handshake presents it."""
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


async def new_user_token(server: AuthServer, name: str, *, groups: tuple[str, ...] = ()) -> str:
    """Add the local user ``name`` to ``server`` and sign them in; their session's token."""
    await server.add_user(name, groups=groups)
    return (await server.sign_in(name)).token


async def terminate_the_waiter(connection: asyncpg.Connection, what: str) -> None:
    """End the one backend that waits on a lock ``connection`` holds, once there is one.

    Returns once that backend has ended, its transaction rolled back.
    """
    waiters: list[int] = []

    async def one_waits() -> bool:
        rows = await connection.fetch(WAITERS, connection.get_server_pid())
        waiters[:] = [row["pid"] for row in rows]
        if len(waiters) > 1:
            pytest.fail(f"{what}: {len(waiters)} backends wait on the test's lock: {rows}")
        return len(waiters) == 1

    await eventually(one_waits, what)
    assert await connection.fetchval("SELECT pg_terminate_backend($1)", waiters[0])

    async def gone() -> bool:
        # pg_stat_activity is read once per transaction unless the snapshot is cleared.
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        return not await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", waiters[0]
        )

    await eventually(gone, f"{what}: the terminated backend has ended")


async def admin_token(server: AuthServer) -> str:
    """The token of a new local user of ``server`` in the admins group, signed in."""
    return await new_user_token(server, unique("admin"), groups=("admins",))
