"""Saved-search match rows: what a batch or a seed changed, and their writing.

:class:`MatchChanges` collects what :mod:`bugless_notify._saved_searches`
found (matches added and removed, subscriptions seeded or forgotten, the
query each is seeded with); :class:`MatchStore` writes it to
``saved_search_matches`` and ``saved_search_seen`` inside the consumer's
transaction, so the rows are committed with the batch's deliveries (or,
for seeds, before the feed is read) and never half of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bugless_core.migrations import quote_schema

MatchKey = tuple[int, str, int]


@dataclass
class MatchChanges:
    """Match rows to add and remove, committed with the batch's deliveries."""

    added: set[MatchKey] = field(default_factory=set)
    removed: set[MatchKey] = field(default_factory=set)
    #: ``(saved search id, user id)`` seeded now.
    seeded: set[tuple[int, str]] = field(default_factory=set)
    #: ``(saved search id, user id)`` no longer subscribed: forgotten with their matches.
    #: Also one seeded again (its query edited): forgotten first, then seeded.
    forgotten: set[tuple[int, str]] = field(default_factory=set)
    #: ``(saved search id, user id)``: the query it is seeded with, recorded
    #: (``saved_search_seen.query``) for the ones seeded now and for seeded
    #: ones whose query was not recorded (an earlier notifier's).
    queries: dict[tuple[int, str], str] = field(default_factory=dict)

    def seeds_anything(self) -> bool:
        """Whether there is a seed to commit before the feed is read."""
        return bool(self.seeded or self.forgotten or self.queries)


class MatchStore:
    """Writes :class:`MatchChanges` to ``saved_search_matches`` and ``saved_search_seen``."""

    def __init__(self, schema: str) -> None:
        """Use the tables in ``schema``."""
        schema = quote_schema(schema)
        self._add_sql = (
            f"INSERT INTO {schema}.saved_search_matches VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        )
        self._remove_sql = (
            f"DELETE FROM {schema}.saved_search_matches "
            "WHERE saved_search_id = $1 AND user_id = $2 AND issue_id = $3"
        )
        self._seen_sql = (
            f"INSERT INTO {schema}.saved_search_seen (saved_search_id, user_id, query) "
            "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        )
        self._query_sql = (
            f"UPDATE {schema}.saved_search_seen SET query = $3 "
            "WHERE saved_search_id = $1 AND user_id = $2"
        )
        self._forget_sqls = [
            f"DELETE FROM {schema}.{table} WHERE saved_search_id = $1 AND user_id = $2"
            for table in ("saved_search_seen", "saved_search_matches")
        ]

    async def write(self, conn: Any, changes: MatchChanges) -> None:
        """Write ``changes`` (inside the caller's transaction): forgotten first, then the rest."""
        for forget in self._forget_sqls:
            if changes.forgotten:
                await conn.executemany(forget, sorted(changes.forgotten))
        if changes.seeded:
            seeded = [(*key, changes.queries.get(key)) for key in sorted(changes.seeded)]
            await conn.executemany(self._seen_sql, seeded)
        if recorded := sorted(k for k in changes.queries if k not in changes.seeded):
            await conn.executemany(self._query_sql, [(*k, changes.queries[k]) for k in recorded])
        if changes.added:
            await conn.executemany(self._add_sql, sorted(changes.added))
        if changes.removed:
            await conn.executemany(self._remove_sql, sorted(changes.removed))
