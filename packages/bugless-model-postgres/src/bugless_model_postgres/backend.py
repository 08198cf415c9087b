"""The PostgreSQL Model backend: orchestration and transactions.

Statements live in :mod:`._queries` and :mod:`._collection_queries`, the
search compiler in :mod:`._search`, write logic in :mod:`._issues`,
:mod:`._components` and :mod:`._hotlists`, the batch writes in
:mod:`._batch_create` and :mod:`._batch_change`.
This module opens transactions, pages results and announces committed
history entries to change listeners only after the commit; every write
transaction also appends its change-feed row (:mod:`._watch`), which ReadFeed
and Watch read. Groups of calls with a seam of their own are mixins kept in
their own modules: SearchIssues (:mod:`._search_calls`), hotlists and saved
searches (:mod:`._hotlist_calls`), components (:mod:`._component_calls`),
attachments, edits and custom fields (:mod:`._attachment_calls`,
:mod:`._edit_calls`), stars and subscriptions (:mod:`._follow`) and the
notifier's view (:mod:`._notify_views`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar, Self, TypeVar

import asyncpg

from bugless_core.errors import (
    BuglessError,
)
from bugless_core.migrations import (
    AdvisoryLock,
    Migration,
    MigrationLock,
    applied_version,
    check_schema_version,
    load_migrations,
    migrate,
    quote_schema,
)
from bugless_core.model.backend import (
    Capability,
    ModelBackend,
    ModelSettings,
)
from bugless_core.page_tokens import PageTokenCodec
from bugless_core.schema_skew import SchemaSkewCheck
from bugless_core.transactions import POSTGRES_RETRIES, RetryPolicy
from bugless_model_postgres import (
    _attachments,
    _batch_change,
    _batch_create,
    _change_in_one,
    _components,
    _custom_fields,
    _custom_values,
    _field_holders,
    _imports,
    _issues,
    _mentions,
    _text_rebuilds,
)
from bugless_model_postgres import _queries as q
from bugless_model_postgres.__about__ import __version__
from bugless_model_postgres._attachment_calls import AttachmentCalls
from bugless_model_postgres._attachments import attachment_from_row, fill_entries
from bugless_model_postgres._component_calls import ComponentCalls
from bugless_model_postgres._context import (
    IssueIdSource,
    WriteContext,
    fetch_issue_rows,
    fetch_issues,
    issue_not_found,
)
from bugless_model_postgres._convert import (
    entry_from_row,
    one_row,
)
from bugless_model_postgres._database import (
    default_isolation,
    open_pool,
    release_as_is,
    run_write,
    server_settings,
    translated_errors,
)
from bugless_model_postgres._dialect import POSTGRES, Dialect
from bugless_model_postgres._edit_calls import mark_edited
from bugless_model_postgres._follow import FollowCalls
from bugless_model_postgres._hidden_hotlists import hide_hotlists
from bugless_model_postgres._hotlist_calls import HotlistCalls
from bugless_model_postgres._notify_views import NotificationViewCalls
from bugless_model_postgres._paging import KeysetPage, caller_key
from bugless_model_postgres._search_calls import SearchCalls
from bugless_model_postgres._viewer_checks import ViewerCheckCalls
from bugless_model_postgres._watch import ChangeFeed
from bugless_proto import v1

T = TypeVar("T")
#: This backend's component name (a subclass names its own: ``PostgresBackend.component``).
COMPONENT = "bugless-model-postgres"
_ADMIN = v1.Caller(user_id="bugless-model", admin=True)


class PostgresBackend(
    AttachmentCalls,
    ComponentCalls,
    FollowCalls,
    NotificationViewCalls,
    HotlistCalls,
    SearchCalls,
    ViewerCheckCalls,
    ModelBackend,
):
    """Model backend on PostgreSQL 14+ through an asyncpg pool."""

    name: ClassVar[str] = "postgres"
    #: The package named in schema messages ("upgrade ... on this replica")
    #: and in ``bugless_schema_version_skew``'s ``component`` label.
    component: ClassVar[str] = COMPONENT
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.WATCH, Capability.CHANGE_FEED, Capability.RELATION_FLAGS}
    )
    #: How concurrent ``migrate`` runs are kept apart (a subclass for a
    #: database without advisory locks leases instead).
    migration_lock: ClassVar[MigrationLock] = AdvisoryLock()

    def __init__(self, settings: ModelSettings, pool: asyncpg.Pool) -> None:
        """Use an open pool; call :meth:`open` rather than this."""
        super().__init__()
        self.settings = settings
        self._pool = pool
        self._tokens = PageTokenCodec(settings.page_token_secret)
        self._channel = f"bugless_changes_{settings.schema}"
        self._feed = ChangeFeed(
            settings, self._channel, self._pool, lambda: self._dialect.notify is not None
        )
        #: Seams a subclass for another database replaces (see :mod:`._dialect`).
        self._dialect: Dialect = POSTGRES
        self._retry_policy: RetryPolicy = POSTGRES_RETRIES
        self._new_issue_id: IssueIdSource | None = None
        #: The schema version against this code's, as readiness reads it.
        self.schema_skew = SchemaSkewCheck(
            self.component, self.migrations()[-1].version, schema=settings.schema
        )

    # ---- lifecycle ----

    @staticmethod
    def migrations() -> list[Migration]:
        """The schema migrations this package ships, in version order."""
        return load_migrations("bugless_model_postgres")

    @classmethod
    async def _connect(cls, settings: ModelSettings) -> asyncpg.Connection:
        schema_sql = quote_schema(settings.schema)
        async with translated_errors():
            return await asyncpg.connect(
                settings.database_url, server_settings=server_settings(settings, schema_sql)
            )

    @classmethod
    async def migrate(cls, settings: ModelSettings) -> int:
        """Apply pending migrations under :attr:`migration_lock`; return the version.

        Safe when several replicas run it at once: one applies the files in
        one transaction; the others wait for the lock and find nothing to do.
        """
        pool = await _migration_pool(settings)
        try:
            async with translated_errors():
                await cls._before_migrate(pool, settings)
                version = await migrate(
                    pool, settings.schema, cls.migrations(), component=cls.component,
                    lock=cls.migration_lock,
                )  # fmt: skip
                await _text_rebuilds.rebuild(pool)
                await _mentions.backfill(pool)
                await _field_holders.respell_backfill(pool)
                await _custom_fields.fill_name_keys(pool)
                await _components.fill_path_keys(pool)
                await _custom_values.fold_rows(pool)
                await _attachments.fold_names(pool)
                await cls._after_migrate(pool, settings)
            return version
        finally:
            await pool.close()

    @classmethod
    async def _before_migrate(cls, pool: asyncpg.Pool, settings: ModelSettings) -> None:
        """A subclass's checks before migrating (the server it needs, its settings)."""

    @classmethod
    async def _after_migrate(cls, pool: asyncpg.Pool, settings: ModelSettings) -> None:
        """A subclass's work after the files (CockroachDB: region placement)."""

    @classmethod
    async def open(cls, settings: ModelSettings) -> Self:
        """Connect a pool; refuse a schema that is missing or newer than this code."""
        conn = await cls._connect(settings)
        try:
            async with translated_errors():
                found = await applied_version(conn, settings.schema)
        finally:
            await conn.close()
        check_schema_version(
            found,
            cls.migrations()[-1].version,
            schema=settings.schema,
            component=cls.component,
            migrate_command="bugless model migrate",
        )
        pool = await open_pool(settings, quote_schema(settings.schema))
        backend = cls(settings, pool)
        if await default_isolation(pool) != "read committed":
            # A write's reads and its write must then share a transaction.
            backend._dialect = dataclasses.replace(backend._dialect, statement_snapshots=False)
        if Capability.CHANGE_FEED in backend.capabilities:
            backend._feed.start_pruning()
        return backend

    async def close(self) -> None:
        """Stop watchers and close the pool."""
        await self._feed.close()
        await self._pool.close()

    async def check_ready(self) -> bool:
        """Whether the database answers now, with a schema at least as new as this code.

        The schema version is read on every check (the ledger's highest row)
        and goes to :attr:`schema_skew`: a schema a newer release migrated
        leaves the replica ready (the rolling upgrade docs/upgrades.md
        describes), one older than the code does not (a restore of an older
        backup), until it is migrated again.
        """
        return await self.schema_skew.ready(self._pool)

    async def get_server_info(self) -> v1.GetServerInfoResponse:
        """Name, version, capabilities and the applied schema version."""
        async with translated_errors(), self._pool.acquire() as conn:
            version = await conn.fetchval(q.SCHEMA_VERSION)
        return v1.GetServerInfoResponse(
            backend=self.name,
            version=__version__,
            capabilities=sorted(c.value for c in self.capabilities),
            schema_version=version,
        )

    # ---- plumbing ----

    async def _write(
        self,
        caller: v1.Caller | None,
        work: Callable[[WriteContext], Awaitable[T]],
        *,
        one_statement: bool = False,
    ) -> tuple[T, WriteContext]:
        """One write transaction, then the committed entries are announced.

        ``one_statement``: see :func:`run_write` (no BEGIN/COMMIT where that is the same).
        """
        result, ctx = await run_write(
            self._pool,
            caller or v1.Caller(),
            self._channel,
            work,
            dialect=self._dialect,
            policy=self._retry_policy,
            new_issue_id=self._new_issue_id,
            one_statement=one_statement,
        )
        if ctx.feed_position and self._feed.sequencer is not None:
            self._feed.committed()  # no NOTIFY there: this process's readers sequence it now
        if ctx.written and self._change_listeners:
            for issue, entry in await self._events(ctx):
                self._emit_committed(issue, entry)
        return result, ctx

    async def _events(self, ctx: WriteContext) -> list[tuple[v1.Issue, v1.HistoryEntry]]:
        """Each committed entry with its issue as an admin reads it now.

        An entry whose final row the write returned (``ctx.entry_rows``) is
        built from it, a message of its own (the listeners' copy, not the
        reply's), and so is an issue the write left as ``ctx.issue_views``
        holds it (its version is its last entry's: nothing wrote it after);
        the others (other sides of relations, imports, writes that read
        their issue without its hotlists) are read, on a connection taken
        only then.
        """
        written = ctx.written
        last: dict[int, int] = {}
        for issue_id, version in written:
            last[issue_id] = max(version, last.get(issue_id, 0))
        issues: dict[int, v1.Issue] = {}
        for issue_id, version in last.items():
            view = ctx.issue_views.get(issue_id)
            if view is not None and view.row["version"] == version:
                issues[issue_id] = view.issue()
        unread = [(i, v) for i, v in written if (i, v) not in ctx.entry_rows]
        if len(issues) == len(last) and not unread:
            return [(issues[i], self._known_entry(ctx, i, v)) for i, v in written]
        async with translated_errors(), self._pool.acquire() as conn:
            missing = sorted(set(last) - set(issues))
            issues |= await fetch_issues(conn, _ADMIN, missing) if missing else {}
            out = []
            for issue_id, version in written:
                if (issue_id, version) in ctx.entry_rows:
                    entry = self._known_entry(ctx, issue_id, version)
                else:
                    read = await conn.fetchrow(q.FETCH_ENTRY, issue_id, version)
                    entry = entry_from_row(one_row(read))
                    await fill_entries(conn, issue_id, [entry])
                out.append((issues[issue_id], entry))
        return out

    @staticmethod
    def _known_entry(ctx: WriteContext, issue_id: int, version: int) -> v1.HistoryEntry:
        """A new message of an entry the write returned (``ctx.entry_rows``)."""
        row, files = ctx.entry_rows[(issue_id, version)]
        entry = entry_from_row(row)
        entry.attachments = [attachment_from_row(f) for f in files]
        entry.deleted_attachment_name = ctx.deleted_names.get(entry.deleted_attachment_id, "")
        return entry

    # ---- issues ----

    async def create_issue(self, request: v1.CreateIssueRequest) -> v1.Issue:
        """Create an issue (entry 1); a repeated idempotency key returns the first."""
        created, _ = await self._write(
            request.caller,
            lambda ctx: _issues.create_issue(ctx, request),
            one_statement=_issues.writes_in_one_statement(
                request, self._dialect, self._new_issue_id
            ),
        )
        if created.issue is not None:
            return created.issue
        return await self._get_visible(request.caller, created.issue_id)

    async def batch_create_issues(
        self, request: v1.BatchCreateIssuesRequest
    ) -> v1.BatchCreateIssuesResponse:
        """The items in one transaction (one commit, one feed row), each on its own terms."""
        return await _batch_create.batch_create_issues(
            request, write=self._write, create_alone=self.create_issue, pool=self._pool
        )

    async def _get_visible(self, caller: v1.Caller | None, issue_id: int) -> v1.Issue:
        async with translated_errors(), self._pool.acquire() as conn:
            found = await fetch_issues(conn, caller or v1.Caller(), [issue_id])
        if issue_id not in found:
            raise issue_not_found(issue_id)
        return found[issue_id]

    async def get_issue(self, request: v1.GetIssueRequest) -> v1.Issue:
        """One visible issue, else NotFound."""
        return await self._get_visible(request.caller, request.issue_id)

    async def batch_get_issues(
        self, request: v1.BatchGetIssuesRequest
    ) -> v1.BatchGetIssuesResponse:
        """Visible issues in request order; the others listed as missing.

        A read mask leaves the columns and subqueries of the fields it does
        not name unread, as a search page's does (:mod:`._issue_projection`).
        """
        mask = request.read_mask
        fields = frozenset(mask.paths) if mask is not None else frozenset()
        async with translated_errors(), self._pool.acquire() as conn:
            found = await fetch_issues(
                conn, request.caller or v1.Caller(), request.issue_ids, fields
            )
        return v1.BatchGetIssuesResponse(
            issues=[found[i] for i in request.issue_ids if i in found],
            missing_ids=[i for i in request.issue_ids if i not in found],
        )

    async def change_issue(self, request: v1.ChangeIssueRequest) -> v1.ChangeIssueResponse:
        """Apply delta and comment as one entry when the version matches.

        The reply is what the write returned (``UPDATE``/``INSERT ...
        RETURNING``), built inside the transaction's attempt: no read after
        the commit (it was 15-18 % of the Model's CPU per change). A change
        of the issue's own fields, custom field values and a comment is first
        tried as a read and one statement (:mod:`._change_in_one`); if the
        row moved on in between, nothing was written and the locked path runs.
        """
        if _change_in_one.eligible(request, self._dialect):
            quick, _ = await self._write(
                request.caller, lambda ctx: _change_in_one.change(ctx, request), one_statement=True
            )
            if quick is not None:
                return v1.ChangeIssueResponse(issue=quick.issue, entry=quick.entry)
        changed, _ = await self._write(
            request.caller,
            lambda ctx: _issues.change_issue(
                ctx,
                request.issue_id,
                request.expected_version,
                request.delta,
                request.comment,
                whole_transaction=True,
            ),
        )
        return v1.ChangeIssueResponse(issue=changed.issue, entry=changed.entry)

    def _import_files(self) -> _imports.Files:
        """The blob store and limits imported files are attached under."""
        return _imports.Files(self.blob_store, self.attachment_settings)

    async def import_issue(self, request: v1.ImportIssueRequest) -> v1.ImportIssueResponse:
        """Create or extend an imported issue (see :mod:`._imports`)."""
        (issue_id, created, written), _ = await self._write(
            request.caller, lambda ctx: _imports.import_issue(ctx, request, self._import_files())
        )
        issue = await self._get_visible(request.caller, issue_id)
        return v1.ImportIssueResponse(issue=issue, created=created, entries_written=written)

    async def import_issues(
        self, caller: v1.Caller | None, items: list[v1.ImportIssueRequest]
    ) -> list[v1.ImportIssueResult]:
        """Each item in its own transaction, without reading the issue back."""
        results = []
        files = self._import_files()
        for item in items:

            def write(
                ctx: WriteContext, item: v1.ImportIssueRequest = item
            ) -> Awaitable[tuple[int, bool, int]]:
                return _imports.import_issue(ctx, item, files)

            try:
                (issue_id, created, written), _ = await self._write(caller, write)
            except BuglessError as exc:
                results.append(
                    v1.ImportIssueResult(
                        external_id=item.external_id,
                        code=int(exc.grpc_status.value),
                        message=exc.message,
                    )
                )
            else:
                results.append(
                    v1.ImportIssueResult(
                        external_id=item.external_id,
                        issue_id=issue_id,
                        created=created,
                        entries_written=written,
                    )
                )
        return results

    async def batch_change_issues(
        self, request: v1.BatchChangeIssuesRequest
    ) -> v1.BatchChangeIssuesResponse:
        """One delta on many issues: all-or-nothing, or each on its own (:mod:`._batch_change`)."""
        return await _batch_change.batch_change_issues(
            request, write=self._write, change_alone=self.change_issue, pool=self._pool
        )

    async def list_history(self, request: v1.ListHistoryRequest) -> v1.ListHistoryResponse:
        """Entries oldest first, keyset-paged by version, as the caller may see them.

        Hotlists the caller may not view are left out (:mod:`._hidden_hotlists`),
        so a page can hold fewer entries than asked for while more follow.
        """
        caller = request.caller or v1.Caller()
        page = KeysetPage.of(
            self._tokens, request.page, "history", request.issue_id, caller_key(caller)
        )
        async with translated_errors(), self._pool.acquire() as conn:
            if not await fetch_issue_rows(conn, caller, [request.issue_id]):
                raise issue_not_found(request.issue_id)
            fetched = await conn.fetch(
                q.LIST_HISTORY, request.issue_id, page.after(0), page.size + 1
            )
            rows, more = page.cut(fetched)
            entries = [entry_from_row(r) for r in rows]
            await mark_edited(conn, request.issue_id, entries)
            await fill_entries(conn, request.issue_id, entries)
            entries = await hide_hotlists(conn, caller, entries)
        return v1.ListHistoryResponse(
            entries=entries,
            next_page_token=page.next_token(rows, more, lambda r: [r["version"]]),
        )

    async def watch(self, request: v1.WatchRequest) -> AsyncIterator[v1.WatchEvent]:
        """The ``subscribed`` marker, then committed entries of one issue or a query's issues."""
        # aclosing: when the client goes away, the feed drops this stream at once.
        async with contextlib.aclosing(self._feed.watch(request)) as events:
            async for event in events:
                yield event

    async def read_feed(self, request: v1.ReadFeedRequest) -> v1.ReadFeedResponse:
        """Changes after a position, in commit order (see :mod:`._watch`)."""
        return await self._feed.read_feed(request)


async def _migration_pool(settings: ModelSettings) -> asyncpg.Pool:
    """Two connections: one migrates, the other renews a migration lease if there is one."""
    async with translated_errors():
        pool: asyncpg.Pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=2,
            server_settings=server_settings(settings, quote_schema(settings.schema)),
            # The migration lock is released explicitly (AdvisoryLock) or is a
            # row (LeaseLock); asyncpg's reset would call pg_advisory_unlock_all(),
            # which CockroachDB lacks.
            reset=release_as_is,
        )
    return pool
