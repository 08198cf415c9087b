"""A query watch's query judged as the issues are now, and its custom fields.

The other half of a query watch beside :mod:`bugless_model_postgres._watch_query`
(which judges an issue as it was before and after a change, for
``left_query``): which of a change's issues match the query *now*
(:func:`matching_now`, the same compiled search a search of the query runs,
narrowed to those ids), and what ends a watch whose custom fields changed
under it (:func:`fields_gone`, :func:`field_changed`). Kept apart because it
reads only the current rows and the custom field catalog, never the history.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bugless_core.errors import FailedPrecondition, InvalidArgument
from bugless_core.search.build import all_of, term
from bugless_model_postgres import _search
from bugless_model_postgres._convert import Conn, principals_of
from bugless_model_postgres._custom_search import CustomCatalog, catalog_key
from bugless_proto import v1


@contextlib.contextmanager
def field_changed() -> Iterator[None]:
    """A query that compiled at subscribe and no longer does: a custom field changed under it."""
    try:
        yield
    except InvalidArgument as exc:
        raise FailedPrecondition(
            f"{exc.message} (a custom field the query names was changed while "
            "the watch was open); watch again with a query that fits the fields now",
            reason="WATCHED_FIELD_CHANGED",
            metadata=exc.metadata,
        ) from exc


async def matching_now(
    conn: Conn,
    query: v1.StructuredQuery,
    caller: v1.Caller,
    catalog: CustomCatalog,
    ids: list[int],
) -> set[int]:
    """Which of ``ids`` match ``query`` for ``caller`` now."""
    if not ids:
        return set()
    sql, params = matching_sql(query, caller, ids, catalog)
    return {row["id"] for row in await conn.fetch(sql, *params, len(ids))}


def matching_sql(
    query: v1.StructuredQuery, caller: v1.Caller, ids: list[int], catalog: CustomCatalog
) -> tuple[str, list[object]]:
    """The statement (and its parameters but the limit) of ``query``'s matches among ``ids``.

    The query is compiled with ``catalog``, the definitions of the custom
    fields it names (:func:`load_catalog`), as a search compiles it: without
    them a custom field term failed the stream at its first change.

    Raises:
        InvalidArgument: the query names a custom field there is none of.
    """
    only = all_of(
        query.filter or v1.SearchNode(), term(v1.SearchField.ID, v1.SearchOperator.EQ, *ids)
    )
    compiled = _search.compile_search(
        v1.StructuredQuery(filter=only), caller, principals_of(caller), None, catalog
    )
    return compiled.page_sql, list(compiled.page_params)


def fields_gone(
    query: v1.StructuredQuery, named: CustomCatalog, now: CustomCatalog
) -> FailedPrecondition | None:
    """What ends a query watch whose custom fields went away while it was open.

    A field the query names by id that was deleted, or a name no field bears
    any more (its fields deleted or renamed), leaves the query meaning
    nothing a watcher asked for: the stream ends with FAILED_PRECONDITION
    (reason ``WATCHED_FIELD_CHANGED``) naming the fields, as they were named
    when the watch began, rather than the INVALID_ARGUMENT "there is no
    custom field" a new query gets (the query was good; the fields changed
    under it). A name another field still bears (a field of that name in
    another component, or a new one) keeps the watch going: the query still
    means something, judged as a search of it now would be.
    """
    key = catalog_key(v1.StructuredQuery(filter=query.filter))  # a sort key judges nothing
    if key is None:
        return None
    ids, names = key
    gone = [
        f"custom field {i} ({named.by_id[i].name!r})" if i in named.by_id else f"custom field {i}"
        for i in ids
        if i not in now.by_id
    ]
    gone += [
        f"custom field {named.by_name[n][0].name!r}" if n in named.by_name else repr(n)
        for n in names
        if n not in now.by_name
    ]
    if not gone:
        return None
    return FailedPrecondition(
        f"query.filter: the query's {', '.join(gone)} {'was' if len(gone) == 1 else 'were'} "
        "deleted or renamed while the watch was open, so it no longer means what it did; "
        "watch again with a query naming fields that exist",
        reason="WATCHED_FIELD_CHANGED",
        metadata={"field": "query.filter", "custom_fields": ", ".join(gone)},
    )
