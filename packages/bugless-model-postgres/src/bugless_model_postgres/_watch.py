"""Watch streams on LISTEN/NOTIFY.

Every committed history entry NOTIFYs ``<issue id>:<version>`` on the
deployment's channel (sent by the database at commit, never for a rolled-back
transaction). One listener connection per backend process fans the
notifications out to every open stream; each stream re-reads the issue with
its own caller, so visibility and the query are checked per event on the
issue as it is after the change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import asyncpg

from bugless_core.errors import Unavailable
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import _migrations, _search
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import fetch_issues, issue_not_found
from bugless_model_postgres._convert import entry_from_row, principals_of
from bugless_model_postgres._database import server_settings, translated_errors
from bugless_proto import v1

#: Queue item meaning "the listener connection is gone".
_LOST = (-1, -1)


class ChangeFeed:
    """Shared LISTEN connection and the streams fed from it."""

    def __init__(self, settings: ModelSettings, channel: str, pool: asyncpg.Pool) -> None:
        """Feed streams from ``channel``; reads go through ``pool``."""
        self._settings = settings
        self._channel = channel
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._queues: set[asyncio.Queue[tuple[int, int]]] = set()

    async def _listen(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            schema_sql = _migrations.quote_schema(self._settings.schema)
            async with translated_errors():
                conn = await asyncpg.connect(
                    self._settings.database_url,
                    server_settings=server_settings(self._settings, schema_sql),
                )
                await conn.add_listener(self._channel, self._on_notify)
            conn.add_termination_listener(self._on_lost)
            self._conn = conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        issue_id, _, version = payload.partition(":")
        item = (int(issue_id), int(version))
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
        """Events for ``request`` until the consumer stops iterating."""
        caller = request.caller or v1.Caller()
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        await self._listen()
        self._queues.add(queue)
        try:
            if request.issue_id:
                async with translated_errors(), self._pool.acquire() as conn:
                    if not await fetch_issues(conn, caller, [request.issue_id]):
                        raise issue_not_found(request.issue_id)
            while True:
                issue_id, version = await queue.get()
                if (issue_id, version) == _LOST:
                    msg = "the database is unreachable: the change feed was interrupted"
                    raise Unavailable(msg)
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
                only = v1.SearchNode(
                    all_of=v1.SearchNodeList(
                        nodes=[
                            request.query.filter or v1.SearchNode(),
                            v1.SearchNode(
                                term=v1.SearchTerm(
                                    field=v1.SearchField.ID,
                                    op=v1.SearchOperator.EQ,
                                    values=[v1.SearchValue(integer=issue_id)],
                                )
                            ),
                        ]
                    )
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
