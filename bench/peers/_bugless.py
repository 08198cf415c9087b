"""bugless itself: Model, Authenticator and web frontend as ``bugless`` subprocesses.

Served as a deployment runs it, by the one local-stack library
(:class:`bugless_dev.stack.LocalStack`, as the tests and ``bugless dev`` start
it): ``bugless model serve`` (PostgreSQL backend, its default pool of 10
connections) on the seeded database of the shared cluster, ``bugless auth
serve`` with the ``local`` password backend (production Argon2 settings),
and ``bugless web serve`` (uvicorn, one process, no ``--dev``) in front of
both, and ``bugless api serve`` (mutual TLS, rate limits off) for the creates.
``bugless-2w`` serves each web tier with ``--workers 2``, one process per
core as the web tier's documentation recommends on one machine; measured
beside ``bugless`` on a host loaded 9-20 by other sessions it cost more CPU
per page and gave no more pages (bench/JOURNAL.md, "Web tier, #23 sixth
pass"), so ``bugless`` stays at one process until a quiet run says otherwise.
Pages are read signed in as ``user0042`` (group ``eng``, the data set's
benchmark caller), with the session cookie a browser would send. Creates go
through the public API as a bot would (a client certificate of the stack's
CA, group ``eng``): ``CreateIssue`` on the mTLS gateway, which calls the
Model, so the row compares with the peers' own public create APIs.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.peers._bugless_seed import SCHEMA, add_long_comments, seed_bugless
from bench.peers._cpu import family, process_table
from bench.peers._peer import CreateCall, Peer, ReadTargets
from bugless_api.client import BuglessClient
from bugless_dev.pki import LocalPki
from bugless_dev.stack import LocalStack, StackConfig

USER = "user0042"
GROUPS = ("eng",)
PASSWORD = "bench-password-0123"
#: The creates' bot (a client certificate; the Authenticator creates the user).
BOT = "bench-bot"
#: The API's per-caller rate limit, off: the benchmark measures throughput.
UNLIMITED_RATE = "1000000000"
#: Web processes per web tier (``bugless web serve --workers``; ``bugless-2w``: 2).
WEB_WORKERS = 1
#: How long a started stack may take to go quiet (every web worker started).
SETTLE_SECONDS = 60.0


class BuglessPeer(Peer):
    """bugless on the shared cluster."""

    name = "bugless"
    serving = (
        "uvicorn (bugless web serve, 1 process) -> Model + Authenticator (gRPC); "
        "the 10-row search: a second web process with BUGLESS_WEB_PAGE_SIZE=10; "
        "creates: bugless api serve (mTLS, 1 process)"
    )
    #: ``bugless web serve --workers`` of each web tier.
    web_workers = WEB_WORKERS
    _local: LocalStack | None = None
    _api_port: int = 0
    _web10_url: str = ""

    @property
    def database_url(self) -> str:
        return self.context.cluster.url(self.database)

    def install(self) -> None:
        """bugless runs from this checkout's environment: nothing to install."""

    def load(self) -> None:
        """The data set was seeded before export; add the long issue's comments."""
        asyncio.run(
            add_long_comments(self.database_url, self.context.meta, self.context.dataset_dir)
        )

    @staticmethod
    def seed(cluster_url: str, issues: int, seed: int) -> tuple[list[str], dict[str, int]]:
        """Seed a fresh database (see :mod:`bench.peers._bugless_seed`)."""
        return asyncio.run(seed_bugless(cluster_url, issues, seed))

    def reset_creates(self) -> None:
        n = self.context.meta.issues
        self.context.cluster.psql(
            f'SET search_path = "{SCHEMA}";'
            f"DELETE FROM issue_history WHERE issue_id > {n};"
            f"DELETE FROM issues WHERE id > {n};",
            database=self.database,
        )

    def _stack(self) -> LocalStack:
        if self._local is None:
            directory = self.home / "stack"
            self._local = LocalStack(
                StackConfig(
                    directory=directory,
                    pki=LocalPki.open(directory / "pki"),
                    model_database_url=self.database_url,
                    auth_database_url=self.context.cluster.url("bugless_auth"),
                    policy={"*": ["create_hotlist"]},
                    authenticators=("local", "tls"),
                    fast_password_hashing=False,
                    extra_env={"BUGLESS_DATABASE_SCHEMA": SCHEMA, "BUGLESS_LOG_LEVEL": "WARNING"},
                )
            )
        return self._local

    def _prepare_auth(self) -> None:
        cluster = self.context.cluster
        fresh = not cluster.has_database("bugless_auth")
        if fresh:
            cluster.recreate_database("bugless_auth")
        stack = self._stack()
        # Also on a kept database: it may be older than this code's schema.
        stack.run_bugless("auth", "migrate")
        if fresh:
            stack.add_user(USER, PASSWORD, groups=GROUPS)

    @contextmanager
    def serve(self) -> Iterator[str]:
        self._prepare_auth()
        stack = self._stack()
        try:
            stack.start_auth()  # first: the Model fetches its assertion keys there
            stack.start_model("--migrate")
            workers = ("--workers", str(self.web_workers))
            web = stack.start_web(*workers, dev=False)
            # A second web tier listing 10 issues per page, for the search row
            # at Trac's page size (the page size is a deployment setting). Only
            # one tier is loaded at a time; the other waits, idle.
            web10 = stack.start_web(
                *workers, dev=False, name="web-page10", env={"BUGLESS_WEB_PAGE_SIZE": "10"}
            )
            self._web10_url = f"{web10.url}/"
            api = stack.start_api("--rate", UNLIMITED_RATE, "--burst", UNLIMITED_RATE)
            self._api_port = api.port
            # A tier is ready when its first worker listens; the others may
            # still be importing, which the first measured run would pay for.
            _settle([s.process.pid for s in stack.services])
            yield f"{web.url}/"
        finally:
            stack.stop()

    def _session_cookie(self, base_url: str) -> str:
        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            form = client.get("signin")
            cookie = _cookie_pair(form.headers.get_list("set-cookie"))
            token = re.search(r'name="_csrf" value="([^"]+)"', form.text)
            if token is None:
                msg = "no CSRF token on the sign-in page"
                raise RuntimeError(msg)
            signed_in = client.post(
                "signin",
                data={"username": USER, "password": PASSWORD, "_csrf": token.group(1)},
                headers={"Cookie": cookie},
            )
            if signed_in.status_code not in (302, 303):
                msg = f"bugless sign-in: {signed_in.status_code} {signed_in.text[:300]}"
                raise RuntimeError(msg)
            return _cookie_pair(signed_in.headers.get_list("set-cookie")) or cookie

    def read_targets(self, base_url: str) -> ReadTargets:
        meta = self.context.meta
        component = meta.component_ids[meta.list_component]
        listing = urlencode({"q": f"is:open componentid:{component} sort:priority"})
        search = urlencode({"q": meta.search_word})
        return ReadTargets(
            list_url=f"{base_url}search?{listing}",
            search_url=f"{base_url}search?{search}",
            issue_url=f"{base_url}issues/{meta.long_issue}",
            headers={"Cookie": self._session_cookie(base_url)},
            search10_url=f"{self._web10_url}search?{search}",
        )

    def create_call(self, base_url: str) -> tuple[CreateCall, Callable[[], Awaitable[None]]]:
        meta = self.context.meta
        stack = self._stack()
        bot = stack.add_bot(BOT, groups=GROUPS)
        client = BuglessClient(
            f"127.0.0.1:{self._api_port}",
            cert=bot.cert,
            key=bot.key,
            ca=stack.pki.ca_file,
            timeout=60,
        )
        component = meta.component_ids[meta.list_component]

        async def create(n: int) -> None:
            await client.create_issue(
                f"Bench create {n}: {meta.search_word} regression",
                component,
                description=f"Steps to reproduce {n}: run the {meta.search_word} job.",
                priority="P2",
                severity="S2",
                type="BUG",
            )

        async def close() -> None:
            client.close()

        return create, close


class BuglessTwoWorkersPeer(BuglessPeer):
    """bugless with two processes per web tier (``bugless web serve --workers 2``).

    Measured beside :class:`BuglessPeer` in one run (``--only
    trac,bugless,bugless-2w``), it shows what the second worker changes on the
    same machine at the same time. It reads bugless' own database (seeded and
    loaded once, under bugless' loaded marker) and is never a peer in the
    ratios (:data:`bench.peers._report.SELF`).
    """

    name = "bugless-2w"
    serving = "as bugless, but each web tier two processes (bugless web serve --workers 2)"
    web_workers = 2

    @property
    def database(self) -> str:
        """bugless' own database: the same data, loaded once."""
        return f"{BuglessPeer.name}_{self.context.meta.issues}"

    @property
    def loaded_marker(self) -> Path:
        """bugless' marker: its load adds the long issue's comments to the shared database."""
        return self.context.workdir / f"{BuglessPeer.name}-{self.context.meta.issues}" / "loaded"


def _settle(roots: list[int], *, idle: float = 0.05, interval: float = 0.5) -> None:
    """Wait until ``roots`` and their children use under ``idle`` of a core (or give up).

    Fails nothing: after :data:`SETTLE_SECONDS` the measurement goes ahead.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    before = _family_cpu(roots)
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = _family_cpu(roots)
        if now - before < idle * interval:
            return
        before = now


def _family_cpu(roots: list[int]) -> float:
    """CPU seconds so far of ``roots`` and every live descendant."""
    processes = process_table()
    return sum(processes[p][1] for p in family(set(roots), processes))


def _cookie_pair(set_cookies: list[str]) -> str:
    """``name=value`` of the session cookie among Set-Cookie headers ("" if none)."""
    for header in set_cookies:
        pair = header.split(";", 1)[0]
        if "bugless" in pair.split("=", 1)[0]:
            return pair
    return ""
