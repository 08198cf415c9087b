"""One Authenticator in the bench's own process: the scaffolding of the Authenticator benchmarks.

:mod:`bench.auth_lookup` and :mod:`bench.issue_assertion` both time calls to
an Authenticator started in-process (``start_auth``, as ``bugless auth
serve`` starts it) on a throwaway PostgreSQL, from a grpclib client over
loopback, so the figures include the client's encode and decode and the
loopback round trip. Password hashing is made cheap: adding the users is
set-up, not what is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpclib.client import Channel
from prometheus_client import CollectorRegistry

import bugless_auth.plugin
from bugless_auth.runner import start_auth
from bugless_auth.service import AuthService
from bugless_auth.settings import AuthSettings, PasswordHashing
from bugless_auth.store import IdentityStore
from bugless_auth.tokens import generate_ed25519_pem
from bugless_auth.user_admin import create_local_user
from bugless_core.grpc import GrpcServerSettings, GrpcServiceRunner
from bugless_core.plugins import load_plugins
from bugless_dev.postgres import start_postgres

#: The database (and schema) the Authenticator benchmarks run on.
DATABASE = "bench_auth"
#: Every bench user's password.
PASSWORD = "bench-password"


@dataclass(frozen=True)
class ServedAuth:
    """A running Authenticator and a client channel to it.

    Attributes:
        service: The servicer, for its store, hashes and session store.
        runner: The gRPC server serving it on a loopback port.
        channel: A plaintext channel to that port.
    """

    service: AuthService
    runner: GrpcServiceRunner
    channel: Channel

    async def add_users(self, count: int) -> list[str]:
        """Create ``user0`` .. ``user<count-1>`` (group ``eng``); their ids, in order."""
        ids = []
        for i in range(count):
            record = await create_local_user(
                self.service.store,
                self.service.hashes,
                username=f"user{i}",
                display_name=f"User {i}",
                email=f"user{i}@example.org",
                password=PASSWORD,
                groups=["eng"],
                min_password_length=1,
            )
            ids.append(record.user_id)
        return ids


@contextlib.asynccontextmanager
async def served_auth(database_url: str, key: Path) -> AsyncIterator[ServedAuth]:
    """An Authenticator on a freshly migrated :data:`DATABASE` schema, closed on exit."""
    await IdentityStore.migrate(database_url, DATABASE)
    settings = AuthSettings(
        database_url=database_url,
        schema=DATABASE,
        token_keys=(key,),
        hashing=PasswordHashing(time_cost=1, memory_kib=1024, parallelism=1),
        cache_ttl_seconds=3600,
    )
    plugins = load_plugins(entry_points=False, extra=[bugless_auth.plugin])
    service, runner = await start_auth(
        plugins,
        settings,
        GrpcServerSettings(insecure_local=True, drain_seconds=0, grace_seconds=1),
        metrics_registry=CollectorRegistry(),
    )
    channel = Channel("127.0.0.1", runner.port)
    try:
        yield ServedAuth(service, runner, channel)
    finally:
        channel.close()
        await runner.close()
        await service.close()


def run_on_postgres(bench: Callable[[str, Path], Coroutine[Any, Any, None]]) -> None:
    """Run ``bench(database_url, token_key)`` on a throwaway PostgreSQL, stopped after."""
    server = start_postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "key.pem"
            key.write_bytes(generate_ed25519_pem())
            url = server.create_database(DATABASE)
            asyncio.run(bench(url, key))
    finally:
        server.stop()
