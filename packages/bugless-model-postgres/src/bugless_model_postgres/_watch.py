"""Watch streams on LISTEN/NOTIFY.

Every committed history entry NOTIFYs ``<issue id>:<version>:<xid>`` on the
deployment's channel (sent by the database at commit, never for a rolled-back
transaction; ``xid`` is the writing transaction). One listener connection per
backend process fans the notifications out to every open stream; each stream
re-reads the issue with its own caller, so visibility and the query are checked
per event on the issue as it is after the change.

A stream reports only entries committed after it subscribed. Notifications
reach the listener some time after their commit (later still on a busy
machine), so one that arrives after a stream registered may belong to a
transaction that committed before: each stream takes a snapshot right after
registering and drops the notifications of transactions that snapshot already
saw as committed.

Once that snapshot is taken the stream yields its ``subscribed`` marker: every
transaction committing after that moment is missing from the snapshot and its
notification reaches the already registered queue, so a client that writes
after receiving the marker cannot miss its own change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import asyncpg

from bugless_core.errors import Unavailable
from bugless_core.migrations import quote_schema
from bugless_core.model.backend import ModelSettings
from bugless_core.search.build import all_of, term
from bugless_model_postgres import _queries as q
from bugless_model_postgres import _search
from bugless_model_postgres._context import fetch_issues, issue_not_found
from bugless_model_postgres._convert import entry_from_row, principals_of
from bugless_model_postgres._database import server_settings, translated_errors
from bugless_proto import v1

#: A notification: issue id, version, writing transaction id.
Notice = tuple[int, int, int]
#: Queue item meaning "the listener connection is gone".
_LOST: Notice = (-1, -1, -1)


@dataclass(frozen=True)
class Snapshot:
    """Which transactions had committed at one moment (``pg_current_snapshot()``).

    Attributes:
        xmin: Every transaction below this had finished.
        xmax: No transaction at or above this had finished.
        in_progress: Transactions between the two that were still running.
    """

    xmin: int
    xmax: int
    in_progress: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """Read the ``xmin:xmax:xip,...`` text form of a ``pg_snapshot``."""
        xmin, xmax, running = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in running.split(",") if x))

    def saw_committed(self, xid: int) -> bool:
        """Whether ``xid`` (known to have committed) had committed already.

        The rule of ``pg_visible_in_snapshot``, computed here so that the
        check costs no round trip per notification.
        """
        return xid < self.xmin or (xid < self.xmax and xid not in self.in_progress)


#: Stands for the transaction of a notification that names none (sent by a
#: replica of an older release during a rolling upgrade): delivered, as before.
UNKNOWN_XID = 1 << 64


def parse_notice(payload: str) -> Notice:
    """``issue_id:version:xid`` (or the older ``issue_id:version``) as numbers."""
    issue_id, version, *xid = payload.split(":")
    return int(issue_id), int(version), int(xid[0]) if xid else UNKNOWN_XID


class ChangeFeed:
    """Shared LISTEN connection and the streams fed from it."""

    def __init__(self, settings: ModelSettings, channel: str, pool: asyncpg.Pool) -> None:
        """Feed streams from ``channel``; reads go through ``pool``."""
        self._settings = settings
        self._channel = channel
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._queues: set[asyncio.Queue[Notice]] = set()

    async def _listen(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            schema_sql = quote_schema(self._settings.schema)
            async with translated_errors():
                conn = await asyncpg.connect(
                    self._settings.database_url,
                    server_settings=server_settings(self._settings, schema_sql),
                )
                await conn.add_listener(self._channel, self._on_notify)
            conn.add_termination_listener(self._on_lost)
            self._conn = conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        # asyncpg types the payload as object; a NOTIFY payload is always text.
        item = parse_notice(str(payload))
        for queue in self._queues:
            queue.put_nowait(item)

    def _on_lost(self, _conn: object) -> None:
        self._conn = None
        for queue in self._queues:
            queue.put_nowait(_LOST)

    async def close(self) -> None:
        """End every stream and close the listener connection."""
        for queue in self._queues:
            queue.put_nowait(_LOST)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close()

    async def watch(self, request: v1.WatchRequest) -> AsyncGenerator[v1.WatchEvent, None]:
        """Events for ``request`` until the consumer stops iterating.

        The first event is the ``subscribed`` marker, sent once the queue is
        registered and the snapshot taken (and a watched issue found visible):
        from then on no committed change is missed.
        """
        caller = request.caller or v1.Caller()
        queue: asyncio.Queue[Notice] = asyncio.Queue()
        await self._listen()
        self._queues.add(queue)
        try:
            # Taken after registering: whatever commits later is queued.
            async with translated_errors(), self._pool.acquire() as conn:
                subscribed = Snapshot.parse(await conn.fetchval(q.CURRENT_SNAPSHOT))
                if request.issue_id and not await fetch_issues(conn, caller, [request.issue_id]):
                    raise issue_not_found(request.issue_id)
            yield v1.WatchEvent(subscribed=True)
            while True:
                notice = await queue.get()
                if notice == _LOST:
                    msg = "the database is unreachable: the change feed was interrupted"
                    raise Unavailable(msg)
                issue_id, version, xid = notice
                if subscribed.saw_committed(xid):
                    continue
                if request.issue_id and issue_id != request.issue_id:
                    continue
                event = await self._event(request, caller, issue_id, version)
                if event is not None:
                    yield event
        finally:
            self._queues.discard(queue)

    async def _event(
        self, request: v1.WatchRequest, caller: v1.Caller, issue_id: int, version: int
    ) -> v1.WatchEvent | None:
        async with translated_errors(), self._pool.acquire() as conn:
            issues = await fetch_issues(conn, caller, [issue_id])
            if issue_id not in issues:
                return None
            if request.query is not None and not request.issue_id:
                only = all_of(
                    request.query.filter or v1.SearchNode(),
                    term(v1.SearchField.ID, v1.SearchOperator.EQ, issue_id),
                )
                compiled = _search.compile_search(
                    v1.StructuredQuery(filter=only), caller, principals_of(caller), None
                )
                if not await conn.fetch(compiled.page_sql, *compiled.page_params, 1):
                    return None
            row = await conn.fetchrow(q.FETCH_ENTRY, issue_id, version)
        if row is None:
            return None
        return v1.WatchEvent(issue=issues[issue_id], entry=entry_from_row(row))
