"""SearchIssues: one statement per page, a capped count carried in the page tokens.

A mixin of :class:`~bugless_model_postgres.PostgresBackend`, kept apart from
the backend's orchestration so the search path (this call, the compiler in
:mod:`._search` and the page statement in :mod:`._search_page`) reads, and
changes, in one place.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import asyncpg

from bugless_core.errors import InvalidArgument
from bugless_core.page_tokens import CarriedTotal, PageTokenCodec
from bugless_core.transactions import retrying
from bugless_model_postgres import (
    _custom_search,
    _search,
    _search_page,
    _search_plans,
    _search_refs,
    _search_wire,
)
from bugless_model_postgres._calls_base import BackendCalls
from bugless_model_postgres._convert import Conn
from bugless_model_postgres._database import translated_errors
from bugless_model_postgres._paging import page_of
from bugless_proto import v1, wire, wire_unread

# The codec leaves a received request's query as its bytes until read: a
# page of a query seen before keys on them (:func:`_query_bytes`) and reads
# nothing else of it.
wire_unread.leave_unread(v1.SearchIssuesRequest, "query")


def _reported_total(carried: CarriedTotal | None, counted: int | None, cap: int) -> CarriedTotal:
    """A search page's total: the one its token carries, else the one its statement counted."""
    if carried is not None:
        return carried
    if counted is None:
        msg = "a search page whose token carries no total must count"
        raise RuntimeError(msg)
    return CarriedTotal(min(counted, cap), counted > cap)


def _caller(request: v1.SearchIssuesRequest) -> v1.Caller:
    """The request's caller (an empty one when it names none).

    ``request.caller or v1.Caller()`` asked betterproto2 whether the caller
    has any field set (``Message.__bool__``, ~1 µs, three times a page);
    an empty caller reads the same as a new one.
    """
    return request.caller if request.caller is not None else v1.Caller()


def _query_bytes(query: v1.StructuredQuery) -> bytes:
    """``wire.encode(query)``: its own bytes while it is a received query not yet read.

    An unread query (:mod:`bugless_proto.wire_unread`) is upb's writing of
    the query received, which is what ``wire.encode`` writes for the query
    it decodes to; reading it (a new plan, a changed query) makes it an
    ordinary message, encoded as any other. The benchmark's queries: 3-15
    µs to encode, and 6-19 µs to decode first.
    """
    unread = wire_unread.unread_bytes(query)
    return unread if unread is not None else wire.encode(query)


class _StaleCatalog(Exception):
    """A page compiled from a cached catalog found the definitions changed."""


class _RefusedReference(Exception):
    """A first page's refusal of a component or hotlist the query names (:mod:`._search_refs`).

    Kept apart from the InvalidArgument a cached catalog's compile may raise:
    that one may fit the current definitions and is tried again, while this
    one was read from a statement that found the catalog fresh, and would
    only be read again.
    """

    def __init__(self, error: InvalidArgument) -> None:
        """The refusal to send the caller."""
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class _PageRead:
    """The statements of one search page: one, or two for a text query above the count cap."""

    compiled: _search.CompiledSearch
    summary: bool
    fields: frozenset[str]
    carried: CarriedTotal | None
    size: int
    cap: int
    #: The cached catalog the query was compiled from, and its key (None: loaded now).
    guard: tuple[_custom_search.CatalogKey, _custom_search.CustomCatalog] | None = None
    #: The statements written for this search so far (:class:`._search_plans.SearchPlan`).
    statements: dict[_search_plans.StatementKey, str] | None = None
    #: A first page's components and hotlists to check (None: none to check).
    refs: _search_refs.QueryReferences | None = None

    async def rows(self, conn: Conn, user_id: str) -> tuple[list[asyncpg.Record], int | None]:
        """The page's rows, and the count when the matches reached the cap (else None).

        A text query's page comes from its count's matches, in the same
        statement, unless they reach the cap: then that statement holds no
        page, and the page runs as a statement of its own that does not
        count (the first one's count, above the cap, is the total). A later
        page whose carried total is a lower bound goes there directly,
        without reading the matches at all.
        """
        args = _search_page.page_arguments(self.compiled, self.size, self.cap, user_id, self.guard)
        # The first statement checks the references (one more on a page above the cap does not).
        checked = self.refs is not None
        above: int | None = None
        if self.compiled.share_matches and not (self.carried and self.carried.lower_bound):
            statement = self._statement(counted=True, from_matches=True, checked=checked)
            rows = self._fresh(await conn.fetch(statement, *args, *self._seen(checked)), checked)
            if rows[0]["total"] <= self.cap:
                return rows, None
            above, checked = rows[0]["total"], False
        counted = self.carried is None and above is None
        statement = self._statement(counted=counted, from_matches=False, checked=checked)
        rows = await conn.fetch(statement, *args, *self._seen(checked))
        return self._fresh(rows, checked), above

    def _seen(self, checked: bool) -> list[_search_refs.SeenArgument]:
        """The arguments of a checked statement's ``refs_seen`` (none if unchecked)."""
        return _search_refs.seen_arguments(self.refs) if checked and self.refs else []

    def _fresh(self, rows: list[asyncpg.Record], checked: bool = False) -> list[asyncpg.Record]:
        """``rows``, unless the cached catalog they were read with changed (then raise).

        Raises:
            _RefusedReference: the rows' ``refs_seen`` (``checked``: they are
                a checked statement's) lacks a component or hotlist id the query names.
            _search_refs.UnseenName: likewise, a component name.
        """
        if self.guard is not None and rows[0]["catalog_fresh"] is not True:
            raise _StaleCatalog
        if checked and self.refs is not None:
            try:
                _search_refs.refuse_unseen(self.refs, rows[0]["refs_seen"])
            except InvalidArgument as refused:
                raise _RefusedReference(refused) from None
        return rows

    def _statement(self, *, counted: bool, from_matches: bool, checked: bool) -> str:
        guarded = self.guard is not None
        key = (self.summary, self.fields, counted, from_matches, guarded, checked)
        sql = self.statements.get(key) if self.statements is not None else None
        if sql is None:
            sql, _ = _search_page.page_statement(
                self.compiled,
                summary=self.summary,
                fields=self.fields,
                counted=counted,
                from_matches=from_matches,
                guarded=guarded,
                # The references are the query's: the same for every statement of its plan.
                checked=self.refs if checked else None,
            )
            if (
                self.statements is not None
                and len(self.statements) < _search_plans.STATEMENTS_PER_PLAN
            ):
                self.statements[key] = sql
        return sql


@dataclass(frozen=True)
class _SearchPage:
    """A search page's rows and what its reply is made of besides them."""

    tokens: PageTokenCodec
    rows: list[asyncpg.Record]
    #: The count of a text query whose matches reached the cap (else None).
    above: int | None
    compiled: _search.CompiledSearch
    size: int
    cap: int
    carried: CarriedTotal | None
    fingerprint: str

    def token_and_total(self) -> tuple[str, CarriedTotal]:
        """The next page's token ('' on the last page) and the total to report."""
        rows, size = self.rows, self.size
        counted: int | None = rows[0]["total"]
        more = rows[0]["id"] is not None and len(rows) > size
        total = _reported_total(
            self.carried, counted if self.above is None else self.above, self.cap
        )
        if not more:
            return "", total
        position = _search.encode_position(self.compiled.sort, rows[size - 1])
        return self.tokens.encode(position, self.fingerprint, total), total

    def response(self, caller: v1.Caller) -> v1.SearchIssuesResponse:
        """The reply as betterproto2 messages (an Issue of each row the caller may view)."""
        issues, _, _ = _search_page.page_issues(caller, self.rows, self.size)
        token, total = self.token_and_total()
        return v1.SearchIssuesResponse(
            issues=issues,
            next_page_token=token,
            total_count=total.count,
            total_is_lower_bound=total.lower_bound,
        )


class SearchCalls(BackendCalls):
    """SearchIssues over the backend's pool, dialect and retry policy."""

    #: Custom field definitions searched for (made on first use).
    _catalogs: _custom_search.CatalogCache | None = None
    #: Searches compiled so far (made on first use).
    _plans: _search_plans.SearchPlans | None = None

    def _catalog_cache(self) -> _custom_search.CatalogCache:
        """This backend's :class:`._custom_search.CatalogCache`."""
        if self._catalogs is None:
            self._catalogs = _custom_search.CatalogCache()
        return self._catalogs

    def _search_plans(self) -> _search_plans.SearchPlans:
        """This backend's :class:`._search_plans.SearchPlans`."""
        if self._plans is None:
            self._plans = _search_plans.SearchPlans()
        return self._plans

    async def search_issues(self, request: v1.SearchIssuesRequest) -> v1.SearchIssuesResponse:
        """One statement per page (its own snapshot): keyset pages, a capped count.

        The first page counts; its total rides in the page tokens, and later
        pages report it without counting again (a token from before that
        carries none: the page counts).

        See :mod:`._search_page`; a stale read (``allow_stale`` on a dialect
        that has one) runs it in a read-only transaction set up for that.
        """
        page = await self._search_page(request)
        return page.response(_caller(request))

    async def search_issues_reply(self, request: v1.SearchIssuesRequest) -> v1.SearchIssuesResponse:
        """:meth:`search_issues`, its reply encoded straight from the rows (to be sent).

        See :mod:`._search_wire`: the same bytes, without making an Issue
        message of each row first.
        """
        page = await self._search_page(request)
        caller = _caller(request)
        token, total = page.token_and_total()
        data = _search_wire.reply_bytes(
            caller,
            page.rows,
            page.size,
            next_page_token=token,
            total_count=total.count,
            total_is_lower_bound=total.lower_bound,
        )
        if data is None:
            return page.response(caller)
        return wire.encoded(v1.SearchIssuesResponse, data)

    async def _search_page(self, request: v1.SearchIssuesRequest) -> _SearchPage:
        """The rows of the page ``request`` asks for, with what its reply is made of."""
        caller = _caller(request)
        # Not ``request.query or ...``: that asks betterproto2 whether any field
        # is set (``Message.__bool__``); an empty query reads as a new one.
        query = request.query if request.query is not None else v1.StructuredQuery()
        size, token = page_of(request.page)
        plans = self._search_plans()
        encoded = _query_bytes(query)
        fingerprint = plans.fingerprint(encoded, caller)
        position, carried = self._tokens.decode_page(token, fingerprint) if token else (None, None)
        cap = self.settings.search_count_cap
        stale_read = self._dialect.stale_read if request.allow_stale else None
        mask = request.read_mask
        fields = frozenset(mask.paths) if mask is not None else frozenset()

        key = plans.catalog_key(encoded, query)
        # A first page checks the components and hotlists the query names
        # (_search_refs); a later one's token binds it to a checked query.
        refs = plans.references(encoded, query) if position is None else None
        refs = refs or None

        async def read(
            conn: Conn,
            catalog: _custom_search.CustomCatalog,
            guard: tuple[_custom_search.CatalogKey, _custom_search.CustomCatalog] | None,
        ) -> tuple[list[asyncpg.Record], int | None, _search.CompiledSearch]:
            try:
                plan = plans.plan(encoded, query, caller, position, catalog)
                compiled = plan.at(position)
            except (ValueError, TypeError, IndexError) as exc:
                msg = "page.page_token: does not fit this query"
                raise InvalidArgument(msg, metadata={"field": "page.page_token"}) from exc
            page = _PageRead(
                compiled, request.summary, fields, carried, size, cap, guard, plan.statements, refs
            )
            try:
                if stale_read is None:
                    return (*await page.rows(conn, caller.user_id), compiled)
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    await conn.execute(stale_read)
                    return (*await page.rows(conn, caller.user_id), compiled)
            except _search_refs.UnseenName as unseen:
                refused = await _search_refs.name_refusal(conn, unseen, caller)
                raise _RefusedReference(refused) from None

        async def attempt() -> tuple[list[asyncpg.Record], int | None, _search.CompiledSearch]:
            try:
                async with translated_errors(), self._pool.acquire() as conn:
                    if key is None:
                        return await read(conn, _custom_search.CustomCatalog(), None)
                    cached = self._catalog_cache().get(key)
                    if cached is not None:
                        # A query a cached catalog refuses may fit the current one
                        # (not a refused reference: its statement found the catalog fresh).
                        with contextlib.suppress(_StaleCatalog, InvalidArgument):
                            return await read(conn, cached, (key, cached))
                        self._catalog_cache().drop(key)
                    catalog = await _custom_search.load_catalog_of(conn, key)
                    result = await read(conn, catalog, None)
                    self._catalog_cache().put(key, catalog)
                    return result
            except _RefusedReference as refused:
                raise refused.error from None

        rows, above, compiled = await retrying(self._retry_policy, attempt)
        return _SearchPage(self._tokens, rows, above, compiled, size, cap, carried, fingerprint)
