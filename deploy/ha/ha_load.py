"""The drill's steady load, and the ledger of what it was told.

Bots use :class:`bugless_api.client.BuglessClient` through HAProxy, each with
its own certificate and one long-lived connection, as a bot daemon would:
creates with an idempotency key, changes against the expected version (each
bot changes only its own issues, so a conflict means something went wrong),
searches and gets. People are simulated by signed-in page loads of the web
UI. Every call is counted in the tally of the phase it was sent in; every
write the service acknowledged is recorded, to be looked for in the database
afterwards. The load is bounded: it stops at a stop event, a deadline, or a
total number of requests, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
import re
import time
from dataclasses import dataclass, field

import httpx

from bugless_api.client import BuglessClient, RetryPolicy
from bugless_dev.pki import CertificateFiles

#: The tally of the call running in this task, so a retry is counted where
#: its call belongs even if the phase changed meanwhile.
_CALL_TALLY: contextvars.ContextVar[PhaseTally | None] = contextvars.ContextVar(
    "drill_call_tally", default=None
)
_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Failure:
    """A request that failed in the end (after the client's own retries).

    Attributes:
        at: ``time.monotonic()`` when it failed.
        operation: ``create``, ``change``, ``get``, ``search``, ``page``.
        error: Exception class and message, or the HTTP status.
    """

    at: float
    operation: str
    error: str


@dataclass(frozen=True)
class AckedCreate:
    """A create the service answered with an issue."""

    issue_id: int
    title: str
    idempotency_key: str


@dataclass(frozen=True)
class AckedChange:
    """A change the service answered with the issue's new version."""

    issue_id: int
    version: int
    comment: str


@dataclass
class PhaseTally:
    """What happened to the requests sent during one phase.

    Attributes:
        name: The phase.
        sent: Requests started (a client-side retry is not a new request).
        succeeded: Requests that got their answer.
        failed: Requests that failed after the client's retries.
        retried: Retries the API client made (each backoff is one).
        failures: Each failed request.
        creates: Acknowledged creates.
        changes: Acknowledged changes.
    """

    name: str
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    failures: list[Failure] = field(default_factory=list)
    creates: list[AckedCreate] = field(default_factory=list)
    changes: list[AckedChange] = field(default_factory=list)

    @property
    def acknowledged_writes(self) -> int:
        """Creates and changes the service confirmed."""
        return len(self.creates) + len(self.changes)


@dataclass(frozen=True)
class CountingRetryPolicy(RetryPolicy):
    """The client's default policy, counting each retry in the call's tally."""

    def delay(self, attempt: int, error: Exception) -> float:
        """Count the retry, then wait as :class:`RetryPolicy` would."""
        tally = _CALL_TALLY.get()
        if tally is not None:
            tally.retried += 1
        return super().delay(attempt, error)


@dataclass(frozen=True)
class LoadSettings:
    """How much load, and its bounds.

    Attributes:
        api_rate: Requests per second of each bot.
        web_workers: Concurrent page-loading people (0: no web load).
        web_rate: Page loads per second of each.
        max_requests: Upper bound on requests over the whole run.
        max_seconds: Upper bound on the run's duration.
        call_timeout: Deadline of each API call.
    """

    api_rate: float = 8.0
    web_workers: int = 2
    web_rate: float = 4.0
    max_requests: int = 20_000
    max_seconds: float = 600.0
    call_timeout: float = 10.0


class LoadGenerator:
    """Runs the bots and the page loads until stopped; see the module docstring."""

    def __init__(
        self,
        settings: LoadSettings,
        *,
        api_address: str,
        ca_file: str,
        bots: list[CertificateFiles],
        component_id: int,
        web_url: str | None,
        web_user: tuple[str, str],
        run_id: str,
    ) -> None:
        """Prepare the load; :meth:`run` starts it."""
        self.settings = settings
        self.tally = PhaseTally("warm-up")
        self.tallies: list[PhaseTally] = [self.tally]
        self._api_address = api_address
        self._ca_file = ca_file
        self._bots = bots
        self._component_id = component_id
        self._web_url = web_url
        self._web_user = web_user
        self._run_id = run_id
        self._issue_ids: list[int] = []
        self._total = 0
        self._stop = asyncio.Event()
        self._deadline = 0.0

    def begin_phase(self, name: str) -> PhaseTally:
        """Count requests sent from now on in a new tally."""
        self.tally = PhaseTally(name)
        self.tallies.append(self.tally)
        return self.tally

    def stop(self) -> None:
        """Ask every worker to finish its current request and end."""
        self._stop.set()

    async def run(self) -> None:
        """Run every worker until :meth:`stop`, the deadline or the request bound."""
        self._deadline = time.monotonic() + self.settings.max_seconds
        workers = [self._bot(i, bot) for i, bot in enumerate(self._bots)]
        if self._web_url is not None:
            workers += [self._person(i) for i in range(self.settings.web_workers)]
        await asyncio.gather(*workers)

    def _running(self) -> bool:
        return (
            not self._stop.is_set()
            and self._total < self.settings.max_requests
            and time.monotonic() < self._deadline
        )

    async def _pace(self, rate: float, started: float) -> None:
        rest = 1.0 / rate - (time.monotonic() - started)
        if rest > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), rest)

    def _start(self) -> PhaseTally:
        tally = self.tally
        tally.sent += 1
        self._total += 1
        _CALL_TALLY.set(tally)
        return tally

    @staticmethod
    def _failed(tally: PhaseTally, operation: str, error: str) -> None:
        tally.failed += 1
        tally.failures.append(Failure(time.monotonic(), operation, error))

    async def _bot(self, index: int, bot: CertificateFiles) -> None:
        rng = random.Random(f"{self._run_id}-{index}")
        client = BuglessClient(
            self._api_address,
            cert=bot.cert,
            key=bot.key,
            ca=self._ca_file,
            timeout=self.settings.call_timeout,
            retry=CountingRetryPolicy(),
        )
        # Own issues and their last known version (None: unknown after a
        # change whose outcome the bot did not learn).
        mine: dict[int, int | None] = {}
        serial = 0
        try:
            while self._running():
                started = time.monotonic()
                serial += 1
                roll = rng.random()
                if not mine or roll < 0.25:
                    await self._create(client, index, serial, mine)
                elif roll < 0.5:
                    await self._change(client, rng, index, serial, mine)
                elif roll < 0.75:
                    await self._get(client, rng.choice(list(mine)), mine)
                else:
                    await self._search(client)
                await self._pace(self.settings.api_rate, started)
        finally:
            client.close()

    async def _create(
        self, client: BuglessClient, index: int, serial: int, mine: dict[int, int | None]
    ) -> None:
        tally = self._start()
        key = f"drill-{self._run_id}-b{index}-{serial}"
        title = f"drill {tally.name} bot {index} #{serial}"
        try:
            issue = await client.create_issue(
                title,
                self._component_id,
                description="created by the failover drill",
                priority="P2",
                idempotency_key=key,
            )
        except Exception as exc:  # every failure is counted, none ends the load
            self._failed(tally, "create", f"{type(exc).__name__}: {exc}")
            return
        tally.succeeded += 1
        tally.creates.append(AckedCreate(issue.id, title, key))
        mine[issue.id] = issue.version
        self._issue_ids.append(issue.id)

    async def _change(
        self,
        client: BuglessClient,
        rng: random.Random,
        index: int,
        serial: int,
        mine: dict[int, int | None],
    ) -> None:
        issue_id = rng.choice(list(mine))
        version = mine[issue_id]
        if version is None:
            # The last change's outcome is unknown: learn the version first.
            await self._get(client, issue_id, mine)
            return
        tally = self._start()
        comment = f"drill {self._run_id} bot {index} change #{serial}"
        try:
            reply = await client.update_issue(
                issue_id,
                expected_version=version,
                comment=comment,
                priority=rng.choice(["P0", "P1", "P2", "P3", "P4"]),
            )
        except Exception as exc:  # every failure is counted, none ends the load
            mine[issue_id] = None
            self._failed(tally, "change", f"{type(exc).__name__}: {exc}")
            return
        if reply.issue is None:
            mine[issue_id] = None
            self._failed(tally, "change", "the reply has no issue")
            return
        tally.succeeded += 1
        tally.changes.append(AckedChange(issue_id, reply.issue.version, comment))
        mine[issue_id] = reply.issue.version

    async def _get(self, client: BuglessClient, issue_id: int, mine: dict[int, int | None]) -> None:
        tally = self._start()
        try:
            issue = await client.get_issue(issue_id)
        except Exception as exc:  # every failure is counted, none ends the load
            self._failed(tally, "get", f"{type(exc).__name__}: {exc}")
            return
        tally.succeeded += 1
        mine[issue_id] = issue.version

    async def _search(self, client: BuglessClient) -> None:
        tally = self._start()
        try:
            await client.search_issues(f"componentid:{self._component_id} is:open", page_size=10)
        except Exception as exc:  # every failure is counted, none ends the load
            self._failed(tally, "search", f"{type(exc).__name__}: {exc}")
            return
        tally.succeeded += 1

    async def sign_in(self, http: httpx.AsyncClient) -> None:
        """Sign the web user in (the session cookie then works on every replica).

        Raises:
            RuntimeError: The sign-in did not succeed.
        """
        form = await http.get("/signin")
        match = _CSRF.search(form.text)
        if form.status_code != 200 or match is None:
            msg = f"GET /signin answered {form.status_code} without a CSRF token"
            raise RuntimeError(msg)
        username, password = self._web_user
        reply = await http.post(
            "/signin",
            data={"username": username, "password": password, "_csrf": match.group(1)},
        )
        if reply.status_code != 200 or "signin" in str(reply.url):
            msg = f"signing in as {username} failed: {reply.status_code} at {reply.url}"
            raise RuntimeError(msg)

    async def _person(self, index: int) -> None:
        assert self._web_url is not None
        rng = random.Random(f"{self._run_id}-web-{index}")
        async with httpx.AsyncClient(
            base_url=self._web_url,
            follow_redirects=True,
            timeout=self.settings.call_timeout,
        ) as http:
            await self.sign_in(http)
            while self._running():
                started = time.monotonic()
                if self._issue_ids and rng.random() < 0.5:
                    path = f"/issues/{rng.choice(self._issue_ids)}"
                else:
                    path = f"/search?q=componentid:{self._component_id}"
                tally = self._start()
                try:
                    reply = await http.get(path)
                except Exception as exc:  # every failure is counted, none ends the load
                    self._failed(tally, "page", f"GET {path}: {type(exc).__name__}: {exc}")
                else:
                    if reply.status_code == 200:
                        tally.succeeded += 1
                    else:
                        self._failed(tally, "page", f"GET {path}: HTTP {reply.status_code}")
                await self._pace(self.settings.web_rate, started)
