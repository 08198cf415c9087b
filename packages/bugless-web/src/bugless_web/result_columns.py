"""Which columns a result table shows, and what it asks the Model for them.

Every list page (search, components, users, home, exports, saved searches)
picks its columns the same way: the link's ``columns=``, else the browser's
cookie, else the defaults, a saved search carrying its own. The columns
decide the Issue fields the Model is asked to send (:func:`read_mask`). The
keys and labels are :mod:`bugless_core.list_columns`'s, shared with the
Model; running the search and drawing its results is :mod:`bugless_web.searching`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

from litestar import Request, Response

from bugless_core.errors import InvalidArgument
from bugless_core.list_columns import (
    COLUMN_LABELS,
    DEFAULT_COLUMNS,
    MAX_CUSTOM_COLUMNS,
    is_column,
    valid_columns_text,
)
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: Columns a result table can show, in the order the column picker lists them
#: (the keys are :mod:`bugless_core.list_columns`'s, shared with the Model).
COLUMNS: dict[str, str] = dict(COLUMN_LABELS)
#: The Issue fields each built-in column shows (a custom field's column: ``custom_fields``).
COLUMN_FIELDS: dict[str, tuple[str, ...]] = {
    "id": (),
    "priority": ("priority",),
    "severity": ("severity",),
    "type": ("type",),
    "title": ("title",),
    "status": ("status",),
    "assignee": ("assignee",),
    "reporter": ("reporter",),
    "verifier": ("verifier",),
    "component": ("component_id",),
    "created": ("created_at",),
    "modified": ("modified_at",),
}
#: Fields every result table needs whatever its columns: the version a row's
#: check box carries (bulk edits) and the component (the bulk menu's custom
#: fields, which the column picker offers too). Custom values are asked only
#: for a custom column shown: encoding, sending and decoding every value of
#: every row was a tenth of a list page's CPU when no column showed them.
TABLE_FIELDS = ("version", "component_id")
#: The cookie keeping a browser's column choice for lists opened without one
#: (a saved search carries its own, ``SavedSearch.columns``, put in its links).
COLUMNS_COOKIE = "bugless_columns"
#: How long the column choice is kept (a year).
COLUMNS_COOKIE_MAX_AGE = 365 * 24 * 3600


def columns_of(request: Request[Any, Any, Any]) -> tuple[str, ...]:
    """The columns to show: the URL's ``columns=``, else this browser's choice, else the default.

    A column the URL names that no list has is refused (:func:`parse_columns`);
    the cookie's choice is this site's own writing, so one a later release no
    longer knows is dropped there rather than making every list a 400.

    Raises:
        InvalidArgument: ``columns=`` names an unknown column or too many custom ones.
    """
    chosen = request.query_params.get("columns")
    if chosen:
        return parse_columns(chosen)
    return parse_columns(request.cookies.get(COLUMNS_COOKIE, "").replace(".", ","), strict=False)


def remember_columns(
    request: Request[Any, Any, Any], response: Response[Any], columns: tuple[str, ...]
) -> None:
    """Keep the picker's choice (``set_columns=1``) in this browser's cookie."""
    if not request.query_params.get("set_columns"):
        return
    dev = request.app.state["frontend"].settings.dev
    response.set_cookie(
        COLUMNS_COOKIE,
        ".".join(columns),  # a comma would make the cookie a quoted string
        max_age=COLUMNS_COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        secure=not dev,
        samesite="lax",
    )


def saved_columns(saved: v1.SavedSearch) -> tuple[str, ...]:
    """The columns a saved search is shown with: its own, else the default ones of today.

    A search that stores none (:func:`columns_to_store`) follows the
    defaults as they are when it is opened, not as they were when it was
    saved, and not this browser's choice for other lists either.
    """
    return tuple(saved.columns) or DEFAULT_COLUMNS


def columns_to_store(columns: Sequence[str]) -> list[str]:
    """What a saved search stores for ``columns``: none when they are the default ones.

    Stored explicitly, the defaults of the day would stay the search's after
    a release changed them; stored as none, it keeps following them.
    """
    return [] if tuple(columns) == DEFAULT_COLUMNS else list(columns)


def saved_search_href(saved: v1.SavedSearch) -> str:
    """The link that opens a saved search: its query and :func:`saved_columns`."""
    params = {"q": saved.query, "columns": ",".join(saved_columns(saved))}
    return "/search?" + urllib.parse.urlencode(params)


def read_mask(columns: Iterable[str]) -> FieldMask:
    """The Issue fields a result table in ``columns`` shows (see :data:`TABLE_FIELDS`).

    The Model reads, encodes and sends only those (``SearchIssuesRequest.read_mask``):
    no hotlists, stars, relation lists or dates a table does not show.
    """
    fields = dict.fromkeys(TABLE_FIELDS)
    for column in columns:
        fields.update(dict.fromkeys(COLUMN_FIELDS.get(column, ("custom_fields",))))
    return FieldMask(paths=sorted(fields))


def parse_columns(text: str | None, *, strict: bool = True) -> tuple[str, ...]:
    """The columns a ``columns=`` parameter names, each once, in its order.

    A column named twice is shown once. Strict (what a link or form sent),
    a key that is no column, or more custom field columns than a list
    shows, is refused: dropped silently, a typo in a bookmarked link or a
    script's export showed other columns than asked with nothing saying so.
    Not strict (this site's own cookie), those are dropped.

    Raises:
        InvalidArgument: strict, naming the unknown column and the known ones
            (``customfield<ID>`` for a custom field), or the custom column limit.
    """
    if not text:
        return DEFAULT_COLUMNS
    named = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in named if not is_column(c)]
    if unknown and strict:
        msg = (
            f"columns: {unknown[0]!r} is not a list column; the columns are {valid_columns_text()}"
        )
        raise InvalidArgument(msg, metadata={"field": "columns"})
    chosen = tuple(dict.fromkeys(c for c in named if is_column(c)))
    custom = [c for c in chosen if c not in COLUMNS]
    if len(custom) > MAX_CUSTOM_COLUMNS:
        if strict:
            msg = (
                f"columns: {len(custom)} custom field columns; "
                f"a list shows at most {MAX_CUSTOM_COLUMNS}"
            )
            raise InvalidArgument(msg, metadata={"field": "columns"})
        chosen = tuple(c for c in chosen if c not in custom[MAX_CUSTOM_COLUMNS:])
    return chosen or DEFAULT_COLUMNS


__all__ = [
    "COLUMNS",
    "COLUMNS_COOKIE",
    "COLUMN_FIELDS",
    "DEFAULT_COLUMNS",
    "TABLE_FIELDS",
    "columns_of",
    "columns_to_store",
    "parse_columns",
    "read_mask",
    "remember_columns",
    "saved_columns",
    "saved_search_href",
]
