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

The data set's people are the Authenticator's accounts, as after a migration
(placeholders of an import, ``user0042`` a real one): the seed resolves them
through ``MatchImportUsers`` and writes their ids, so the pages name them as
Trac's and Roundup's do, and :func:`_check_people` refuses to measure pages
showing "unknown user" chips. The database's name carries the seed's format
(:func:`database_name`): a workdir an older seed filled is seeded anew, once.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench import _dataset as data
from bench._seed_sql import BENCH_SCHEMA
from bench.peers._bugless_seed import (
    SCHEMA,
    SEED_FORMAT,
    add_long_comments,
    match_people,
    seed_bugless,
)
from bench.peers._cpu import family, process_table
from bench.peers._peer import CreateCall, Peer, ReadTargets
from bench.peers._postgres import Cluster
from bugless_api.client import BuglessClient
from bugless_core.clients import call
from bugless_dev.pki import LocalPki
from bugless_dev.stack import LocalStack, StackConfig
from bugless_proto import v1

USER = "user0042"
GROUPS = ("eng",)
PASSWORD = "bench-password-0123"
#: Who resolves the data set's people (``MatchImportUsers``), as an import's user.
IMPORTER = "bench-importer"
IMPORTERS = "importers"
#: Everyone may create hotlists; importers may import (``bugless import``'s permissions).
POLICY = {"*": ["create_hotlist"], IMPORTERS: ["admin", "import_issues"]}
#: The Authenticator's database, one for every data set size (its placeholders
#: are keyed by username, so both sizes' people are the same accounts).
AUTH_DATABASE = "bugless_auth"
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
    def database(self) -> str:
        """The seeded database (named by its seed format: see :func:`database_name`)."""
        return database_name(self.context.meta.issues)

    @property
    def loaded_marker(self) -> Path:
        """Per seed format, like the database: a new format's database is loaded anew."""
        return self.home / f"loaded-v{SEED_FORMAT}"

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
    def seed(
        workdir: Path, cluster: Cluster, issues: int, seed: int
    ) -> tuple[list[str], dict[str, int]]:
        """Seed a fresh database with the Authenticator's ids of the people.

        The people are resolved first, as an import resolves a tracker's
        (:func:`bench.peers._bugless_seed.match_people`), on an Authenticator
        started for it; see :mod:`bench.peers._bugless_seed` for the rest.
        """
        home = workdir / f"{BuglessPeer.name}-{issues}"
        home.mkdir(parents=True, exist_ok=True)
        database = database_name(issues)
        url = cluster.recreate_database(database)
        # A database seeded anew is loaded anew (its long issue's comments).
        (home / f"loaded-v{SEED_FORMAT}").unlink(missing_ok=True)
        stack = _local_stack(home / "stack", cluster, database)
        _prepare_auth(stack, cluster)
        try:
            stack.start_auth()
            people = asyncio.run(_resolve_people(stack))
        finally:
            stack.stop()
        return asyncio.run(seed_bugless(url, issues, seed, people))

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
            self._local = _local_stack(self.home / "stack", self.context.cluster, self.database)
        return self._local

    @contextmanager
    def serve(self) -> Iterator[str]:
        stack = self._stack()
        _prepare_auth(stack, self.context.cluster)
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
        targets = ReadTargets(
            list_url=f"{base_url}search?{listing}",
            search_url=f"{base_url}search?{search}",
            issue_url=f"{base_url}issues/{meta.long_issue}",
            headers={"Cookie": self._session_cookie(base_url)},
            search10_url=f"{self._web10_url}search?{search}",
        )
        _check_people(targets)
        _check_page_sizes(targets)
        return targets

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
    def loaded_marker(self) -> Path:
        """bugless' marker: its load adds the long issue's comments to the shared database."""
        home = self.context.workdir / f"{BuglessPeer.name}-{self.context.meta.issues}"
        return home / f"loaded-v{SEED_FORMAT}"


def database_name(issues: int) -> str:
    """bugless' database of the data set of ``issues`` issues, in this seed's format.

    The format is in the name so that a workdir seeded by older code (whose
    rows hold usernames) is seeded anew rather than reused.
    """
    return f"{BuglessPeer.name}_{issues}_v{SEED_FORMAT}"


def seeded_for_auth(cluster: Cluster, issues: int) -> bool:
    """Whether the seeded database holds the ids of the Authenticator's database as it is.

    Both keep :data:`USER`'s id (the seed's people table, the Authenticator's
    users): an Authenticator database created since (dropped, a new cluster)
    minted other ids, and the seed must be redone. So must a seed that did
    not finish (its last step records the format).
    """
    database = database_name(issues)
    if not (cluster.has_database(database) and cluster.has_database(AUTH_DATABASE)):
        return False
    try:
        seeded = cluster.psql(
            f"SELECT p.user_id FROM {BENCH_SCHEMA}.people p "
            f"JOIN {BENCH_SCHEMA}.seed_info s ON s.key = 'seed_format' WHERE p.name = '{USER}'",
            database=database,
        )
    except subprocess.CalledProcessError:  # stopped before it made its tables
        return False
    known = cluster.psql(
        f"SELECT user_id FROM bugless_auth.users WHERE username = '{USER}'",
        database=AUTH_DATABASE,
    )
    return bool(seeded) and seeded == known


def _local_stack(directory: Path, cluster: Cluster, database: str) -> LocalStack:
    """bugless' services on ``database`` and the shared Authenticator database."""
    return LocalStack(
        StackConfig(
            directory=directory,
            pki=LocalPki.open(directory / "pki"),
            model_database_url=cluster.url(database),
            auth_database_url=cluster.url(AUTH_DATABASE),
            policy=POLICY,
            authenticators=("local", "tls"),
            fast_password_hashing=False,
            extra_env={"BUGLESS_DATABASE_SCHEMA": SCHEMA, "BUGLESS_LOG_LEVEL": "WARNING"},
        )
    )


def _prepare_auth(stack: LocalStack, cluster: Cluster) -> None:
    """The Authenticator's database, migrated, with the reader and the importer."""
    if not cluster.has_database(AUTH_DATABASE):
        cluster.recreate_database(AUTH_DATABASE)
    # Also on a kept database: it may be older than this code's schema.
    stack.run_bugless("auth", "migrate")
    _ensure_user(stack, USER, GROUPS)
    _ensure_user(stack, IMPORTER, (IMPORTERS,))


def _ensure_user(stack: LocalStack, username: str, groups: tuple[str, ...]) -> None:
    """Add a local user with :data:`PASSWORD` unless the username is taken already."""
    added = stack.run_bugless(
        "auth",
        "user",
        "add",
        username,
        "--password-stdin",
        "--groups",
        ",".join(groups),
        check=False,
        input_text=PASSWORD + "\n",
    )
    if added.returncode != 0 and "is taken" not in added.stdout + added.stderr:
        msg = f"bugless auth user add {username}: {added.stdout}{added.stderr}"
        raise RuntimeError(msg)


async def _resolve_people(stack: LocalStack) -> dict[str, str]:
    """The data set's usernames -> user ids, resolved by the stack's Authenticator.

    Signs in as :data:`IMPORTER` (through the web's identity, which runs the
    password flow) and matches the people as the import identity.
    """
    channel = stack.client_address("auth", "web").channel()
    try:
        signed_in = await call(
            v1.AuthenticatorStub(channel).authenticate_password,
            v1.AuthenticatePasswordRequest(username=IMPORTER, password=PASSWORD),
        )
    finally:
        channel.close()
    usernames = [data.user_id(k) for k in range(1, data.USERS + 1)]
    return await match_people(stack.client_address("auth", "import"), signed_in.token, usernames)


def _check_people(targets: ReadTargets) -> None:
    """Fail unless every read page names its people, as the peers' pages do.

    A page whose rows hold ids the Authenticator does not know (a database
    seeded with usernames, or with another Authenticator database's ids)
    shows "unknown user" chips, and renders and fetches less than a page of
    names: its figures would not compare with the peers'.
    """
    urls = [targets.list_url, targets.search_url, targets.issue_url]
    with httpx.Client(headers=targets.headers, timeout=120.0) as client:
        for url in urls:
            page = client.get(url)
            if page.status_code != 200 or "chip-unknown" in page.text:
                msg = (
                    f"bugless page {url}: status {page.status_code}, "
                    f"{page.text.count('chip-unknown')} unknown users (the people's ids "
                    f"do not match the Authenticator's database {AUTH_DATABASE})"
                )
                raise RuntimeError(msg)
            if 'class="chip"' not in page.text.split("</header>", 1)[-1]:
                msg = f"bugless page {url}: names nobody"
                raise RuntimeError(msg)


def _check_page_sizes(targets: ReadTargets) -> None:
    """Fail unless the search rows list 50 issues and the 10-row tier 10.

    The 10-row search compares with a peer at its page size; until the web
    tier read ``BUGLESS_WEB_PAGE_SIZE`` that tier listed 50 rows unnoticed.
    """
    with httpx.Client(headers=targets.headers, timeout=120.0) as client:
        for url, rows in ((targets.search_url, 50), (targets.search10_url or "", 10)):
            listed = client.get(url).text.count('class="open-link"')
            if listed != rows:
                msg = f"bugless page {url}: {listed} rows, not {rows}"
                raise RuntimeError(msg)


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
