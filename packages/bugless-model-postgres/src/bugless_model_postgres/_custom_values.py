"""Custom field values as stored on issues and as messages (no write logic).

Kept apart from :mod:`._custom_fields` (definitions and value planning) so
that the issue read path (:mod:`._context`) can attach values without
importing the write side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from bugless_core import custom_fields as cf
from bugless_model_postgres._convert import Conn, Row
from bugless_proto import v1

FIELD_NAMES = "SELECT id, name, type FROM custom_fields WHERE id = ANY ($1::bigint[])"

__all__ = ["attach_values", "dump_values", "field_names", "load_values", "value_messages"]


def load_values(raw: Any) -> dict[str, Any]:
    """The stored ``custom_fields`` column as a dict."""
    if isinstance(raw, str):
        loaded: dict[str, Any] = json.loads(raw)
        return loaded
    return dict(raw or {})


def dump_values(values: Mapping[str, Any]) -> str:
    """A values dict as the stored jsonb text (keys in a stable order)."""
    return json.dumps(dict(values), sort_keys=True)


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


async def attach_values(
    conn: Conn, issues: Mapping[int, v1.Issue], rows: Mapping[int, Row]
) -> None:
    """Fill ``custom_fields`` of each issue from its row (one look-up for the names)."""
    stored = {i: load_values(rows[i]["custom_fields"]) for i in issues}
    known = await field_names(conn, (int(k) for values in stored.values() for k in values))
    for issue_id, issue in issues.items():
        if stored[issue_id]:
            issue.custom_fields = value_messages(stored[issue_id], known)
