"""The one PostgreSQL cluster every tracker in the comparison stores its data in.

Trac, Roundup, Redmine and bugless each get a database on the same server
with the same settings, so the database is not a variable between rows of the
table. The cluster is Debian's PostgreSQL 15 (the version Redmine 5.0's
Debian package is built and tested against), kept in ``<workdir>/pgdata`` so a
loaded data set survives between runs, and started and stopped around each
run. Settings follow the PostgreSQL manual's advice for a dedicated server of
this size (``shared_buffers`` a quarter of the memory the benchmark can spare,
``effective_cache_size`` larger); durability is left at its defaults
(``fsync`` and ``synchronous_commit`` on), as any production tracker runs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bugless_dev.processes import unused_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: Attempts at a free port when the cluster's port was taken by another process.
PORT_ATTEMPTS = 5
HOST = "127.0.0.1"
SETTINGS = {
    "shared_buffers": "1GB",
    "effective_cache_size": "4GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "256MB",
    "max_connections": "200",
    "listen_addresses": HOST,
}


def _as_postgres(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a server binary as the ``postgres`` system user (the server refuses root)."""
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


@dataclass
class Cluster:
    """The shared server: where it lives and how to reach a database on it.

    Attributes:
        data_dir: The cluster directory (owned by ``postgres``).
        port: TCP port on 127.0.0.1, known once :meth:`start` returned: the one
            the cluster last ran on (kept in its ``postgresql.conf``), or another
            free one if something else took it since.
    """

    data_dir: Path
    port: int = 0

    def url(self, database: str) -> str:
        """A libpq URL for ``database`` as the superuser (trust auth on loopback)."""
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def start(self) -> None:
        """Create the cluster on first use, then start it (idempotent)."""
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(self.data_dir, "postgres", "postgres")
            _as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            )
            conf = "".join(f"{k} = '{v}'\n" for k, v in SETTINGS.items())
            conf += f"port = {unused_port()}\nunix_socket_directories = ''\n"
            with (self.data_dir / "postgresql.conf").open("a") as out:
                out.write(conf)
        self.port = self._configured_port()
        if self.running():
            return
        for attempt in range(PORT_ATTEMPTS):
            started = _as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.data_dir / "server.log"),
                "-w",
                "start",
                check=False,
            )
            if started.returncode == 0:
                return
            log = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
            if "could not bind" not in log or attempt + 1 == PORT_ATTEMPTS:
                msg = f"PostgreSQL did not start: {started.stdout}{started.stderr}\n{log}"
                raise RuntimeError(msg)
            # Taken since the last run (PostgreSQL binds only a port it is told):
            # another free port, kept for the next runs.
            self.port = unused_port()
            with (self.data_dir / "postgresql.conf").open("a") as out:
                out.write(f"port = {self.port}\n")

    def _configured_port(self) -> int:
        """The last ``port =`` line of ``postgresql.conf`` (the one that counts)."""
        text = (self.data_dir / "postgresql.conf").read_text()
        ports = re.findall(r"^port = (\d+)", text, flags=re.MULTILINE)
        return int(ports[-1])

    def running(self) -> bool:
        """Whether the server is up."""
        return (
            _as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "status", check=False
            ).returncode
            == 0
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown), if it runs."""
        if self.running():
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql; return its unaligned, tuples-only output."""
        result = subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.url(database), "-c", sql],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        return result.stdout.strip()

    def has_database(self, name: str) -> bool:
        """Whether database ``name`` exists."""
        return self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"

    def recreate_database(self, name: str) -> str:
        """Drop ``name`` if it exists, create it empty; return its URL."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-h", HOST, "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ok.returncode == 0:
                return
            time.sleep(0.2)
        msg = f"PostgreSQL on port {self.port} not ready after {timeout:.0f}s"
        raise RuntimeError(msg)
