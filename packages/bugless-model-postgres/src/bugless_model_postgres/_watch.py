"""The change feed: reading it (ReadFeed), following it (Watch), pruning it.

Every write transaction that writes history entries or changes components
appends one ``change_feed`` row as its last statement, numbered from the
``head`` row it holds locked until commit (migration 0005), so positions are
dense and in commit order. A reader that has handled position ``n`` resumes
with ``position > n`` and misses nothing, however the writers' transactions
interleaved: that is the whole contract, and the one mechanism behind
ReadFeed, Watch streams (and so the web's live updates) and the notifier.

Where writers cannot share the ``head`` row (SERIALIZABLE: bugless-model-cockroach),
a write appends its change to a pending table instead, and a
:class:`FeedSequencer` numbers the committed ones into ``change_feed``:
ReadFeed, Watch and pruning each run it (:meth:`ChangeFeed.catch_up`) before
they read the head or the rows, one pass at a time per process; what they
read is then the same dense, commit-ordered table as here.
A pass that fails is logged (as LISTEN's failures are) and the reader
reads what is numbered already: a later pass numbers the rest.

Readers learn of new rows by LISTEN/NOTIFY where the database has it (the
append NOTIFYs its position; the database sends it at commit) and by polling
otherwise. A notification is only a wake-up: what a reader returns always
comes from the table, so a lost or late notification costs latency, never a
change. One listener connection per backend process wakes every reader.

So a reader never fails because LISTEN does: whatever the listener's
connection or its LISTEN raises, readers poll meanwhile, and the listener is
tried again at most every :data:`LISTEN_RETRY_SECONDS` (not on every poll of
every stream). The database away is an outage (a WARNING when it starts, an
INFO line when LISTEN works again); any other error (a role whose CONNECT was
revoked, a database renamed or restored under the Model) is logged once at
ERROR with its traceback, until LISTEN works again. It used to fail the
Watch or ReadFeed call that met it, which is worse than the polling it had
always fallen back to.

A Watch stream subscribes by reading ``head``: every transaction committing
later takes a greater position (it cannot take one before the holder of
``head`` commits), so once the stream has read it, it yields its
``subscribed`` marker and then every change above it. A resumed stream
(``after_position``) walks up from that position instead, through the same
loop: it checks the position as ReadFeed does, and a gap in the positions it
reads (rows pruned while it read them) fails the stream rather than skipping
changes. Whatever a stream reads, it reads per batch of feed rows: the
issues (as the caller may view them), the query's matches and the entries
of all the batch's changes in a few statements, not a few per change.

Pruning (rows older than ``--feed-retention-seconds``) runs in a task of
every backend process, once per :data:`PRUNE_EVERY_SECONDS`, whether or not
anyone reads the feed: a deployment without a notifier keeps its table
bounded too. Replicas pruning at once delete the same prefix; the second
finds nothing. A database error skips one pruning (logged when the outage
starts, once a minute while it lasts and when it ends); any other error
is supervised as ``model.feed_pruning``
(:class:`~bugless_core.supervision.SupervisedLoop`: logged once with its
traceback, counted) and pruning goes on: it used to end the task, with the
error kept in it until :meth:`ChangeFeed.close` dropped it unseen, and the
table grew without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from bugless_core import limits
from bugless_core.database_errors import is_database_error
from bugless_core.errors import FeedPositionPruned, InvalidArgument
from bugless_core.migrations import quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_core.supervision import OutageLog, SupervisedLoop
from bugless_model_postgres import _queries as q
from bugless_model_postgres._attachments import fill_entries_of_issues, fill_feed_entries
from bugless_model_postgres._context import fetch_issue_rows, fetch_issues, issue_not_found
from bugless_model_postgres._convert import Conn, entry_from_row
from bugless_model_postgres._custom_search import CustomCatalog, load_catalog
from bugless_model_postgres._database import server_settings, translated_errors
from bugless_model_postgres._feed_passes import FeedSequencer, SequencingPasses
from bugless_model_postgres._hidden_hotlists import hide_hotlists
from bugless_model_postgres._search_refs import check_references, references_of
from bugless_model_postgres._watch_match import (
    field_changed,
    fields_gone,
    matching_now,
    matching_sql,
)
from bugless_model_postgres._watch_query import changes_that_left
from bugless_proto import v1

_log = logging.getLogger(__name__)

#: Changes one ReadFeed answers by default (the servicer bounds the rest).
DEFAULT_FEED_BATCH = 100
#: Longest a ReadFeed waits for a commit (checked by the servicer too).
MAX_FEED_WAIT_MS = 30_000
#: How often a reader looks at the table without a notification: always
#: where there is no LISTEN (CockroachDB), and as a safety net where there is.
POLL_SECONDS = 0.25
NOTIFIED_POLL_SECONDS = 5.0
#: After LISTEN failed, readers poll and the listener is tried again no
#: sooner than this (each try is a new connection).
LISTEN_RETRY_SECONDS = 5.0
#: Pruning runs this often in each process (it is one DELETE).
PRUNE_EVERY_SECONDS = 60.0
#: Rows a Watch stream reads per look.
_WATCH_BATCH = 200
#: Entries of those rows a stream reads in one go (a row of a batch change
#: lists many): the issues, entries and attachments of at most this many.
_EVENT_BATCH = limits.MAX_BATCH_GET
#: A query watch naming components or hotlists checks them again at least
#: this often while no change comes: see :meth:`ChangeFeed.watch`.
REFERENCES_RECHECK_SECONDS = 30.0
#: ... and at most this often while changes come: a batch of changes is
#: followed by a check once this long has passed since the last, so a
#: reference hidden under a busy watch ends it within this bound, and a
#: stream of small batches costs one check per interval, not one per batch.
REFERENCES_THROTTLE_SECONDS = 3.0
#: What a watcher resuming below the retention must do.
_WATCH_REMEDY = (
    "the changes since are gone: re-read the current state (the issue, or a search) "
    "and watch again without after_position"
)


class ChangeFeed:
    """The process's view of the change feed: wake-ups, reads, pruning."""

    def __init__(
        self,
        settings: ModelSettings,
        channel: str,
        pool: asyncpg.Pool,
        uses_notify: Callable[[], bool],
    ) -> None:
        """Read through ``pool``; listen on ``channel`` when ``uses_notify()``."""
        self._settings = settings
        self._channel = channel
        self._pool = pool
        self._uses_notify = uses_notify
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._closed = False
        self._pruner: asyncio.Task[None] | None = None
        self._pruning = SupervisedLoop(
            "model.feed_pruning",
            outage=OutageLog("change feed pruning", logger=_log, meanwhile="trying again later"),
        )
        # Every read and Watch tries to LISTEN while it cannot: logged when
        # that starts and ends, not on every request.
        self._listening = OutageLog(
            "change feed LISTEN", logger=_log, meanwhile="polling meanwhile"
        )
        #: A LISTEN failure that is not an outage was logged (at ERROR) and
        #: LISTEN has not worked since.
        self._listen_bug_logged = False
        #: ``time.monotonic()`` before which LISTEN is not tried again.
        self._listen_retry_at = 0.0
        #: Prunings done by this process (for tests and metrics).
        self.prunings = 0
        #: Open Watch streams (for tests and metrics).
        self.streams = 0
        #: Set by a backend whose writes append to a pending table.
        self.sequencer: FeedSequencer | None = None
        self._passes = SequencingPasses(self._wake)

    # ---- wake-ups ----

    async def _listen(self) -> None:
        """Make sure the listener connection is up; a failure of any kind means: poll.

        Never raises (but cancellation): see the module for how a failure is
        logged and when LISTEN is tried again.
        """
        if not self._uses_notify():
            return
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            if time.monotonic() < self._listen_retry_at or self._closed:
                return
            schema_sql = quote_schema(self._settings.schema)
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._settings.database_url,
                    server_settings=server_settings(self._settings, schema_sql),
                )
                await conn.add_listener(self._channel, self._on_notify)
            except Exception as exc:
                if conn is not None:
                    conn.terminate()
                self._listen_retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
                self._listen_failed(exc)
                return
            conn.add_termination_listener(self._on_lost)
            self._conn = conn
            self._listen_retry_at = 0.0
            self._listening.recovered()
            if self._listen_bug_logged:
                self._listen_bug_logged = False
                _log.info("change feed LISTEN: working again")

    def _listen_failed(self, exc: Exception) -> None:
        """Log a LISTEN failure: an outage through the outage log, a bug once at ERROR."""
        if is_database_error(exc):
            self._listening.failed(exc, stacklevel=3)
        elif not self._listen_bug_logged:
            self._listen_bug_logged = True
            _log.error(
                "change feed LISTEN failed unexpectedly; polling meanwhile "
                "(logged once until LISTEN works again, tried every %g s)",
                LISTEN_RETRY_SECONDS,
                exc_info=exc,
            )
        else:
            _log.debug("change feed LISTEN still failing: %r", exc)

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake()

    def _on_lost(self, _conn: object) -> None:
        self._conn = None
        self._wake()

    def _poll_seconds(self) -> float:
        listening = self._conn is not None and not self._conn.is_closed()
        return NOTIFIED_POLL_SECONDS if listening else POLL_SECONDS

    def committed(self) -> None:
        """A write of this process committed: wake its readers (they sequence it at once)."""
        self._wake()

    async def catch_up(self) -> None:
        """Have the sequencer number what has committed so far (no sequencer: nothing).

        Never raises (but cancellation): a failed pass is logged and the
        reader reads what is numbered (:mod:`bugless_model_postgres._feed_passes`).
        """
        if self.sequencer is not None:
            await self._passes.catch_up(self.sequencer)

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` (taken *before* the read that found nothing) or ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    async def close(self) -> None:
        """Stop pruning, wake every reader (they end) and close the listener connection."""
        self._closed = True
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pruner
            self._pruner = None
        self._wake()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close()

    # ---- reads ----

    async def _state(self, conn: Conn) -> tuple[int, int]:
        """``(head, pruned)`` positions."""
        state = {r["name"]: r["position"] for r in await conn.fetch(q.FEED_STATE)}
        return int(state["head"]), int(state["pruned"])

    def start_pruning(self) -> None:
        """Prune every :data:`PRUNE_EVERY_SECONDS` until :meth:`close` (see the module)."""
        if self._pruner is None and not self._closed:
            self._pruner = asyncio.get_running_loop().create_task(self._prune_forever())

    async def _prune_forever(self) -> None:
        while not self._closed:
            wait = PRUNE_EVERY_SECONDS
            try:
                await self.prune()
            except Exception as exc:
                if is_database_error(exc):
                    self._pruning.unavailable(exc)
                else:  # a bug: logged and counted once, pruning goes on
                    wait = self._pruning.failed(exc, at_least=wait)
            else:
                self._pruning.succeeded()
            await asyncio.sleep(wait)

    async def prune(self) -> None:
        """Number the pending changes (if sequenced), then delete those older than the retention.

        Sequencing here too keeps a pending table bounded where nobody reads
        the feed.
        """
        await self.catch_up()
        cutoff = datetime.now(UTC) - timedelta(seconds=self._settings.feed_retention_seconds)
        async with self._pool.acquire() as conn:
            await conn.execute(q.PRUNE_FEED, cutoff)
        self.prunings += 1

    async def read_feed(self, request: v1.ReadFeedRequest) -> v1.ReadFeedResponse:
        """Changes after ``request.after_position``, waiting for one if asked.

        Raises:
            FeedPositionPruned: the position is older than the retention.
            InvalidArgument: the position is beyond the head (another feed's).
        """
        caller = request.caller or v1.Caller()
        size = request.max_changes or DEFAULT_FEED_BATCH
        deadline = time.monotonic() + min(request.wait_ms, MAX_FEED_WAIT_MS) / 1000
        await self._listen()
        while True:
            changed = self._changed
            await self.catch_up()
            async with translated_errors(), self._pool.acquire() as conn:
                head, pruned = await self._state(conn)
                if request.head_only:
                    return v1.ReadFeedResponse(head_position=head, oldest_position=pruned + 1)
                _check_position(request.after_position, head, pruned)
                rows = await conn.fetch(q.READ_FEED, request.after_position, size)
                if rows or time.monotonic() >= deadline or self._closed:
                    changes = await _feed_changes(conn, caller, rows)
                    return v1.ReadFeedResponse(
                        changes=changes, head_position=head, oldest_position=pruned + 1
                    )
            await self._wait(changed, min(self._poll_seconds(), deadline - time.monotonic()))

    async def watch(self, request: v1.WatchRequest) -> AsyncGenerator[v1.WatchEvent, None]:
        """Events for ``request`` until the consumer stops iterating.

        The first event is the ``subscribed`` marker, sent once the head is
        read (and a watched issue found visible): every change committed
        later has a greater position and is read from the table. A resumed
        watch (``after_position``) reads from that position instead, through
        the same loop: the replay and the live changes are one walk up the
        dense positions, so a change committed during the replay is simply
        the next row, never missed nor read twice.

        Raises:
            FeedPositionPruned: the resume position is older than the
                retention, or the rows after it were pruned while the stream
                was reading them (their changes are gone).
            InvalidArgument: the resume position is beyond the head, or the
                query names a custom field there is none of, or a component
                or hotlist the caller may not see (``_search_refs``): when the
                watch starts, and while it runs (see below).
            FailedPrecondition: a custom field the query names was deleted
                or renamed while the stream was open (reason
                ``WATCHED_FIELD_CHANGED``, see :func:`fields_gone`).

        The components and hotlists a query names are checked again while
        the stream runs, as a new watch would check them: once changes have
        come, as soon as :data:`REFERENCES_THROTTLE_SECONDS` have passed
        since the last check (at once, when they have), and every
        :data:`REFERENCES_RECHECK_SECONDS` while none comes (a hotlist's
        privacy is no change of the feed). One made private, restricted or
        deleted under an open watch ends it with the INVALID_ARGUMENT a new
        watch would get, naming the term, within that bound; it used to
        match nothing from then on, silently, which a watcher reads as "no
        such changes". Until then the events are what the caller may see
        anyway: the issues are read with their visibility, and a hidden
        component's or hotlist's term matches none. One statement per
        interval, however many batches come in it (it was one per batch:
        a busy feed read in batches of a few rows paid it for each).
        """
        caller = request.caller or v1.Caller()
        await self._listen()
        await self.catch_up()
        async with translated_errors(), self._pool.acquire() as conn:
            head, pruned = await self._state(conn)
            if request.after_position is not None:
                _check_position(request.after_position, head, pruned, _WATCH_REMEDY)
            if request.issue_id and not await fetch_issues(conn, caller, [request.issue_id]):
                raise issue_not_found(request.issue_id)
            named = CustomCatalog()
            if request.query is not None and not request.issue_id:
                # Refused before the marker, as a search would refuse it.
                named = await load_catalog(conn, request.query)
                matching_sql(request.query, caller, [], named)
                await check_references(conn, request.query, caller)
        position = head if request.after_position is None else request.after_position
        # The query whose references are checked again (None: it names none).
        recheck = request.query if _named_references(request) else None
        checked_at = time.monotonic()
        # Changes came since the last check: one is owed once the throttle allows.
        owed = False
        self.streams += 1
        try:
            yield v1.WatchEvent(subscribed=True, position=head)
            while not self._closed:
                changed = self._changed
                await self.catch_up()
                async with translated_errors(), self._pool.acquire() as conn:
                    rows = await conn.fetch(q.READ_FEED, position, _WATCH_BATCH)
                    if rows and rows[0]["position"] != position + 1:
                        head, pruned = await self._state(conn)
                        _check_position(position, head, pruned, _WATCH_REMEDY)
                    owed = owed or bool(rows)
                    since = time.monotonic() - checked_at
                    if recheck is not None and (
                        since >= REFERENCES_RECHECK_SECONDS
                        or (owed and since >= REFERENCES_THROTTLE_SECONDS)
                    ):
                        await check_references(conn, recheck, caller)
                        checked_at, owed = time.monotonic(), False
                wanted = [
                    (row["position"], issue_id, version)
                    for row in rows
                    for issue_id, version in zip(row["issue_ids"], row["versions"], strict=True)
                    if not request.issue_id or issue_id == request.issue_id
                ]
                for start in range(0, len(wanted), _EVENT_BATCH):
                    for event in await self._events(
                        request, caller, named, wanted[start : start + _EVENT_BATCH]
                    ):
                        yield event
                if rows:
                    position = rows[-1]["position"]
                else:
                    await self._listen()
                    wait = self._poll_seconds()
                    if recheck is not None and owed:
                        # Wake for the check owed, though no change comes.
                        owed_in = checked_at + REFERENCES_THROTTLE_SECONDS - time.monotonic()
                        wait = min(wait, max(owed_in, 0.0))
                    await self._wait(changed, wait)
        finally:
            self.streams -= 1

    async def _events(
        self,
        request: v1.WatchRequest,
        caller: v1.Caller,
        named: CustomCatalog,
        wanted: list[tuple[int, int, int]],
    ) -> list[v1.WatchEvent]:
        """The events of ``wanted`` (position, issue id, version), in its order.

        Each is left out when the caller may not view its issue, the issue
        does not match the query, or its entry is gone; but a change that
        made the issue stop matching a query is a ``left_query`` event
        (:mod:`bugless_model_postgres._watch_query`), with the issue and
        entry when the caller may still view it, their ids alone when not.
        The query is judged
        with the custom field definitions as they are now; ``named`` are the
        ones it named when the watch began (see :func:`fields_gone`). A few
        statements for the lot (the issues with the caller's visibility, the
        query's matches among them, the states of the changes that may have
        left it, the entries, their attachments) where a change used to cost
        as many by itself: a watch resumed after
        thousands of changes catches up in a few statements per batch
        (bench/JOURNAL.md, "Session 22: a resumed Watch reads per batch").
        Two entries of one issue share its message, as read once for both.
        """
        if not wanted:
            return []
        left: set[tuple[int, int]] = set()
        async with translated_errors(), self._pool.acquire() as conn:
            issues = await fetch_issues(conn, caller, sorted({i for _, i, _ in wanted}))
            shown = set(issues)
            if request.query is not None and not request.issue_id:
                catalog = await load_catalog(conn, request.query)
                if gone := fields_gone(request.query, named, catalog):
                    raise gone
                with field_changed():
                    shown = await matching_now(conn, request.query, caller, catalog, sorted(issues))
                    # A change of an issue matching now that is its latest
                    # left it matching: only the others can have made it leave.
                    maybe_left = [
                        (i, v) for _, i, v in wanted if i not in shown or v != issues[i].version
                    ]
                    left = await changes_that_left(
                        conn, request.query, caller, catalog, maybe_left, viewable=issues
                    )
            pairs = [(i, v) for _, i, v in wanted if i in shown or (i, v) in left]
            if not pairs:
                return []
            found = await conn.fetch(q.FETCH_ENTRIES, [i for i, _ in pairs], [v for _, v in pairs])
            entries = {(row["issue_id"], row["version"]): entry_from_row(row) for row in found}
            await fill_entries_of_issues(conn, [e for (i, _), e in entries.items() if i in issues])
            await hide_hotlists(conn, caller, list(entries.values()), keep_empty=True)
        events: list[v1.WatchEvent] = []
        for position, i, v in wanted:
            if (i, v) in left and i not in issues:  # out of the caller's view now
                events.append(
                    v1.WatchEvent(
                        issue=v1.Issue(id=i),
                        entry=v1.HistoryEntry(issue_id=i, version=v),
                        position=position,
                        left_query=True,
                    )
                )
            elif (i in shown or (i, v) in left) and (i, v) in entries:
                events.append(
                    v1.WatchEvent(
                        issue=issues[i],
                        entry=entries[i, v],
                        position=position,
                        left_query=(i, v) in left,
                    )
                )
        return events


def _named_references(request: v1.WatchRequest) -> bool:
    """Whether ``request`` is a query watch naming components or hotlists (checked as it runs)."""
    return request.query is not None and not request.issue_id and bool(references_of(request.query))


def _check_position(
    after: int,
    head: int,
    pruned: int,
    remedy: str = "rebuild from the current state and resume at the head",
) -> None:
    """Refuse a resume position whose later changes are pruned, or beyond the head.

    ReadFeed and a resumed Watch give the same answer (and the same
    ErrorInfo metadata), so a consumer handles both alike.
    """
    metadata = {"oldest_position": str(pruned + 1), "head_position": str(head)}
    if after < pruned:
        msg = (
            f"after_position {after} is older than the change feed's retention: changes up to "
            f"{pruned} were pruned (the oldest kept is {pruned + 1}, the head {head}); "
            f"{remedy}"
        )
        raise FeedPositionPruned(msg, metadata=metadata)
    if after > head:
        msg = (
            f"after_position {after} is beyond the change feed's head {head}: "
            "it is not a position of this deployment's feed"
        )
        raise InvalidArgument(msg, metadata={"field": "after_position", **metadata})


async def _feed_changes(
    conn: Conn, caller: v1.Caller, rows: list[asyncpg.Record]
) -> list[v1.FeedChange]:
    """The rows as messages, leaving out entries of issues ``caller`` may not view."""
    if caller.admin:
        visible: set[int] | None = None
    else:
        ids = sorted({i for row in rows for i in row["issue_ids"]})
        visible = set()
        for start in range(0, len(ids), limits.MAX_BATCH_GET):
            visible |= set(
                await fetch_issue_rows(conn, caller, ids[start : start + limits.MAX_BATCH_GET])
            )
    entries = {
        row["position"]: [
            v1.FeedEntry(issue_id=i, version=v)
            for i, v in zip(row["issue_ids"], row["versions"], strict=True)
            if visible is None or i in visible
        ]
        for row in rows
    }
    await fill_feed_entries(conn, [e for listed in entries.values() for e in listed])
    return [
        v1.FeedChange(
            position=row["position"],
            committed_at=row["committed_at"],
            author=row["author"],
            entries=entries[row["position"]],
            component_ids=list(row["component_ids"]) if caller.admin else [],
        )
        for row in rows
    ]
