"""Redmine 5.0 (Debian's ``redmine`` + ``redmine-pgsql``), served by Puma.

Debian's package installs non-interactively once dbconfig-common is told not
to set up a database (``redmine/instances/default/dbconfig-install false``
preseeded): the data goes to the shared cluster instead, named by
``DATABASE_URL`` (Rails merges it over ``/etc/redmine/default/database.yml``,
so nothing under ``/etc`` is edited). The schema comes from ``rake
db:migrate``; the data set goes in through the ActiveRecord models under
``rails runner`` (``_redmine_load.rb``).

Served by Puma (Debian's ``puma`` package), the application server Redmine
5 bundles for production and Rails' generated ``config/puma.rb`` defaults:
one worker process per core (2) with 5 threads each, ``RAILS_ENV=production``
(caching of classes and templates on, log level ``info``).

Creates use the REST API (``POST /issues.json``) with an API key in the
``X-Redmine-API-Key`` header, as Redmine's REST documentation shows.
"""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.peers._peer import CreateCall, Peer, ReadTargets, run, server_process
from bugless_dev.processes import unused_port

REDMINE_ROOT = Path("/usr/share/redmine")
PACKAGES = ("redmine", "redmine-pgsql", "puma")
#: Attempts at a free port for puma, which binds only a port it is given.
PORT_ATTEMPTS = 5
WORKERS = 2
THREADS = 5
LOADER = Path(__file__).with_name("_redmine_load.rb")
_PRESEED = (
    "redmine redmine/instances/default/dbconfig-install boolean false\n"
    "redmine redmine/instances/default/database-type select pgsql\n"
)


class RedminePeer(Peer):
    """Redmine from Debian on PostgreSQL under Puma."""

    name = "redmine"
    serving = f"puma, {WORKERS} workers x {THREADS} threads; PostgreSQL"

    @property
    def env(self) -> dict[str, str]:
        return {
            "RAILS_ENV": "production",
            "DATABASE_URL": self.context.cluster.url(self.database),
        }

    def install(self) -> None:
        if (REDMINE_ROOT / "config.ru").exists() and Path("/usr/bin/puma").exists():
            return
        subprocess.run(["debconf-set-selections"], input=_PRESEED, text=True, check=True)
        log = self.home / "install.log"
        run(["apt-get", "update"], log=log)
        run(
            ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
            log=log,
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )

    @property
    def key_file(self) -> Path:
        return self.home / "api-key"

    def load(self) -> None:
        log = self.home / "load.log"
        cluster = self.context.cluster
        if not self.key_file.exists():
            cluster.recreate_database(self.database)
            run(["rake", "db:migrate"], log=log, env=self.env, cwd=REDMINE_ROOT)
        run(
            ["rails", "runner", LOADER, self.context.dataset_dir, self.key_file],
            log=log,
            env=self.env,
            cwd=REDMINE_ROOT,
        )

    def reset_creates(self) -> None:
        n = self.context.meta.issues
        self.context.cluster.psql(
            f"DELETE FROM journal_details WHERE journal_id IN (SELECT id FROM journals "
            f"WHERE journalized_type = 'Issue' AND journalized_id > {n});"
            f"DELETE FROM journals WHERE journalized_type = 'Issue' AND journalized_id > {n};"
            f"DELETE FROM watchers WHERE watchable_type = 'Issue' AND watchable_id > {n};"
            f"DELETE FROM issues WHERE id > {n};"
            f"SELECT setval('issues_id_seq', {n});",
            database=self.database,
        )

    @contextmanager
    def serve(self) -> Iterator[str]:
        """puma on a free port; another one if that port was taken before puma bound it."""
        for attempt in range(PORT_ATTEMPTS):
            port = unused_port()
            base = f"http://127.0.0.1:{port}/"
            server = server_process(
                [
                    "puma",
                    "--environment",
                    "production",
                    "--bind",
                    f"tcp://127.0.0.1:{port}",
                    "--workers",
                    str(WORKERS),
                    "--threads",
                    f"{THREADS}:{THREADS}",
                    "--preload",
                    "config.ru",
                ],
                log=self.home / "puma.log",
                ready_url=f"{base}issues/1",
                env=self.env,
                cwd=REDMINE_ROOT,
                timeout=180.0,
            )
            try:
                server.__enter__()
            except RuntimeError as failed:
                if "Address already in use" in str(failed) and attempt + 1 < PORT_ATTEMPTS:
                    continue
                raise
            try:
                yield base
            finally:
                server.__exit__(None, None, None)
            return

    def _id(self, table: str, name: str) -> str:
        return self.context.cluster.psql(
            f"SELECT id FROM {table} WHERE name = '{name}'", database=self.database
        )

    def read_targets(self, base_url: str) -> ReadTargets:
        meta = self.context.meta
        category = self._id("issue_categories", meta.list_component)
        listing = urlencode(
            [
                ("set_filter", "1"),
                ("f[]", "status_id"),
                ("op[status_id]", "o"),
                ("f[]", "category_id"),
                ("op[category_id]", "="),
                ("v[category_id][]", category),
                ("sort", "priority:desc,id:desc"),
                ("per_page", "50"),
            ]
            + [
                ("c[]", c)
                for c in (
                    "tracker",
                    "status",
                    "priority",
                    "subject",
                    "assigned_to",
                    "category",
                    "updated_on",
                )
            ]
        )
        search = urlencode({"q": meta.search_word, "scope": "all", "issues": "1"})
        return ReadTargets(
            list_url=f"{base_url}projects/bench/issues?{listing}",
            search_url=f"{base_url}search?{search}",
            issue_url=f"{base_url}issues/{meta.long_issue}",
        )

    def create_call(self, base_url: str) -> tuple[CreateCall, Callable[[], Awaitable[None]]]:
        meta = self.context.meta
        project = self.context.cluster.psql(
            "SELECT id FROM projects WHERE identifier = 'bench'", database=self.database
        )
        tracker = self._id("trackers", "bug")
        priority = self._id("enumerations", "P2")
        category = self._id("issue_categories", meta.list_component)
        client = httpx.AsyncClient(
            base_url=base_url,
            timeout=60.0,
            headers={"X-Redmine-API-Key": self.key_file.read_text().strip()},
        )

        async def create(n: int) -> None:
            response = await client.post(
                "issues.json",
                json={
                    "issue": {
                        "project_id": int(project),
                        "tracker_id": int(tracker),
                        "priority_id": int(priority),
                        "category_id": int(category),
                        "subject": f"Bench create {n}: {meta.search_word} regression",
                        "description": f"Steps to reproduce {n}: run the {meta.search_word} job.",
                    }
                },
            )
            if response.status_code != 201:
                msg = f"redmine create: {response.status_code} {response.text[:300]}"
                raise RuntimeError(msg)

        return create, client.aclose
