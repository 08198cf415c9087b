"""The Model as deployed, for :mod:`bench.search`: ``bugless model serve`` subprocesses.

:mod:`bench.search`'s ``grpc`` mode starts the Model service inside the
bench process (``start_model``), so the clients' decoding and the Model's
work share one Python process, one event loop and one core: with 8 clients
every page waits for every other page's Python, which a deployment never
does (the Model is its own process, ``bugless model serve``, reached over
mutual TLS). Mode ``served`` measures that: the Model (one or more
processes sharing a port with ``--reuse-port``, one per core as a
single-machine deployment runs them) and an Authenticator (whose keys the
Model verifies identity assertions with) started by the one local-stack
library (:class:`bugless_dev.stack.LocalStack`: ``--port 0`` and a ready
file, the stack's PKI, the web tier's service certificate on the client
side), on the seeded database; the Authenticator gets a fresh database on
the same server, dropped at the end. Each call carries an identity
assertion for the bench's caller (``user0042``, group ``eng``) signed with
the stack's token key, as the web tier's calls carry the one the
Authenticator issued.
"""

from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from grpclib.client import Channel

from bugless_core.clients import acting_as
from bugless_dev.pki import LocalPki
from bugless_dev.stack import LocalStack, RunningService, StackConfig
from bugless_proto import v1


async def fresh_database(server_url: str, name: str) -> str:
    """A new empty database ``name`` on the server of ``server_url``; its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` on the server of ``server_url`` (its sessions ended first)."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class ServedModel:
    """The Model as ``bugless model serve`` processes and an Authenticator, all running.

    Attributes:
        stack: The local stack that started them.
        models: The Model processes (they share one port).
        assertion: The identity assertion each call carries.
    """

    stack: LocalStack
    models: list[RunningService]
    assertion: str
    #: Models of older checkouts on the same database, by label (``--before``).
    befores: dict[str, RunningService]
    _server_url: str
    _auth_database: str
    _temporary: tempfile.TemporaryDirectory[str]

    @classmethod
    async def start(
        cls,
        database_url: str,
        caller: v1.Caller,
        *,
        processes: int = 1,
        env: dict[str, str],
        befores: Mapping[str, tuple[str, str]] | None = None,
    ) -> ServedModel:
        """The Authenticator, then ``processes`` Model processes on ``database_url``.

        ``env`` adds to the services' environment (``BUGLESS_LOG_LEVEL``...).
        ``befores`` maps a label to an older checkout's ``packages/*/src`` (a
        ``PYTHONPATH``) and a database URL: one more Model process each
        (``model-LABEL``), that code on that database ("": this one), so old
        and new are measured under the same load. A Model serves only the
        schema version its code ships, so a checkout before a migration needs
        a database of its own, seeded by its own ``bench.seed`` (the same
        data: the seed is a pure function of ``--seed``).
        """
        auth_database = f"bench_search_auth_{int(time.time())}"
        auth_url = await fresh_database(database_url, auth_database)
        temporary = tempfile.TemporaryDirectory(prefix="bugless-bench-search-")
        directory = Path(temporary.name)
        stack = seeded_stack(directory, database_url, auth_url, env)
        try:
            models = await asyncio.to_thread(_start, stack, processes)
            started = {
                label: await asyncio.to_thread(
                    stack.start,
                    "model",
                    ["model", "serve", "--port", "0"],
                    name=f"model-{label}",
                    env={"PYTHONPATH": path, "BUGLESS_DATABASE_URL": url or database_url},
                )
                for label, (path, url) in (befores or {}).items()
            }
        except BaseException:
            await asyncio.to_thread(stack.stop)
            temporary.cleanup()
            await drop_database(database_url, auth_database)
            raise
        assertion = stack.assertion_for(caller.user_id, groups=list(caller.groups))
        return cls(stack, models, assertion, started, database_url, auth_database, temporary)

    @property
    def pids(self) -> list[int]:
        """The Model processes' ids (for their CPU time)."""
        return [m.process.pid for m in self.models]

    def channels(self, count: int, before: str = "") -> list[Channel]:
        """``count`` channels to the Model as the web tier opens them (mutual TLS, corked).

        ``before`` names one of :attr:`befores` ("" the current code's Model).
        """
        address = (
            self.befores[before].address if before else self.stack.client_address("model", "web")
        )
        assert address is not None
        return [address.channel() for _ in range(count)]

    def call(
        self, stub: v1.ModelStub, request: v1.SearchIssuesRequest
    ) -> Callable[[], Awaitable[v1.SearchIssuesResponse]]:
        """A SearchIssues call of ``request`` carrying the caller's assertion."""
        return functools.partial(_acting, self.assertion, stub, request)

    async def stop(self) -> None:
        """Stop the services and drop the Authenticator's database."""
        try:
            await asyncio.to_thread(self.stack.stop)
        finally:
            self._temporary.cleanup()
            await drop_database(self._server_url, self._auth_database)


async def _acting(
    assertion: str, stub: v1.ModelStub, request: v1.SearchIssuesRequest
) -> v1.SearchIssuesResponse:
    with acting_as(assertion):
        return await stub.search_issues(request)


def seeded_stack(
    directory: Path, database_url: str, auth_url: str, env: Mapping[str, str]
) -> LocalStack:
    """The stack of the benches on a seeded database (this module's and ``bench.web_search``).

    The Model serves the seeded database, the Authenticator a fresh one of
    its own; the services log warnings only, so their output does not cost
    what is measured.
    """
    return LocalStack(
        StackConfig(
            directory=directory,
            pki=LocalPki.open(directory / "pki"),
            model_database_url=database_url,
            auth_database_url=auth_url,
            extra_env={"BUGLESS_LOG_LEVEL": "WARNING", **env},
        )
    )


def _start(stack: LocalStack, processes: int) -> list[RunningService]:
    """Migrate (a no-op on a seeded database), start the Authenticator and the Models."""
    stack.migrate()
    stack.start_auth()
    reuse = ["--reuse-port"] if processes > 1 else []
    first = stack.start_model(*reuse)
    models = [first]
    for _ in range(processes - 1):
        args = ["model", "serve", "--port", str(first.port), *reuse]
        models.append(stack.start("model", args))
    return models


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def postgres_cpu(conn: asyncpg.Connection, databases: Sequence[str] = ()) -> dict[int, float]:
    """CPU seconds of each server process serving this database (but ``conn``'s own).

    ``databases`` names more databases of the server to count (the older
    Models' of ``bench.search --before``).
    """
    pids = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE (datname = current_database() "
        "OR datname = ANY ($1::text[])) AND pid <> pg_backend_pid()",
        list(databases),
    )
    return {r["pid"]: process_cpu(r["pid"]) for r in pids}
