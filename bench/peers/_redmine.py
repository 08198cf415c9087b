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

import contextlib
import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.peers._peer import CreateCall, Peer, ReadTargets, run, spawned

REDMINE_ROOT = Path("/usr/share/redmine")
PACKAGES = ("redmine", "redmine-pgsql", "puma")
WORKERS = 2
THREADS = 5
LOADER = Path(__file__).with_name("_redmine_load.rb")
#: puma's line naming the address it bound, with the port the kernel picked.
_LISTENING = re.compile(rb"\* Listening on http://127\.0\.0\.1:(\d+)")
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
        """puma on a port of the kernel's choosing (:func:`serve_puma`)."""
        args = [
            "--environment",
            "production",
            "--workers",
            str(WORKERS),
            "--threads",
            f"{THREADS}:{THREADS}",
            "--preload",
            "config.ru",
        ]
        with serve_puma(
            args, log=self.home / "puma.log", ready_path="issues/1", env=self.env, cwd=REDMINE_ROOT
        ) as base:
            yield base

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


@contextmanager
def serve_puma(
    args: Sequence[str],
    *,
    log: Path,
    ready_path: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 180.0,
) -> Iterator[str]:
    """``puma ARGS`` bound to ``tcp://127.0.0.1:0``; its base URL once ``ready_path`` answers.

    puma binds in the master, before it forks the workers, and logs the port
    the kernel gave it (``* Listening on http://127.0.0.1:PORT``; Debian's
    puma 5.6): the port is read back from that line, so none is chosen free
    and named on the command line for another process to take first.

    Raises:
        RuntimeError: puma exited, or was not ready within ``timeout`` seconds
            (the message ends with its log).
    """
    offset = log.stat().st_size if log.exists() else 0  # spawned appends to the log
    with spawned(
        ["puma", "--bind", "tcp://127.0.0.1:0", *args], log=log, env=env, cwd=cwd
    ) as process:
        deadline = time.monotonic() + timeout
        base: str | None = None
        while True:
            if process.poll() is not None:
                msg = f"puma exited with {process.returncode}:\n" + log.read_text()[-3000:]
                raise RuntimeError(msg)
            if base is None:
                with log.open("rb") as out:
                    out.seek(offset)
                    listening = _LISTENING.search(out.read())
                if listening:
                    base = f"http://127.0.0.1:{int(listening[1])}/"
            if base is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}{ready_path}", timeout=10.0).status_code < 500:
                        break
            if time.monotonic() > deadline:
                msg = f"puma not ready within {timeout:.0f}s:\n" + log.read_text()[-3000:]
                raise RuntimeError(msg)
            time.sleep(0.5)
        yield base
