"""SearchIssues: one statement per page, a capped count carried in the page tokens.

A mixin of :class:`~bugless_model_postgres.PostgresBackend`, kept apart from
the backend's orchestration so the search path (this call, the compiler in
:mod:`._search` and the page statement in :mod:`._search_page`) reads, and
changes, in one place.
"""

from __future__ import annotations

import asyncpg

from bugless_core.errors import InvalidArgument
from bugless_core.page_tokens import CarriedTotal, PageTokenCodec
from bugless_core.transactions import retrying
from bugless_model_postgres import _custom_search, _search, _search_page
from bugless_model_postgres._calls_base import BackendCalls
from bugless_model_postgres._convert import principals_of
from bugless_model_postgres._database import translated_errors
from bugless_model_postgres._paging import caller_key, page_of
from bugless_proto import v1, wire


def _reported_total(carried: CarriedTotal | None, counted: int | None, cap: int) -> CarriedTotal:
    """A search page's total: the one its token carries, else the one its statement counted."""
    if carried is not None:
        return carried
    if counted is None:
        msg = "a search page whose token carries no total must count"
        raise RuntimeError(msg)
    return CarriedTotal(min(counted, cap), counted > cap)


class SearchCalls(BackendCalls):
    """SearchIssues over the backend's pool, dialect and retry policy."""

    async def search_issues(self, request: v1.SearchIssuesRequest) -> v1.SearchIssuesResponse:
        """One statement per page (its own snapshot): keyset pages, a capped count.

        The first page counts; its total rides in the page tokens, and later
        pages report it without counting again (a token from before that
        carries none: the page counts).

        See :mod:`._search_page`; a stale read (``allow_stale`` on a dialect
        that has one) runs it in a read-only transaction set up for that.
        """
        caller = request.caller or v1.Caller()
        query = request.query or v1.StructuredQuery()
        size, token = page_of(request.page)
        fingerprint = PageTokenCodec.fingerprint(
            "search", wire.encode(query).hex(), caller_key(caller)
        )
        position, carried = self._tokens.decode_page(token, fingerprint) if token else (None, None)
        cap = self.settings.search_count_cap
        stale_read = self._dialect.stale_read if request.allow_stale else None
        fields = frozenset(request.read_mask.paths) if request.read_mask else frozenset()

        async def attempt() -> tuple[list[asyncpg.Record], _search.CompiledSearch]:
            async with translated_errors(), self._pool.acquire() as conn:
                catalog = await _custom_search.load_catalog(conn, query)
                try:
                    compiled = _search.compile_search(
                        query, caller, principals_of(caller), position, catalog
                    )
                except (ValueError, TypeError, IndexError) as exc:
                    msg = "page.page_token: does not fit this query"
                    raise InvalidArgument(msg, metadata={"field": "page.page_token"}) from exc
                sql, _ = _search_page.page_statement(
                    compiled, summary=request.summary, fields=fields, counted=carried is None
                )
                args = _search_page.page_arguments(compiled, size, cap, caller.user_id)
                if stale_read is None:
                    return await conn.fetch(sql, *args), compiled
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    await conn.execute(stale_read)
                    return await conn.fetch(sql, *args), compiled

        rows, compiled = await retrying(self._retry_policy, attempt)
        issues, counted, more = _search_page.page_issues(caller, rows, size)
        total = _reported_total(carried, counted, cap)
        return v1.SearchIssuesResponse(
            issues=issues,
            next_page_token=self._tokens.encode(
                _search.encode_position(compiled.sort, rows[size - 1]), fingerprint, total
            )
            if more
            else "",
            total_count=total.count,
            total_is_lower_bound=total.lower_bound,
        )
