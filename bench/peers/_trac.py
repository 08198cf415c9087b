"""Trac 1.6 (PyPI) on PostgreSQL, served by gunicorn.

Choices, from Trac's own documentation (the ``TracInstall``, ``TracModWSGI``
and ``TracPermissions`` wiki pages shipped in the package):

* Database: PostgreSQL through ``psycopg2-binary`` (``TracInstall``: SQLite,
  PostgreSQL or MySQL). SQLite would serialize the five writer processes on
  one file lock, and every other tracker here is on the same PostgreSQL
  server, so PostgreSQL is both Trac's multi-process choice and the fair one.
* Web: a WSGI server (``tracd`` is for testing): gunicorn with
  ``trac.web.main.dispatch_request`` as the application and the worker count
  gunicorn's documentation recommends, ``(2 x cores) + 1`` = 5 sync workers.
* Creates: the web form (Trac core has no REST or RPC API; the XML-RPC
  plugin is a third-party add-on): ``POST /newticket`` with the form token
  cookie/field pair Trac's CSRF check compares, as anonymous with
  ``TICKET_CREATE`` granted (``trac-admin permission add``).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.peers._peer import (
    CreateCall,
    Peer,
    ReadTargets,
    listening_socket,
    port_of,
    run,
    server_process,
)

VERSION = "1.6.*"
WORKERS = 5
LOADER = Path(__file__).with_name("_trac_load.py")
FORM_TOKEN = "bench0form0token0"


class TracPeer(Peer):
    """Trac with PostgreSQL under gunicorn."""

    name = "trac"
    serving = f"gunicorn, {WORKERS} sync workers; PostgreSQL"

    @property
    def venv(self) -> Path:
        return self.context.workdir / "trac-venv"

    @property
    def env_dir(self) -> Path:
        return self.home / "env"

    def install(self) -> None:
        python = self.venv / "bin" / "python"
        if not python.exists():
            run([sys.executable, "-m", "venv", self.venv])
        if (
            not (self.venv / "bin" / "trac-admin").exists()
            or not (self.venv / "bin" / "gunicorn").exists()
        ):
            run(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    f"Trac=={VERSION}",
                    "gunicorn",
                    "psycopg2-binary",
                ],
                log=self.home / "install.log",
            )

    def load(self) -> None:
        log = self.home / "load.log"
        admin = self.venv / "bin" / "trac-admin"
        cluster = self.context.cluster
        if not (self.env_dir / "VERSION").exists():
            cluster.recreate_database(self.database)
            run(
                [
                    admin,
                    self.env_dir,
                    "initenv",
                    "bench",
                    f"postgres://postgres@127.0.0.1:{cluster.port}/{self.database}?schema=public",
                ],
                log=log,
            )
            run([admin, self.env_dir, "permission", "add", "anonymous", "TICKET_CREATE"], log=log)
        run([self.venv / "bin" / "python", LOADER, self.env_dir, self.context.dataset_dir], log=log)

    def reset_creates(self) -> None:
        n = self.context.meta.issues
        self.context.cluster.psql(
            f"DELETE FROM ticket_change WHERE ticket > {n};"
            f"DELETE FROM ticket_custom WHERE ticket > {n};"
            f"DELETE FROM ticket WHERE id > {n};"
            f"SELECT setval('ticket_id_seq', {n});",
            database=self.database,
        )

    @contextmanager
    def serve(self) -> Iterator[str]:
        self._point_at_cluster()
        (self.home / "wsgi.py").write_text(
            "import os\n"
            f"os.environ['TRAC_ENV'] = {str(self.env_dir)!r}\n"
            "from trac.web.main import dispatch_request as application\n"
        )
        with listening_socket() as sock:
            base = f"http://127.0.0.1:{port_of(sock)}/"
            with server_process(
                [
                    self.venv / "bin" / "gunicorn",
                    "--workers",
                    str(WORKERS),
                    "--bind",
                    f"fd://{sock.fileno()}",
                    "--timeout",
                    "60",
                    "--chdir",
                    self.home,
                    "wsgi:application",
                ],
                log=self.home / "gunicorn.log",
                ready_url=base,
                pass_fds=[sock.fileno()],
            ):
                yield base

    def _point_at_cluster(self) -> None:
        """Name the cluster's current port in ``trac.ini`` (it may change between runs)."""
        ini = self.env_dir / "conf" / "trac.ini"
        cluster = self.context.cluster
        url = f"postgres://postgres@127.0.0.1:{cluster.port}/{self.database}?schema=public"
        lines = ini.read_text().splitlines(keepends=True)
        ini.write_text(
            "".join(
                f"database = {url}\n" if line.startswith("database = ") else line for line in lines
            )
        )

    def read_targets(self, base_url: str) -> ReadTargets:
        meta = self.context.meta
        columns = ["id", "summary", "status", "owner", "priority", "component", "modified"]
        listing = urlencode(
            [
                ("status", "!closed"),
                ("component", meta.list_component),
                ("order", "priority"),
                ("max", "50"),
            ]
            + [("col", c) for c in columns]
        )
        search = urlencode({"q": meta.search_word, "ticket": "on"})
        return ReadTargets(
            list_url=f"{base_url}query?{listing}",
            search_url=f"{base_url}search?{search}",
            issue_url=f"{base_url}ticket/{meta.long_issue}",
            # Trac's search lists a fixed 10 results per page.
            search10_url=f"{base_url}search?{search}",
        )

    def create_call(self, base_url: str) -> tuple[CreateCall, Callable[[], Awaitable[None]]]:
        meta = self.context.meta
        client = httpx.AsyncClient(
            base_url=base_url, timeout=60.0, cookies={"trac_form_token": FORM_TOKEN}
        )

        async def create(n: int) -> None:
            response = await client.post(
                "newticket",
                data={
                    "__FORM_TOKEN": FORM_TOKEN,
                    "field_summary": f"Bench create {n}: {meta.search_word} regression",
                    "field_description": f"Steps to reproduce {n}: run the {meta.search_word} job.",
                    "field_type": "bug",
                    "field_priority": "P2",
                    "field_component": meta.list_component,
                    "field_reporter": "user0042",
                    "submit": "Create ticket",
                },
            )
            if response.status_code != 303:
                msg = f"trac create: {response.status_code} {response.text[:300]}"
                raise RuntimeError(msg)

        return create, client.aclose
