"""The feed consumer: the Model's change feed in, queued deliveries out.

One replica at a time consumes (it holds a session advisory lock on a
connection of its own; when it dies, PostgreSQL drops the lock with the
connection and another replica takes over within a second or two). Every
replica runs a :class:`~bugless_notify.worker.DeliveryWorker`, so delivering
is shared by all of them.

For each batch of feed changes the consumer computes every delivery, then in
**one transaction**: locks its cursor row, checks it still holds the position
it read from (a replica that lost the lock mid-batch finds it moved and drops
its work), enqueues the deliveries (idempotent keys
``change-<issue>-<version>/email/<user>``) and advances the cursor. A crash
anywhere before the commit replays the batch; one after it has nothing left
to do. So no change is skipped, and a change processed twice is never queued
twice.

What a batch's changes turn into, each recipient checked as themselves, is
:mod:`bugless_notify._deliveries`'s work.

An error the consumer does not expect (not a Model, network or database
error: a bug, a change it cannot render) is supervised as
``notify.feed_consumer`` (:class:`~bugless_core.supervision.SupervisedLoop`):
logged once with its traceback, counted, and the batch tried again after a
backoff (nothing was committed, so nothing is skipped). It used to end
:meth:`FeedConsumer.run` and with it the notifier. An error it expects (the
Model or a database away) is retried every second and logged once when the
outage starts, once a minute while it lasts and once when it ends
(:class:`~bugless_core.supervision.OutageLog`), not on every round.

Speed: saved searches are matched once per batch
(:mod:`bugless_notify._saved_searches`), and a batch's issues are worked on
concurrently, each with the few calls :mod:`bugless_notify._deliveries`
counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_core.clients import ActingFor, acting_model, call
from bugless_core.database_errors import is_database_error
from bugless_core.errors import BuglessError, FailedPrecondition, InvalidArgument
from bugless_core.migrations import quote_schema
from bugless_core.supervision import OutageLog, SupervisedLoop
from bugless_notify._deliveries import NOTIFIER, Batch, IssueDeliveries
from bugless_notify._metrics import seed_backlog_gauge
from bugless_notify._redactions import WaitingMessages
from bugless_notify._saved_search_store import MatchChanges, MatchStore
from bugless_notify._saved_searches import SavedSearchMatcher, SeedBudget
from bugless_notify.component_webhooks import ComponentWebhookStore
from bugless_notify.digest import DigestStore
from bugless_notify.queue import DeliveryQueue
from bugless_proto import v1

_log = logging.getLogger("bugless.notify")

CURSOR = "main"
#: Wait for a commit this long per ReadFeed when the feed is idle.
FEED_WAIT_MS = 2000
#: Issues of one batch worked on at once.
ISSUES_AT_ONCE = 32


@dataclass
class ConsumerOptions:
    """How the consumer works (from :class:`~bugless_notify.settings.NotifierSettings`).

    Attributes:
        public_url: The web UI's base URL.
        notify_authors: Tell people about their own changes.
        batch: Feed changes per transaction.
        schema: The notifier's schema.
    """

    public_url: str
    notify_authors: bool = False
    batch: int = 100
    schema: str = "bugless_notify"


class FeedConsumer:
    """Reads the feed from the durable cursor and queues deliveries (see the module)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        queue: DeliveryQueue,
        model: v1.ModelStub,
        auth: v1.AuthenticatorStub,
        options: ConsumerOptions,
        *,
        metrics_registry: CollectorRegistry = REGISTRY,
        seed_budget: SeedBudget | None = None,
    ) -> None:
        """Work on ``pool`` (the notifier's database) with the given stubs.

        ``metrics_registry`` is where the loop's ``bugless_background_*``
        metrics and ``bugless_notify_saved_search_seed_backlog`` go (the
        process registry unless a test has its own); ``seed_budget`` is how
        much seeding of new saved-search subscriptions a round does (None:
        :class:`~bugless_notify._saved_searches.SeedBudget`'s defaults).
        """
        self._pool = pool
        self._queue = queue
        self._model = model
        acting_for = ActingFor(auth)
        self._searches = SavedSearchMatcher(
            model,
            acting_model(model, acting_for),
            auth,
            NOTIFIER,
            options.schema,
            seed_budget=seed_budget or SeedBudget(),
        )
        self._seed_backlog = seed_backlog_gauge(metrics_registry)
        self._deliveries = IssueDeliveries(
            model,
            auth,
            acting_for,
            public_url=options.public_url,
            notify_authors=options.notify_authors,
        )
        self.options = options
        self._digests = DigestStore(options.schema)
        self._webhooks = ComponentWebhookStore(options.schema)
        self._waiting = WaitingMessages(options.schema)
        schema = quote_schema(options.schema)
        self._cursor_sql = f"SELECT position FROM {schema}.feed_cursor WHERE name = $1"
        self._lock_cursor_sql = f"{self._cursor_sql} FOR UPDATE"
        self._init_cursor_sql = (
            f"INSERT INTO {schema}.feed_cursor (name, position) VALUES ($1, $2) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self._advance_sql = (
            f"UPDATE {schema}.feed_cursor SET position = $2, updated_at = now() WHERE name = $1"
        )
        self._matches = MatchStore(options.schema)
        self._lock_key = f"bugless-notify-feed:{options.schema}"
        self._stopping = asyncio.Event()
        self.supervised = SupervisedLoop(
            "notify.feed_consumer",
            registry=metrics_registry,
            outage=OutageLog("feed consumer", logger=_log, meanwhile="retrying every second"),
        )
        #: Changes handled by this process (for tests and metrics).
        self.handled = 0

    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume while this replica holds the consumer lock; retry on errors."""
        while not self._stopping.is_set():
            try:
                await self._lead()
            except Exception as exc:
                if is_database_error(exc):
                    # The Model (a BuglessError) or a database away: logged when
                    # it starts and ends.
                    self.supervised.unavailable(exc)
                    await self._sleep(1.0)
                else:  # a bug: logged and counted once, the batch retried
                    await self._sleep(self.supervised.failed(exc))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _lead(self) -> None:
        """Take the consumer lock (or wait for it), then consume until stopped."""
        async with self._pool.acquire() as conn:
            await self._lead_on(conn)

    async def _lead_on(self, conn: Any) -> None:
        """Consume on ``conn``'s session lock; a dead replica's lock goes with its connection."""
        got = await conn.fetchval(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", self._lock_key
        )
        if not got:
            self.supervised.succeeded()  # the database answered: another replica consumes
            self._seed_backlog.set(0)  # the consuming replica's is the one to read
            await self._sleep(1.0)
            return
        self._searches.forget_settled()  # another replica may have seeded meanwhile
        try:
            while not self._stopping.is_set() and not conn.is_closed():
                await self._step()
                self.supervised.succeeded()
        finally:
            with contextlib.suppress(Exception):
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))", self._lock_key
                )

    async def ensure_cursor(self) -> int:
        """The cursor's position; a first start begins at the feed's head."""
        async with self._pool.acquire() as conn:
            position = await conn.fetchval(self._cursor_sql, CURSOR)
            if position is not None:
                return int(position)
            head = await call(
                self._model.read_feed, v1.ReadFeedRequest(caller=NOTIFIER, head_only=True)
            )
            await conn.execute(self._init_cursor_sql, CURSOR, head.head_position)
            return int(await conn.fetchval(self._cursor_sql, CURSOR))

    async def start_at_head_if_restored(self) -> None:
        """Before the notifier reports ready: a cursor beyond the feed's head goes back to it.

        A Model restored from a backup older than the queue leaves the cursor
        beyond its feed. :meth:`_step` finds that too, but only on its first
        read, and takes the head *then*: a change made between the start and
        that read would be inside the skipped span. Checked here, before the
        notifier says it is ready, every change made once it is up is after
        the cursor, as on a first start (:meth:`ensure_cursor`).
        """
        position = await self.ensure_cursor()
        try:
            head = await call(
                self._model.read_feed, v1.ReadFeedRequest(caller=NOTIFIER, head_only=True)
            )
        except (BuglessError, OSError) as exc:
            # The Model is not reachable yet: start anyway; _step finds a
            # restored feed on its first read, as it always could.
            _log.warning("feed consumer: the feed's head is unknown at start: %s", exc)
            return
        if position > head.head_position:
            _log.error(
                "feed consumer: the cursor %d is beyond the Model's feed head %d (was the "
                "Model's database restored from a backup?); starting again at the head",
                position,
                head.head_position,
            )
            await self._commit(position, head.head_position, Batch())

    async def _step(self) -> None:
        """One batch: seed new saved-search subscriptions, read, compute, then commit.

        The seeds are committed before the feed is read (on an idle round
        too), so the batch's changes are judged against what each new
        subscription matched before them (:mod:`bugless_notify._saved_searches`).
        """
        position = await self.ensure_cursor()
        async with self._pool.acquire() as conn:
            prepared = await self._searches.prepare(conn)
        self._seed_backlog.set(prepared.backlog)
        if prepared.seeds.seeds_anything():
            await self._commit(position, position, Batch(), prepared.seeds)
        request = v1.ReadFeedRequest(
            caller=NOTIFIER,
            after_position=position,
            max_changes=self.options.batch,
            wait_ms=FEED_WAIT_MS,
        )
        try:
            answer = await call(self._model.read_feed, request)
        except FailedPrecondition as exc:
            # Changes were pruned before we read them: they cannot be
            # notified any more. Say so loudly and carry on from the head.
            head = int(exc.metadata.get("head_position", position))
            _log.error("feed consumer: %s; skipping to position %d", exc.message, head)
            await self._commit(position, head, Batch())
            return
        except InvalidArgument as exc:
            # The cursor is beyond the feed's head: the Model's database was
            # restored to an earlier moment than this queue's. Waiting for the
            # feed to pass the cursor would skip every change up to it, so the
            # cursor goes back to the head and the changes from now on are
            # notified (those between the backup and the loss are gone).
            if (
                exc.metadata.get("field") != "after_position"
                or not (head_text := exc.metadata.get("head_position", "")).isdigit()
            ):
                raise
            _log.error(
                "feed consumer: the cursor %d is beyond the Model's feed head %s (was the "
                "Model's database restored from a backup?); starting again at the head",
                position,
                head_text,
            )
            await self._commit(position, int(head_text), Batch())
            return
        if not answer.changes:
            return
        batch = Batch()
        # One issue's entries are worked on together (one Model read for all
        # of them, one for their recipients), issues concurrently.
        by_issue: dict[int, list[tuple[int, str]]] = {}
        for change in answer.changes:
            for entry in change.entries:
                by_issue.setdefault(entry.issue_id, []).append((entry.version, change.author))
        async with self._pool.acquire() as conn:
            matches = MatchChanges()
            searches = await self._searches.changes(
                conn, list(by_issue), matches, prepared.subscriptions
            )
            batch.webhooks = await self._webhooks.enabled(conn)
        limit = asyncio.Semaphore(ISSUES_AT_ONCE)

        async def one_issue(issue_id: int, entries: list[tuple[int, str]]) -> None:
            async with limit:
                await self._deliveries.add(issue_id, entries, searches.get(issue_id, []), batch)

        await asyncio.gather(*(one_issue(i, e) for i, e in by_issue.items()))
        await self._render_redacted_again(batch)
        await self._commit(position, answer.changes[-1].position, batch, matches)
        self.handled += len(answer.changes)

    async def _render_redacted_again(self, batch: Batch) -> None:
        """Render again what still waits about text the batch's redactions removed.

        See :mod:`bugless_notify._redactions`: the new renderings read the
        entries as they are now, so the removed text is in none of them, and
        :meth:`_commit` puts them in place of the old ones.
        """
        for redaction in batch.redactions:
            async with self._pool.acquire() as conn:
                waiting, digests = await self._waiting.about(conn, redaction)
            if not waiting:
                continue
            rendered = await self._deliveries.render_again(
                redaction.issue_id, waiting, webhooks=batch.webhooks, parents=batch.parents
            )
            ids = [w.id for messages in waiting.values() for w in messages]
            batch.rewrites.append((ids, digests, rendered))

    async def _commit(
        self, read_from: int, to: int, batch: Batch, matches: MatchChanges | None = None
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchval(self._lock_cursor_sql, CURSOR)
            if current != read_from:
                _log.info("feed consumer: cursor moved to %s under us; batch dropped", current)
                return
            await self._queue.enqueue(conn, batch.deliveries)
            await self._digests.add(conn, batch.digest)
            for waiting, digests, rendered in batch.rewrites:
                await self._waiting.replace(conn, waiting, digests, rendered)
            if matches is not None:
                await self._matches.write(conn, matches)
            await conn.execute(self._advance_sql, CURSOR, to)
