"""Roundup 2.6 (PyPI): the classic template on PostgreSQL, served by gunicorn.

Choices, from Roundup's own documentation (``doc/installation.txt``):

* Backend: ``postgresql`` (the backend table lists it "Fast", for "Many"
  users, where ``sqlite`` is "not suitable for trackers which will have many
  (50+) users simultaneous updating data"), with the database-native full
  text search ``indexer = native-fts`` (admin guide, "Configuring native-fts
  Full Text Search") rather than the pure-Python default indexer.
* Web: "WSGI server like Gunicorn" with ``frontends/wsgi.py``'s
  ``RequestDispatcher``; gunicorn with the worker count gunicorn's
  documentation recommends, ``(2 x cores) + 1`` = 5 sync workers on 2 cores.
* API for creates: the REST interface (``doc/rest.txt``): the description
  is a ``msg`` (``POST /rest/data/msg``), then ``POST /rest/data/issue``
  links it; authenticated by the session cookie of one web sign-in, the ``X-Requested-With``
  and ``Origin`` headers its CSRF defences require, and JSON.

The ``classic`` schema has no components, so ``component`` is added as a
keyed class linked from ``issue`` and viewable like ``priority``.
"""

from __future__ import annotations

import re
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

VERSION = "2.6.*"
WORKERS = 5
PASSWORD = "bench-password-0123"
BENCH_USER = "bench"
LOADER = Path(__file__).with_name("_roundup_load.py")

_SCHEMA_PATCHES = (
    (
        'keyword.setkey("name")\n',
        'keyword.setkey("name")\n\n'
        'component = Class(db, "component", name=String())\n'
        'component.setkey("name")\n',
    ),
    (
        'issue = IssueClass(db, "issue",\n',
        'issue = IssueClass(db, "issue",\n                component=Link("component"),\n',
    ),
    ("for cl in 'priority', 'status':\n", "for cl in 'priority', 'status', 'component':\n"),
    (
        "for cl in 'issue', 'file', 'msg', 'keyword', 'priority', 'status':\n",
        "for cl in 'issue', 'file', 'msg', 'keyword', 'priority', 'status', 'component':\n",
    ),
)


class RoundupPeer(Peer):
    """Roundup with PostgreSQL and native full-text search under gunicorn."""

    name = "roundup"
    serving = f"gunicorn, {WORKERS} sync workers; PostgreSQL, native-fts"

    @property
    def venv(self) -> Path:
        return self.context.workdir / "roundup-venv"

    @property
    def tracker(self) -> Path:
        return self.home / "tracker"

    def install(self) -> None:
        python = self.venv / "bin" / "python"
        if not python.exists():
            run([sys.executable, "-m", "venv", self.venv])
        if (
            not (self.venv / "bin" / "roundup-admin").exists()
            or not (self.venv / "bin" / "gunicorn").exists()
        ):
            run(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    f"roundup=={VERSION}",
                    "gunicorn",
                    "psycopg2-binary",
                ],
                log=self.home / "install.log",
            )

    def _configure(self, web_port: int = 0) -> None:
        schema = self.tracker / "schema.py"
        text = schema.read_text()
        if "component = Class" not in text:
            for old, new in _SCHEMA_PATCHES:
                if old not in text:
                    msg = f"roundup classic schema changed: {old!r} not found"
                    raise RuntimeError(msg)
                text = text.replace(old, new, 1)
            schema.write_text(text)
        port = str(self.context.cluster.port)
        settings = {
            ("tracker", "web"): f"http://127.0.0.1:{web_port}/",
            ("main", "indexer"): "native-fts",
            ("rdbms", "name"): self.database,
            ("rdbms", "host"): "127.0.0.1",
            ("rdbms", "port"): port,
            ("rdbms", "user"): "postgres",
            ("mail", "debug"): str(self.home / "outgoing-mail.txt"),
            ("mail", "domain"): "bench.invalid",
            ("mail", "host"): "127.0.0.1",
        }
        config = self.tracker / "config.ini"
        lines = config.read_text().splitlines(keepends=True)
        section = ""
        for i, line in enumerate(lines):
            if m := re.match(r"\[(\w+)\]", line):
                section = m.group(1)
            if m := re.match(r"#?\s*(\w+) = ", line):
                key = m.group(1)
                if (section, key) in settings and (line.startswith(key) or "NO DEFAULT" in line):
                    lines[i] = f"{key} = {settings[section, key]}\n"
        config.write_text("".join(lines))

    def load(self) -> None:
        admin = self.venv / "bin" / "roundup-admin"
        log = self.home / "load.log"
        if not (self.tracker / "config.ini").exists():
            run([admin, "-i", self.tracker, "install", "classic", "postgresql"], log=log)
        self._configure()
        if not self.context.cluster.has_database(self.database):
            run([admin, "-i", self.tracker, "initialise", PASSWORD], log=log)
        run(
            [
                self.venv / "bin" / "python",
                LOADER,
                self.tracker,
                self.context.dataset_dir,
                PASSWORD,
            ],
            log=log,
        )

    def reset_creates(self) -> None:
        n = self.context.meta.issues
        self.context.cluster.psql(
            f"DELETE FROM issue_messages WHERE nodeid > {n};"
            f"DELETE FROM issue_nosy WHERE nodeid > {n};"
            f"DELETE FROM issue__journal WHERE nodeid > {n};"
            f"DELETE FROM _issue WHERE id > {n};"
            f"SELECT setval('_issue_ids', {n});",
            database=self.database,
        )

    @contextmanager
    def serve(self) -> Iterator[str]:
        with listening_socket() as sock:
            base = f"http://127.0.0.1:{port_of(sock)}/"
            self._configure(port_of(sock))
            (self.home / "wsgi.py").write_text(
                "from roundup.cgi.wsgi_handler import RequestDispatcher\n"
                f"app = RequestDispatcher({str(self.tracker)!r})\n"
            )
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
                    "wsgi:app",
                ],
                log=self.home / "gunicorn.log",
                ready_url=base,
                pass_fds=[sock.fileno()],
            ):
                yield base

    def _ids(self, klass: str) -> dict[str, str]:
        rows = self.context.cluster.psql(f"SELECT _name, id FROM _{klass}", database=self.database)
        return dict(line.split("|") for line in rows.splitlines())

    def read_targets(self, base_url: str) -> ReadTargets:
        meta = self.context.meta
        statuses = self._ids("status")
        components = self._ids("component")
        open_ids = ",".join(statuses[s] for s in ("new", "assigned", "accepted"))
        columns = "id,title,status,priority,assignedto,component,activity"
        listing = urlencode(
            {
                "@columns": columns,
                "@sort": "priority",
                "@filter": "status,component",
                "status": open_ids,
                "component": components[meta.list_component],
                "@pagesize": "50",
            }
        )

        def search(page_size: int) -> str:
            return urlencode(
                {
                    "@columns": columns,
                    "@search_text": meta.search_word,
                    "@pagesize": str(page_size),
                    "@sort": "-activity",
                }
            )

        return ReadTargets(
            list_url=f"{base_url}issue?{listing}",
            search_url=f"{base_url}issue?{search(50)}",
            issue_url=f"{base_url}issue{meta.long_issue}",
            search10_url=f"{base_url}issue?{search(10)}",
        )

    def create_call(self, base_url: str) -> tuple[CreateCall, Callable[[], Awaitable[None]]]:
        statuses = self._ids("status")
        priorities = self._ids("priority")
        components = self._ids("component")
        meta = self.context.meta
        bench_user = self.context.cluster.psql(
            f"SELECT id FROM _user WHERE _username = '{BENCH_USER}'", database=self.database
        )
        csrf_headers = {
            "X-Requested-With": "rest",
            "Origin": base_url.rstrip("/"),
            "Referer": base_url,
        }
        # One sign-in, then the session cookie (as the web UI keeps it): basic
        # auth would re-hash the password (PBKDF2, 250,000 rounds) per request.
        login = httpx.post(
            base_url,
            data={"__login_name": BENCH_USER, "__login_password": PASSWORD, "@action": "login"},
            headers=csrf_headers,
            timeout=60.0,
        )
        if not login.cookies:
            msg = f"roundup login set no session cookie ({login.status_code})"
            raise RuntimeError(msg)
        client = httpx.AsyncClient(
            base_url=base_url, timeout=60.0, headers=csrf_headers, cookies=login.cookies
        )

        async def create(n: int) -> None:
            message = await client.post(
                "rest/data/msg",
                json={
                    "content": f"Steps to reproduce {n}: run the {meta.search_word} job.",
                    "author": bench_user,
                },
            )
            if message.status_code != 201:
                msg = f"roundup create msg: {message.status_code} {message.text[:300]}"
                raise RuntimeError(msg)
            response = await client.post(
                "rest/data/issue",
                json={
                    "title": f"Bench create {n}: {meta.search_word} regression",
                    "messages": [message.json()["data"]["id"]],
                    "status": statuses["new"],
                    "priority": priorities["P2"],
                    "component": components[meta.list_component],
                },
            )
            if response.status_code != 201:
                msg = f"roundup create: {response.status_code} {response.text[:300]}"
                raise RuntimeError(msg)

        return create, client.aclose
