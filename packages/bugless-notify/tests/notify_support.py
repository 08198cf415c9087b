"""What the notifier tests share: a real webhook receiver, deliveries to queue, replicas to roll.

The receiver is :class:`bugless_testing.webhooks.WebhookReceiver` (a real HTTP
server on a loopback port the OS picked, on its own threads), seen per path.
It checks every request's signature the way a real receiver would, and can be
scripted per path: answer 503 three times then 200, answer 429 with a
Retry-After, or hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import inspect
import logging
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from bugless_core.grpc import GrpcServerSettings
from bugless_notify._saved_search_store import MatchChanges, MatchStore
from bugless_notify._saved_searches import SavedSearchMatcher
from bugless_notify.queue import NewDelivery
from bugless_notify.render import ChangeNotice, Person, Reason, render_notification
from bugless_notify.settings import NotifierSettings, SmtpOptions
from bugless_notify.webhook import DELIVERY_HEADER
from bugless_proto import v1
from bugless_testing import webhooks
from bugless_testing.metrics import metric_total

if TYPE_CHECKING:
    from bugless_dev.stack import LocalStack, RunningService

SECRET = "s3cr3t-" + "0123456789abcdef" * 3
PUBLIC_URL = "https://bugs.example.com"
#: The key the tests' endpoint store seals secrets with (as a deployment with keys does).
SEALING_KEY = "tests-sealing-key-0123456789"
PEOPLE = {
    "u_alice": Person("Alice Smith", "alice"),
    "u_bob": Person("Bob Jones", "bob"),
    "u_carol": Person("Carol White", "carol"),
}


def sample_issue(issue_id: int = 123, title: str = "Disk full on /var") -> v1.Issue:
    return v1.Issue(
        id=issue_id,
        title=title,
        status=v1.Status.ASSIGNED,
        priority=v1.Priority.P1,
        severity=v1.Severity.S2,
        type=v1.IssueType.BUG,
        component_id=7,
        reporter="u_alice",
        assignee="u_bob",
        cc=["u_carol"],
        version=4,
    )


def sample_entry(
    issue_id: int = 123, version: int = 4, comment: str = "Moved to P1."
) -> v1.HistoryEntry:
    return v1.HistoryEntry(
        issue_id=issue_id,
        version=version,
        author="u_alice",
        created_at=datetime.datetime(2026, 3, 1, 12, 30, tzinfo=datetime.UTC),
        comment=comment,
        changes=[
            v1.FieldChange(field="status", old_value="NEW", new_value="ASSIGNED"),
            v1.FieldChange(field="priority", old_value="P2", new_value="P1"),
            v1.FieldChange(field="assignee", old_value="", new_value="u_bob"),
            v1.FieldChange(field="cc", added=["u_carol"], removed=["u_bob"]),
        ],
    )


def notice(
    issue_id: int = 123, version: int = 4, reason: Reason = Reason.ASSIGNEE, **kwargs: Any
) -> ChangeNotice:
    return ChangeNotice(
        issue=sample_issue(issue_id),
        entry=sample_entry(issue_id, version),
        reason=reason,
        public_url=PUBLIC_URL,
        people=PEOPLE,
        components={7: "Platform>Storage"},
        **kwargs,
    )


def mail_delivery(
    n: int, *, recipient: str | None = None, issue_id: int | None = None
) -> NewDelivery:
    """The ``n``-th test mail: its own issue (so its own thread) unless told otherwise."""
    issue = issue_id if issue_id is not None else 1000 + n
    return NewDelivery(
        delivery_id=f"change-{issue}-4/email/user{n}",
        channel="email",
        recipient=recipient or f"user{n}@example.com",
        recipient_name=f"User {n}",
        message=render_notification(notice(issue)),
    )


def webhook_delivery(key: str, endpoint: str, *, issue_id: int = 123) -> NewDelivery:
    return NewDelivery(
        delivery_id=key,
        channel="webhook",
        recipient=endpoint,
        message=render_notification(notice(issue_id, reason=Reason.WEBHOOK)),
    )


@dataclass(frozen=True)
class ReceivedRequest:
    """One POST the receiver got, and what it answered (the notifier tests' view of it)."""

    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    status: int

    @property
    def delivery_id(self) -> str:
        return self.headers.get(DELIVERY_HEADER.lower(), "")


class WebhookReceiver:
    """:class:`bugless_testing.webhooks.WebhookReceiver`, seen per path.

    The shared receiver serves (a real HTTP server on port 0, on its own
    threads, signatures checked from the documented header, answers scripted
    per path); this adds what the notifier's tests read: URLs and requests by
    path, a blocking wait for a path's count.

    Attributes:
        hangs: Path -> seconds to wait before answering (the shared ``delays``).
        retry_after: Path -> ``Retry-After`` sent with non-2xx answers.
    """

    def __init__(self, secret: str = SECRET) -> None:
        """Start serving; :meth:`stop` stops."""
        self._receiver = webhooks.WebhookReceiver(secret, status=200)
        self.secret = secret
        self.port = self._receiver.port
        self.hangs = self._receiver.delays
        self.retry_after = self._receiver.retry_after

    def url(self, path: str) -> str:
        return f"{self._receiver.url}{path}"

    def script(self, path: str, *statuses: int) -> None:
        """Answer the next POSTs to ``path`` with ``statuses`` in order (then 200)."""
        self._receiver.script(path, *statuses)

    def received(self, path: str | None = None) -> list[ReceivedRequest]:
        return [
            ReceivedRequest(hook.path, hook.headers, hook.raw, hook.signed, hook.status)
            for hook in self._receiver.received
            if path is None or hook.path == path
        ]

    def wait_for(self, path: str, count: int, timeout: float = 30.0) -> list[ReceivedRequest]:
        """Block until ``count`` POSTs to ``path`` came; ``timeout`` only ends a hung test."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.received(path)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(got)} requests to {path}, expected {count}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._receiver.close()


def run_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()


def stack_notifier_settings(
    stack: LocalStack,
    *,
    database_url: str,
    schema: str,
    smtp_port: int,
    model_port: int | None = None,
    auth_port: int | None = None,
) -> NotifierSettings:
    """Settings of a notifier run in the test's process on ``stack``'s services.

    It reaches them as ``bugless notify serve`` does (the ``notify``
    identity), at the stack's first Model and Authenticator unless a port
    names another replica; mail goes to the SMTP sink at ``smtp_port``; its
    status server listens on a free loopback port, plain, and drains at once.
    """
    model = stack.client_address("model", "notify")
    auth = stack.client_address("auth", "notify")
    return NotifierSettings(
        model=model if model_port is None else dataclasses.replace(model, port=model_port),
        auth=auth if auth_port is None else dataclasses.replace(auth, port=auth_port),
        database_url=database_url,
        schema=schema,
        public_url=PUBLIC_URL,
        secret_keys=(SEALING_KEY,),
        # The receivers are on loopback; the default allows public addresses only.
        webhook_allowed_networks=("127.0.0.0/8", "::1"),
        smtp=SmtpOptions(host="127.0.0.1", port=smtp_port, security="none"),
        grpc=GrpcServerSettings(insecure_local=True, drain_seconds=0.0, grace_seconds=1.0),
    )


@dataclass(frozen=True)
class RedactionWorld:
    """The people, component and notifier settings of a redaction test.

    dora reads a daily digest (its hour half a day away, so never due during
    the test), ivan, bert and gina mail at once; names carry ``tag``.
    """

    tag: str
    ids: dict[str, str]
    component: v1.Component
    schema: str
    settings: NotifierSettings

    @property
    def bert(self) -> v1.Caller:
        """bert, who writes the comment that is redacted."""
        return v1.Caller(user_id=self.ids["bert"])


async def redaction_world(
    stack: LocalStack,
    model: v1.ModelStub,
    *,
    admin: v1.Caller,
    database_url: str,
    smtp_port: int,
    prefix: str,
) -> RedactionWorld:
    """dora, ivan, bert and gina on ``stack``, a component, and a notifier's settings."""
    tag = secrets.token_hex(3)
    ids = {}
    for name in ("dora", "ivan", "bert", "gina"):
        created = await asyncio.to_thread(
            stack.add_user, f"{name}{tag}", "pw-" + tag * 3, email=f"{name}{tag}@ex.test"
        )
        ids[name] = str(created["user_id"])
    await model.update_notification_settings(
        v1.UpdateNotificationSettingsRequest(
            caller=v1.Caller(user_id=ids["dora"]),
            settings=v1.NotificationSettings(channel="email", digest=v1.DigestMode.DAILY),
        )
    )
    component = await model.create_component(
        v1.CreateComponentRequest(caller=admin, name=f"{prefix}-{tag}")
    )
    schema = f"notify_{prefix}_{tag}"
    settings = stack_notifier_settings(
        stack, database_url=database_url, schema=schema, smtp_port=smtp_port
    )
    hour = (datetime.datetime.now(datetime.UTC).hour + 12) % 24
    settings = dataclasses.replace(settings, digest_hour_utc=hour)
    return RedactionWorld(tag, ids, component, schema, settings)


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` (of other processes, which have no event) until true, for 30 s.

    Raises:
        AssertionError: naming ``what`` was not reached.
    """
    try:
        async with asyncio.timeout(30):
            while True:
                reached = condition()
                if await reached if inspect.isawaitable(reached) else reached:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def assert_moved_off_a_draining_replica(records: list[logging.LogRecord]) -> None:
    """A call met a draining replica and was sent again, and the notifier minded nothing else.

    ``records`` are a run's log records at INFO: a refusal was logged
    (``bugless_core.failover``), and nothing of the notifier's at WARNING or
    above (a failed round of the consumer, a failed delivery, an outage).
    """
    refusals = [r for r in records if "refused by a draining replica" in r.getMessage()]
    assert refusals, "no call met the draining replica"
    trouble = [
        r.getMessage()
        for r in records
        if r.name.startswith("bugless.notify") and r.levelno >= logging.WARNING
    ]
    assert trouble == []


def start_replica(stack: LocalStack, service: str, port: int, name: str) -> RunningService:
    """A ``service`` (``model``, ``auth``) replica sharing ``port`` (0: any), that drains slowly.

    ``--reuse-port``, as a pod and its replacement share a Service during a
    rollout with ``maxSurge: 1``; its own ``/metrics``; no NOT_SERVING phase
    and a 60 s grace, so a call a test holds on it keeps it draining, no
    longer listening, refusing new calls on open connections.
    """
    args = [service, "serve", "--port", str(port), "--reuse-port", "--metrics-port", "0"]
    args += ["--drain-seconds", "0", "--grace-seconds", "60"]
    return stack.start(service, args, name=name)


@contextlib.asynccontextmanager
async def old_replica(stack: LocalStack, service: str) -> AsyncIterator[RunningService]:
    """The replica of ``service`` a notifier first connects to (a test drains it); stopped after."""
    replica = await asyncio.to_thread(start_replica, stack, service, 0, f"{service}-old")
    try:
        yield replica
    finally:
        await asyncio.to_thread(stack.stop_service, replica)


async def until_held(replica: RunningService, method: str, held: asyncio.Task[None]) -> None:
    """Until ``replica``'s ``/metrics`` counts a ``method`` call in flight: the test's ``held``.

    Raises:
        AssertionError: ``held`` ended (or the wait timed out) first.
    """

    async def holding() -> bool:
        if held.done():
            held.result()
            raise AssertionError(f"the held {method} ended")
        in_flight = await metric_total(
            replica.metrics_port, "grpc_server_in_flight_calls", grpc_method=method
        )
        return in_flight > 0

    await until(holding, f"the held {method} on the old replica")


async def replace_and_drain(stack: LocalStack, old: RunningService, service: str) -> RunningService:
    """Start ``old``'s replacement on its port, then SIGTERM ``old`` until it stops accepting.

    Returns:
        The new replica (the caller stops it).
    """
    new = await asyncio.to_thread(start_replica, stack, service, old.port, f"{service}-new")
    try:
        old.process.signal(signal.SIGTERM)
        await until(lambda: "stopped accepting" in old.process.output(), "the old replica to drain")
    except BaseException:
        await asyncio.to_thread(stack.stop_service, new)
        raise
    return new


async def waiting_with(pool: asyncpg.Pool, schema: str, text: str) -> int:
    """How many queued deliveries and digest items still carry ``text``."""
    return int(
        await pool.fetchval(
            f"SELECT (SELECT count(*) FROM {schema}.deliveries "
            "WHERE state = 'pending' AND message::text LIKE '%' || $1 || '%') + "
            f"(SELECT count(*) FROM {schema}.digest_items "
            "WHERE message::text LIKE '%' || $1 || '%')",
            text,
        )
    )


async def until_seeded(database_url: str, schema: str, search_id: int, user_id: str) -> None:
    """Until the notifier on ``schema`` has seeded the subscription (``saved_search_seen``).

    A subscription is seeded at the start of the consumer's next round
    (about two seconds when it is idle); a change committed before that is
    part of what the seed finds, so a test that wants a change mailed as a
    new match makes it once the seed is in.
    """
    conn = await asyncpg.connect(database_url)
    sql = f"SELECT 1 FROM {schema}.saved_search_seen WHERE saved_search_id = $1 AND user_id = $2"
    try:

        async def seeded() -> bool:
            return await conn.fetchval(sql, search_id, user_id) is not None

        await until(seeded, f"the notifier to seed saved search {search_id} of {user_id}")
    finally:
        await conn.close()


async def seed_round(
    matcher: SavedSearchMatcher, conn: Any, schema: str
) -> list[v1.SavedSearchSubscription]:
    """What the consumer's rounds do until every new subscription is seeded, each committed.

    A round seeds what its ``SeedBudget`` allows (f769d6af); the tests' Model
    holds the subscriptions of every test before this one, each new to this
    test's queue, so one round may leave the test's own unseeded (ci88: the
    renamed-user test's batch judged against none). Rounds go on until one
    seeds nothing more and leaves no backlog, as the consumer's later
    rounds would: a round whose budget was spent on seeds that failed
    (put off for a minute) seeds nothing, yet leaves others unbegun.

    Returns the subscriptions a batch is then judged against.
    """
    while True:
        prepared = await matcher.prepare(conn)
        await MatchStore(schema).write(conn, prepared.seeds)
        if not prepared.seeds.seeded and not prepared.backlog:
            return prepared.subscriptions


async def judge_batch(
    matcher: SavedSearchMatcher,
    conn: Any,
    schema: str,
    issue_ids: list[int],
    subscriptions: list[v1.SavedSearchSubscription],
) -> tuple[dict[int, list[tuple[str, str]]], MatchChanges]:
    """What the consumer does with a batch of ``issue_ids``: judge it, commit its match rows.

    Returns who is told per issue and the rows written.
    """
    changes = MatchChanges()
    told = await matcher.changes(conn, issue_ids, changes, subscriptions)
    await MatchStore(schema).write(conn, changes)
    return told, changes
