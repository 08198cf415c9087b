"""What an issue read selects: every field, a summary's, or a read mask's.

A read mask (``SearchIssuesRequest.read_mask``, ``BatchGetIssuesRequest.read_mask``)
names the Issue fields the caller uses. The columns of the fields it leaves
out are read as the fields' defaults, so :func:`._convert.issue_from_row`
knows one row shape, and the per-row subqueries of those fields (the caller's
hotlists, the star and the mute, the custom fields' names, whether other issues name it as
parent or canonical) do not run. Search pages and reads by id take their
select list from :func:`projection`: a mask means the same on both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from bugless_model_postgres import _queries as q

#: What a column reads as when a read mask leaves its Issue field out (the
#: field's default).
_LEFT_OUT = {
    "title": "''",
    "status": "0",
    "priority": "0",
    "severity": "0",
    "type": "0",
    "component_id": "0::bigint",
    "reporter": "''",
    "assignee": "''",
    "verifier": "''",
    "cc": "'{}'::text[]",
    "blocking_ids": "'{}'::bigint[]",
    "blocked_by_ids": "'{}'::bigint[]",
    "parent_id": "0::bigint",
    "duplicate_of_id": "0::bigint",
    "description": "''",
    "created_at": "NULL::timestamptz",
    "modified_at": "NULL::timestamptz",
    "closed_at": "NULL::timestamptz",
    "version": "0::bigint",
    "comment_count": "0",
    "custom_fields": "'{}'::jsonb",
    "external_id": "''",
    "star_count": "0::bigint",
}

#: The columns of a summary (what a result list shows: no description, no cc).
_SUMMARY_COLUMNS = q.ISSUE_COLUMNS.replace("i.cc,", "'{}'::text[] AS cc,").replace(
    "i.description,", "'' AS description,"
)

# Left out, they still name their parameters: a prepared statement must use
# every parameter it is given (PostgreSQL cannot type one it never sees).
_NO_HOTLISTS = "ARRAY(SELECT 0::bigint WHERE false AND {admin} AND {user} <> '')"
_NOT_STARRED = "(false AND {user} <> '')"
_NOT_MUTED = _NOT_STARRED
#: :data:`q.CUSTOM_FIELD_NAMES`, braces doubled: the expressions are templates.
_FIELD_NAMES = q.CUSTOM_FIELD_NAMES.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Projection:
    """The select list of an issue read, for one set of fields.

    Attributes:
        columns: The ``issues`` columns (alias ``i``), :data:`q.ISSUE_COLUMNS`'
            names in their order; left-out ones as their defaults.
        hotlists: The ids of the hotlists the caller may see (``bigint[]``),
            a template of ``{admin}`` (a boolean) and ``{user}`` (a user id).
        starred: Whether the caller starred the issue, a template of ``{user}``.
        muted: Whether the caller muted the issue, a template of ``{user}``.
        names: :data:`q.CUSTOM_FIELD_NAMES`, or NULL: no custom values are
            read (a template without placeholders, braces doubled).
        has_children: :data:`q.HAS_CHILDREN`, or false.
        has_duplicates: :data:`q.HAS_DUPLICATES`, or false.
    """

    columns: str
    hotlists: str
    starred: str
    muted: str
    names: str
    has_children: str
    has_duplicates: str


@functools.lru_cache(maxsize=64)
def projection(fields: frozenset[str], *, summary: bool = False) -> Projection:
    """The select list for the Issue fields ``fields`` (empty: every field).

    ``summary`` (a search's, without a mask) leaves the description and the
    cc list out; a mask naming any field decides on its own.
    """
    if not fields:
        return Projection(
            _SUMMARY_COLUMNS if summary else q.ISSUE_COLUMNS,
            q.VISIBLE_HOTLISTS,
            q.STARRED,
            q.MUTED,
            _FIELD_NAMES,
            q.HAS_CHILDREN,
            q.HAS_DUPLICATES,
        )
    return Projection(
        _masked_columns(fields),
        q.VISIBLE_HOTLISTS if "hotlist_ids" in fields else _NO_HOTLISTS,
        q.STARRED if "starred" in fields else _NOT_STARRED,
        q.MUTED if "muted" in fields else _NOT_MUTED,
        _FIELD_NAMES if "custom_fields" in fields else "NULL::jsonb",
        q.HAS_CHILDREN if "has_children" in fields else "false",
        q.HAS_DUPLICATES if "has_duplicates" in fields else "false",
    )


def _masked_columns(fields: frozenset[str]) -> str:
    """:data:`q.ISSUE_COLUMNS` with the columns of fields not in ``fields`` read as defaults."""
    columns = []
    for column in q.ISSUE_COLUMNS.split(","):
        name = column.strip().removeprefix("i.")
        keep = name == "id" or name in fields
        columns.append(f"i.{name}" if keep else f"{_LEFT_OUT[name]} AS {name}")
    return ", ".join(columns)


@functools.lru_cache(maxsize=256)
def fetch_statement(fields: frozenset[str], slots: int) -> str:
    """The read of issues by id for the Issue fields ``fields`` (empty: every field).

    ``slots`` says how the ids are given (:func:`q.ids_condition`: 1 for
    ``$1``, one of :data:`q.ID_SLOTS`, 0 for an array); ``$2`` is the
    caller's admin flag, ``$3`` their user id, as in :data:`q.FETCH_ISSUES`.
    """
    selected = projection(fields)
    return q.FETCH_TEMPLATE.format(
        columns=selected.columns,
        names=selected.names.format(),
        hotlists=selected.hotlists.format(admin="$2", user="$3"),
        starred=selected.starred.format(user="$3"),
        muted=selected.muted.format(user="$3"),
        has_children=selected.has_children,
        has_duplicates=selected.has_duplicates,
        where=q.ids_condition(slots),
    )
