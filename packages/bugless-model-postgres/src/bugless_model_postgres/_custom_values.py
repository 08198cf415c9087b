"""Custom field values as stored on issues and as messages (no write logic).

Kept apart from :mod:`._custom_fields` (definitions and value planning) so
that the issue read path (:mod:`._context`) can attach values without
importing the write side.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from bugless_core import custom_fields as cf
from bugless_model_postgres._convert import Conn, Row
from bugless_model_postgres._halving import Fold, fold
from bugless_model_postgres._mention_scans import PROGRESS_SECONDS
from bugless_proto import v1

FIELD_NAMES = "SELECT id, name, type FROM custom_fields WHERE id = ANY ($1::bigint[])"
#: Issue $1's search rows (migration 0010) of the (field, value) pairs $2, $3: values it lost.
DELETE_ROWS = """
DELETE FROM issue_custom_values
 WHERE issue_id = $1
   AND (field_id, value) IN (SELECT * FROM unnest($2::bigint[], $3::text[]))
"""
#: Search rows of issue $1: (field, value, number, folded) from $2..$4 and $7,
#: component $5, status $6.
INSERT_ROWS = """
INSERT INTO issue_custom_values (issue_id, field_id, value, number, component_id, status, folded)
SELECT $1, r.field_id, r.value, r.number, $5, $6, r.folded
  FROM unnest($2::bigint[], $3::text[], $4::bigint[], $7::text[])
       AS r(field_id, value, number, folded)
"""
#: Up to $1 search rows written without their folded value (before migration
#: 0021, or by a replica of the release before it since).
UNFOLDED_ROWS = """
SELECT issue_id, field_id, value FROM issue_custom_values WHERE folded IS NULL
 ORDER BY issue_id LIMIT $1
"""
#: Rows (issue, field, value) $1..$3 take folded values $4, unless folded since.
SET_FOLDED = """
UPDATE issue_custom_values v SET folded = k.folded
  FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
       AS k(issue_id, field_id, value, folded)
 WHERE v.issue_id = k.issue_id AND v.field_id = k.field_id AND v.value = k.value
   AND v.folded IS NULL
"""
#: Rows folded per statement by :func:`fold_rows` (fewer past ``statement_timeout``).
FOLD_BATCH = 5000
#: Issue $1's search rows not yet in its component $2 with its status $3 take them.
RESTATUS_ROWS = """
UPDATE issue_custom_values SET component_id = $2, status = $3
 WHERE issue_id = $1 AND (component_id <> $2 OR status <> $3)
"""

__all__ = [
    "attach_values",
    "dump_values",
    "field_names",
    "load_values",
    "names_read",
    "search_rows",
    "sync_rows",
    "value_messages",
]


def load_values(raw: Any) -> dict[str, Any]:
    """The stored ``custom_fields`` column as a dict."""
    if isinstance(raw, str):
        loaded: dict[str, Any] = json.loads(raw)
        return loaded
    return dict(raw or {})


def dump_values(values: Mapping[str, Any]) -> str:
    """A values dict as the stored jsonb text (keys in a stable order).

    Most creates set no custom field: their text is the constant ``{}``.
    """
    if not values:
        return "{}"
    return json.dumps(dict(values), sort_keys=True)


#: A search row: field id, value, number (integers), the value case-folded.
SearchRow = tuple[int, str, int | None, str]


def search_rows(stored: Mapping[str, Any]) -> list[SearchRow]:
    """(field id, value, number, folded) search rows of stored values (migrations 0010, 0021).

    One row per value; a multi-valued field one per option; integers carry
    their number too, for comparisons; every value its case folding
    (``str.casefold``, which a text term's "contains, in any case" compares:
    no SQL function folds by that rule, so it is computed here and stored).
    """
    rows: list[SearchRow] = []
    for key, value in stored.items():
        for item in value if isinstance(value, list) else [value]:
            number = item if isinstance(item, int) and not isinstance(item, bool) else None
            text = str(item)
            rows.append((int(key), text, number, text.casefold()))
    return sorted(set(rows), key=lambda r: (r[0], r[1]))


async def sync_rows(
    conn: Conn,
    issue_id: int,
    *,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    moved: bool,
    status_changed: bool,
    component_id: int,
    status: int,
) -> None:
    """Keep issue ``issue_id``'s search rows equal to its values, component and status.

    Called by every write of ``issues.custom_fields``, ``component_id`` or
    ``status``, in its transaction, with the values the issue held
    (``before``: what its rows say) and holds now. Only rows that change are
    written: the rows of values it lost are deleted, those of values it
    gained inserted, and the rows it keeps updated in place when the issue
    moved or changed status, each statement sent only when it has rows to
    write. A kept row is never deleted and inserted again: inserting takes
    a lock on the row's field (migration 0014's key) and is checked
    against the field's options (migration 0015), which a value the write
    did not set has no reason to wait for (a change of status deadlocked
    with a deletion of the field that way) or to be refused by.
    """
    if not before and not after:
        return
    old, new = search_rows(before), search_rows(after)
    if old == new and not moved and not status_changed:
        return
    kept = {(r[0], r[1]) for r in new}.intersection((r[0], r[1]) for r in old)
    gone = [r for r in old if (r[0], r[1]) not in kept]
    if gone:
        await conn.execute(DELETE_ROWS, issue_id, [r[0] for r in gone], [r[1] for r in gone])
    if kept and (moved or status_changed):
        await conn.execute(RESTATUS_ROWS, issue_id, component_id, status)
    added = [r for r in new if (r[0], r[1]) not in kept]
    if added:
        fields, values, numbers, folded = (list(column) for column in zip(*added, strict=True))
        await conn.execute(
            INSERT_ROWS, issue_id, fields, values, numbers, component_id, status, folded
        )


def value_messages(
    stored: Mapping[str, Any], known: Mapping[int, tuple[str, int]]
) -> list[v1.CustomFieldValue]:
    """Stored values as CustomFieldValue messages, by field id; names from ``known``."""
    out = []
    for key in sorted(stored, key=int):
        name, kind = known.get(int(key), ("", 0))
        out.append(
            v1.CustomFieldValue(
                field_id=int(key),
                values=cf.from_stored(stored[key]),
                name=name,
                type=v1.CustomFieldType(kind),
            )
        )
    return out


async def field_names(conn: Conn, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """Name and type of the fields among ``ids`` that still exist."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {r["id"]: (r["name"], r["type"]) for r in await conn.fetch(FIELD_NAMES, wanted)}


def names_read(raw: Any) -> dict[int, tuple[str, int]] | None:
    """The names and types a row's :data:`q.CUSTOM_FIELD_NAMES` column read, by field id.

    ``None``: the row holds no values (the column is NULL then).
    """
    if raw is None:
        return None
    names = json.loads(raw) if isinstance(raw, str) else raw
    return {int(k): (v[0], v[1]) for k, v in names.items()}


def attach_values(issues: Mapping[int, v1.Issue], rows: Mapping[int, Row]) -> None:
    """Fill ``custom_fields`` of each issue from its :data:`q.FETCH_ISSUES` row.

    The names come with the rows (their ``custom_field_names`` column,
    :data:`q.CUSTOM_FIELD_NAMES`): no look-up of their own.
    """
    for issue_id, issue in issues.items():
        row = rows[issue_id]
        known = names_read(row["custom_field_names"])
        stored = load_values(row["custom_fields"])
        if stored and known is not None:
            issue.custom_fields = value_messages(stored, known)


async def fold_rows(
    pool: asyncpg.Pool, *, batch: int = FOLD_BATCH, progress_seconds: float = PROGRESS_SECONDS
) -> int:
    """Fold the values of the search rows migration 0021 left without; how many were.

    The Model runs it right after migrating, ``batch`` rows a statement
    (each committed on its own: a large table is never held in one
    transaction), fewer past ``statement_timeout`` (:func:`._halving.fold`).
    Values are folded by ``str.casefold``, as :func:`search_rows` folds them
    on every write; a row rewritten meanwhile keeps what its write folded.

    Raises:
        Unavailable: one row alone ran past ``statement_timeout``.
    """
    return await fold(pool, _UNFOLDED, batch=batch, progress_seconds=progress_seconds)


_UNFOLDED = Fold(
    name="migration 0021's fold of custom field values",
    count="SELECT count(*) FROM issue_custom_values WHERE folded IS NULL",
    select=UNFOLDED_ROWS,
    update=SET_FOLDED,
    arguments=lambda rows: (
        [r["issue_id"] for r in rows],
        [r["field_id"] for r in rows],
        [r["value"] for r in rows],
        [r["value"].casefold() for r in rows],
    ),
    row=lambda r: f"issue {r['issue_id']}'s value of field {r['field_id']}",
    log=logging.getLogger(__name__),
)
