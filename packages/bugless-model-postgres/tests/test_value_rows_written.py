"""The locked ChangeIssue path writes only the custom value search rows that change.

An issue's search rows (migration 0010: one per value, with its component
and status) follow its values. The locked path (``_custom_values.sync_rows``)
deletes the rows of values the issue lost, inserts those of values it
gained and updates the kept ones in place when it moved or changed status;
a kept row is never deleted and inserted again. What each change wrote is
read twice, with no trigger of our own: inside the write's transaction,
from the server's counts of the rows it inserted, updated and deleted there
(``pg_stat_xact_user_tables``); and after it, from each row's ``xmin`` (a
row the change did not write keeps the transaction id that wrote it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import asyncpg
import pytest
from write_support import ADMIN, ALICE, connected, create, fresh_component

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _issues
from bugless_model_postgres._context import WriteContext
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: What the current transaction wrote to the search rows so far.
WRITTEN = """
SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables
 WHERE relname = 'issue_custom_values' AND schemaname = current_schema()
"""
#: Issue $1's search rows: (field, value) -> (row version's xmin, component, status).
ROWS = """
SELECT field_id, value, xmin::text AS xmin, component_id, status FROM issue_custom_values
 WHERE issue_id = $1
"""


class Written(NamedTuple):
    """Search rows a write inserted, updated and deleted."""

    inserted: int
    updated: int
    deleted: int


class Valued:
    """An issue holding a text value and two options of a multi-valued field."""

    async def make(self, backend: PostgresBackend) -> Valued:
        self.backend = backend
        self.component = await fresh_component(backend, "rows")
        self.child = await fresh_component(backend, "rows-child", parent_id=self.component.id)
        self.notes, self.platforms = [
            await backend.create_custom_field(
                v1.CreateCustomFieldRequest(
                    caller=ADMIN,
                    component_id=self.component.id,
                    name=name,
                    type=kind,
                    options=options,
                )
            )
            for name, kind, options in (
                ("Notes", v1.CustomFieldType.TEXT, []),
                ("Platforms", v1.CustomFieldType.ENUM_MULTI, ["linux", "mac", "win"]),
            )
        ]
        self.issue = await create(
            backend,
            self.component.id,
            custom_fields=[
                v1.CustomFieldValue(field_id=self.notes.id, values=["slow"]),
                v1.CustomFieldValue(field_id=self.platforms.id, values=["linux", "mac"]),
            ],
        )
        return self

    def platforms_set(self, *options: str) -> list[v1.CustomFieldValue]:
        return [v1.CustomFieldValue(field_id=self.platforms.id, values=list(options))]

    async def change(self, delta: v1.IssueDelta, comment: str = "") -> Written:
        """``delta`` by the locked path; the rows its transaction wrote, counted before commit.

        The counts are read before the change too: they also hold what earlier
        transactions of the session wrote that the server has not yet added
        to its statistics (it does so at most once a second).
        """
        zero = (0, 0, 0)

        async def work(ctx: WriteContext) -> tuple[_issues.Changed, Written]:
            before = await ctx.conn.fetchrow(WRITTEN)
            changed = await _issues.change_issue(
                ctx, self.issue.id, self.issue.version, delta, comment, whole_transaction=True
            )
            after = await ctx.conn.fetchrow(WRITTEN)
            pairs = zip(after or zero, before or zero, strict=True)
            return changed, Written(*(a - b for a, b in pairs))

        (changed, written), _ = await self.backend._write(ALICE, work)
        self.issue = changed.issue or self.issue
        return written


@pytest.fixture
async def valued(bugless_model_backend: PostgresBackend) -> Valued:
    return await Valued().make(bugless_model_backend)


@pytest.fixture
async def reader(model_settings: ModelSettings) -> Any:
    async with connected(model_settings, 1) as (conn,):
        yield conn


async def _rows(conn: asyncpg.Connection, issue_id: int) -> dict[tuple[int, str], tuple[Any, ...]]:
    rows = await conn.fetch(ROWS, issue_id)
    return {(r["field_id"], r["value"]): (r["xmin"], r["component_id"], r["status"]) for r in rows}


async def test_a_status_change_updates_the_kept_rows_in_place(
    valued: Valued, reader: asyncpg.Connection
) -> None:
    before = await _rows(reader, valued.issue.id)
    written = await valued.change(
        v1.IssueDelta(
            fields=v1.IssueFields(status=v1.Status.ACCEPTED), update_mask=FieldMask(["status"])
        )
    )
    assert written == Written(inserted=0, updated=3, deleted=0)
    after = await _rows(reader, valued.issue.id)
    assert after.keys() == before.keys()
    assert {row[2] for row in after.values()} == {int(v1.Status.ACCEPTED)}


async def test_a_value_change_writes_only_the_options_that_come_and_go(
    valued: Valued, reader: asyncpg.Connection
) -> None:
    before = await _rows(reader, valued.issue.id)
    written = await valued.change(
        v1.IssueDelta(custom_fields_set=valued.platforms_set("mac", "win"))
    )
    assert written == Written(inserted=1, updated=0, deleted=1)
    after = await _rows(reader, valued.issue.id)
    notes, platforms = valued.notes.id, valued.platforms.id
    assert after.keys() == {(notes, "slow"), (platforms, "mac"), (platforms, "win")}
    for kept in ((notes, "slow"), (platforms, "mac")):
        assert after[kept] == before[kept], f"{kept} was rewritten"


async def test_a_value_and_status_change_inserts_with_the_new_status(
    valued: Valued, reader: asyncpg.Connection
) -> None:
    written = await valued.change(
        v1.IssueDelta(
            fields=v1.IssueFields(status=v1.Status.ACCEPTED),
            update_mask=FieldMask(["status"]),
            custom_fields_set=valued.platforms_set("win"),
        )
    )
    assert written == Written(inserted=1, updated=1, deleted=2)
    after = await _rows(reader, valued.issue.id)
    assert {key: row[1:] for key, row in after.items()} == {
        (valued.notes.id, "slow"): (valued.component.id, int(v1.Status.ACCEPTED)),
        (valued.platforms.id, "win"): (valued.component.id, int(v1.Status.ACCEPTED)),
    }


async def test_a_move_keeping_the_values_updates_their_component(
    valued: Valued, reader: asyncpg.Connection
) -> None:
    written = await valued.change(
        v1.IssueDelta(
            fields=v1.IssueFields(component_id=valued.child.id),
            update_mask=FieldMask(["component_id"]),
        )
    )
    assert written == Written(inserted=0, updated=3, deleted=0)
    after = await _rows(reader, valued.issue.id)
    assert {row[1] for row in after.values()} == {valued.child.id}


async def test_a_comment_or_an_unchanged_value_writes_no_row(
    valued: Valued, reader: asyncpg.Connection
) -> None:
    before = await _rows(reader, valued.issue.id)
    assert await valued.change(v1.IssueDelta(), "a comment") == Written(0, 0, 0)
    unchanged = v1.IssueDelta(custom_fields_set=valued.platforms_set("MAC", "linux"))
    assert await valued.change(unchanged, "the same platforms") == Written(0, 0, 0)
    assert await _rows(reader, valued.issue.id) == before
