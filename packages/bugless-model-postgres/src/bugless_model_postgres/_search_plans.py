"""Compiled searches a backend keeps: a page of a search seen before compiles nothing.

Every search page compiled its structured query (:func:`._search.compile_search`),
wrote its page statement (:func:`._search_page.page_statement`) and hashed the
request into its page tokens' fingerprint (JSON and SHA-256 of the encoded
query and the caller): ~0.1-0.25 ms of the Model's CPU per page on the
1,000,000-issue benchmark's queries, the most for custom fields (bench/JOURNAL.md,
"Session 11: the Model's search page"). None of it depends on more than the
query, the caller and the custom field definitions it names: the position a
later page resumes from only changes the last parameters of the statement,
which names them by placeholder (:func:`._search.resumed`). So paging through
a search, or reading its first page again, finds what the last page made.

An entry's key is exact, never a digest that could collide: the query's
encoded bytes (upb writes equal queries as equal bytes), the caller's user
id, groups (in order: they are bound in order) and admin flag, whether the
page resumes from a position, and the fingerprint of the custom field
definitions the query was compiled with (their ids and versions: every change
of a definition raises its version). A query that fails to compile is
compiled, and fails, every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bugless_core.page_tokens import PageTokenCodec
from bugless_model_postgres import _search
from bugless_model_postgres._convert import principals_of
from bugless_model_postgres._custom_search import CatalogKey, CustomCatalog, catalog_key
from bugless_model_postgres._paging import caller_key
from bugless_model_postgres._search_refs import QueryReferences, references_of
from bugless_proto import v1

#: Searches a backend keeps (the oldest goes first), and as many fingerprints.
PLAN_ENTRIES = 256
#: Page statements a plan keeps: one per shape a page of it took (counted or
#: not, from the count's matches or not, per read mask). A client varying its
#: read mask on one search gets the others written each time, not kept.
STATEMENTS_PER_PLAN = 8

#: A caller as far as a compiled search depends on it: user id, groups, admin.
CallerKey = tuple[str, tuple[str, ...], bool]
#: The shape of a page statement: summary, read mask fields, counted,
#: taken from the count's matches, guarded, checked (see ``page_statement``).
StatementKey = tuple[bool, frozenset[str], bool, bool, bool, bool]


def caller_of(caller: v1.Caller) -> CallerKey:
    """What of ``caller`` a compiled search and its fingerprint depend on."""
    return caller.user_id, tuple(caller.groups), caller.admin


@dataclass(frozen=True)
class SearchPlan:
    """A compiled search and the page statements written for it so far.

    ``compiled`` resumes from the position it was compiled with (if any);
    :meth:`at` binds another. Both are only read: every page shares them.
    """

    compiled: _search.CompiledSearch
    statements: dict[StatementKey, str] = field(default_factory=dict)

    def at(self, position: list[Any] | None) -> _search.CompiledSearch:
        """The compiled search resuming after ``position`` (None: a first page).

        Raises:
            ValueError, TypeError: ``position`` does not fit the sort (as
                :func:`._search.compile_search` raises for it).
        """
        if position is None:
            return self.compiled
        return _search.resumed(self.compiled, position)


class SearchPlans:
    """The :class:`SearchPlan` and page token fingerprint of searches a backend served."""

    def __init__(self, entries: int = PLAN_ENTRIES) -> None:
        """Keep at most ``entries`` plans and as many fingerprints."""
        self._entries = entries
        self._plans: dict[tuple[bytes, CallerKey, bool, str | None], SearchPlan] = {}
        self._fingerprints: dict[tuple[bytes, CallerKey], str] = {}
        self._catalog_keys: dict[bytes, CatalogKey | None] = {}
        self._references: dict[bytes, QueryReferences] = {}

    def catalog_key(self, encoded: bytes, query: v1.StructuredQuery) -> CatalogKey | None:
        """:func:`._custom_search.catalog_key` of ``query`` (``encoded``: its bytes), kept.

        The custom fields a query names, found by walking its nodes: up to
        ~8 µs a page on the benchmark's queries, the same for every page.
        """
        if encoded in self._catalog_keys:
            return self._catalog_keys[encoded]
        found = catalog_key(query)
        _keep(self._catalog_keys, encoded, found, self._entries)
        return found

    def references(self, encoded: bytes, query: v1.StructuredQuery) -> QueryReferences:
        """:func:`._search_refs.references_of` ``query`` (``encoded``: its bytes), kept.

        Read on every first page (the ids it checks), so found once per query.
        """
        found = self._references.get(encoded)
        if found is None:
            found = references_of(query)
            _keep(self._references, encoded, found, self._entries)
        return found

    def fingerprint(self, query: bytes, caller: v1.Caller) -> str:
        """The page tokens' fingerprint of a search of the encoded ``query`` by ``caller``.

        The same text as before plans were kept (a token issued by another
        replica, or before an upgrade, still fits its request).
        """
        key = (query, caller_of(caller))
        found = self._fingerprints.get(key)
        if found is None:
            found = PageTokenCodec.fingerprint("search", query.hex(), caller_key(caller))
            _keep(self._fingerprints, key, found, self._entries)
        return found

    def plan(
        self,
        encoded: bytes,
        query: v1.StructuredQuery,
        caller: v1.Caller,
        position: list[Any] | None,
        catalog: CustomCatalog,
    ) -> SearchPlan:
        """The plan of ``query`` (``encoded``: its bytes) for ``caller``, compiled if new.

        Raises:
            InvalidArgument: the query does not fit ``catalog``.
            ValueError, TypeError, IndexError: ``position`` does not fit the
                query's sort (as :func:`._search.compile_search` raises).
        """
        key = (encoded, caller_of(caller), position is None, catalog.fingerprint)
        found = self._plans.get(key)
        if found is None:
            compiled = _search.compile_search(
                query, caller, principals_of(caller), position, catalog
            )
            found = SearchPlan(compiled)
            _keep(self._plans, key, found, self._entries)
        return found


def _keep(entries: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """Add ``key``; at ``limit`` entries, forget the oldest first."""
    if len(entries) >= limit:
        del entries[next(iter(entries))]
    entries[key] = value
