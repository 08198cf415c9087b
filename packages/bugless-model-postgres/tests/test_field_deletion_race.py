"""A custom field deleted while a write sets it leaves no value behind (migration 0014).

Every write that sets a value reads the field's definition first, without a
lock, and writes the value (``issues.custom_fields``) and its search row
after. DeleteCustomField removes the values its statements find, then the
definition. Each test here holds one of the two transactions open at the
point where the race bites, on a connection of its own, by a trigger that
waits for an advisory lock the test holds, and lets the other write run:

* the deletion is held after its statements, before its commit, while a
  change, a create (alone, in a batch, by import) sets the field on an
  issue that did not hold it: the write must wait for the deletion and then
  answer as it would after it (the field does not apply), writing nothing;
* a write is held after inserting the value's row, before its commit, while
  the deletion runs: the deletion must wait for it and remove the value.

Either way no issue keeps a value or a search row of the deleted field.
A locked change of an issue holding a value (its status, say) updates the
value's row in place, taking no lock on the field: the deletion waits for
it, and neither is retried.
Without migration 0014's key the first ordering leaves an orphan value and
row for every write, the second for both changes. (Creates were already
safe in the second: the new issue's key to its component holds the
component, which the deletion locks first.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg
import pytest
from value_writes import WRITES, Write, until_waiting_or_done, value
from write_support import (
    ADMIN,
    ALICE,
    FIELD_VALUES_HELD,
    advisory_gate,
    component_with_field,
    connected,
    create,
    wait_behind_lock,
)

from bugless_core.errors import InvalidArgument
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _custom_fields, _issues
from bugless_model_postgres._context import WriteContext
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

T = TypeVar("T")
GATE = 0x6A7E
#: Waits (in whichever transaction fires it) until the test lets the gate go:
#: on the deletion of a field named "gated ...", on the insertion of a
#: search row valued "gated ...", or on the update of an issue holding a
#: value "held ...". Other tests' rows pass through.
TRIGGERS = f"""
CREATE OR REPLACE FUNCTION gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({GATE});
    RETURN NULL;
END $$;
CREATE TRIGGER gate_field_delete AFTER DELETE ON custom_fields
    FOR EACH ROW WHEN (OLD.name LIKE 'gated %') EXECUTE FUNCTION gate_wait();
CREATE TRIGGER gate_value_insert AFTER INSERT ON issue_custom_values
    FOR EACH ROW WHEN (NEW.value LIKE 'gated %') EXECUTE FUNCTION gate_wait();
CREATE TRIGGER gate_issue_update AFTER UPDATE ON issues
    FOR EACH ROW WHEN (NEW.custom_fields::text LIKE '%"held %') EXECUTE FUNCTION gate_wait();
"""
DROP_TRIGGERS = """
DROP TRIGGER gate_field_delete ON custom_fields;
DROP TRIGGER gate_value_insert ON issue_custom_values;
DROP TRIGGER gate_issue_update ON issues;
DROP FUNCTION gate_wait();
"""


@pytest.fixture
async def gate(model_settings: ModelSettings) -> AsyncIterator[list[asyncpg.Connection]]:
    """The gate's triggers, its holder and a watcher of lock waits."""
    async with advisory_gate(model_settings, TRIGGERS, DROP_TRIGGERS) as connections:
        yield connections


async def _gated_field(backend: PostgresBackend) -> tuple[v1.Component, v1.CustomField]:
    component, field = await component_with_field(backend, "gone")
    renamed = await backend.update_custom_field(
        v1.UpdateCustomFieldRequest(
            caller=ADMIN,
            custom_field=v1.CustomField(id=field.id, name=f"gated {uuid.uuid4().hex[:6]}"),
            update_mask=FieldMask(["name"]),
        )
    )
    return component, renamed


async def _delete(backend: PostgresBackend, field: v1.CustomField) -> None:
    await backend.delete_custom_field(v1.DeleteCustomFieldRequest(caller=ADMIN, field_id=field.id))


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__.strip("_"))
async def test_a_write_behind_an_uncommitted_deletion_answers_as_after_it(
    bugless_model_backend: PostgresBackend, gate: list[asyncpg.Connection], write: Write
) -> None:
    """The deletion ran its statements; the write read the field before it commits."""
    backend = bugless_model_backend
    holder, watcher = gate
    component, field = await _gated_field(backend)
    run = await write(backend, component, field)
    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    deletion = asyncio.ensure_future(_delete(backend, field))
    await wait_behind_lock(watcher, deletion)  # its statements done, its commit not
    writing = asyncio.ensure_future(run("4.2"))
    await until_waiting_or_done(watcher, writing, 2)
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    await deletion
    with pytest.raises(InvalidArgument, match=f"custom field {field.id} does not apply"):
        await writing
    assert await watcher.fetchval(FIELD_VALUES_HELD, field.id) == 0


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__.strip("_"))
async def test_a_deletion_behind_an_uncommitted_write_removes_its_value(
    bugless_model_backend: PostgresBackend, gate: list[asyncpg.Connection], write: Write
) -> None:
    """The write inserted its value's row; the deletion starts before it commits."""
    backend = bugless_model_backend
    holder, watcher = gate
    component, field = await _gated_field(backend)
    run = await write(backend, component, field)
    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    writing = asyncio.ensure_future(run("gated 4.2"))
    await wait_behind_lock(watcher, writing)  # its value's row inserted, its commit not
    deletion = asyncio.ensure_future(_delete(backend, field))
    await until_waiting_or_done(watcher, deletion, 2)
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    await writing
    await deletion
    assert await watcher.fetchval(FIELD_VALUES_HELD, field.id) == 0


class Attempts(Generic[T]):
    """Counts the attempts of a write (the retry policy calls ``work`` once per attempt)."""

    def __init__(self, work: Callable[[WriteContext], Awaitable[T]]) -> None:
        self.count = 0
        self._work = work

    def __call__(self, ctx: WriteContext) -> Awaitable[T]:
        self.count += 1
        return self._work(ctx)


async def test_a_locked_change_keeping_a_held_value_and_its_deletion_settle_at_once(
    bugless_model_backend: PostgresBackend, gate: list[asyncpg.Connection]
) -> None:
    """The locked path updates the search rows of values the issue keeps in place.

    Held after writing the issue's row, before its search rows, the change
    is queued behind by the deletion (which locks the issues holding the
    field's values first). The change takes no lock on the field for a
    value it keeps (only an inserted row's key check would), so it
    commits, then the deletion runs: each on its first attempt, and the
    value is gone. (When the locked path re-inserted every row and the
    deletion locked the field before the issue, the change waited for the
    deletion's lock on the field: a deadlock, settled by a retry of one of
    the two. ``test_field_lock_order.py`` covers a change that does insert.)
    """
    backend = bugless_model_backend
    holder, watcher = gate
    component, field = await _gated_field(backend)
    issue = await create(backend, component.id, custom_fields=value(field, "held 1"))
    delta = v1.IssueDelta(
        fields=v1.IssueFields(status=v1.Status.ACCEPTED), update_mask=FieldMask(["status"])
    )
    change = Attempts(
        lambda ctx: _issues.change_issue(
            ctx, issue.id, issue.version, delta, "", whole_transaction=True
        )
    )
    request = v1.DeleteCustomFieldRequest(caller=ADMIN, field_id=field.id)
    deletion = Attempts(lambda ctx: _custom_fields.delete_field(ctx, request))
    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    changing = asyncio.ensure_future(backend._write(ALICE, change))
    await wait_behind_lock(watcher, changing)  # the issue written, its search rows not
    deleting = asyncio.ensure_future(backend._write(ADMIN, deletion))
    await until_waiting_or_done(watcher, deleting, 2)
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    (changed, _), _ = await asyncio.gather(changing, deleting)
    assert (change.count, deletion.count) == (1, 1)
    assert changed.issue is not None
    assert changed.issue.status == v1.Status.ACCEPTED
    assert await watcher.fetchval(FIELD_VALUES_HELD, field.id) == 0


async def test_the_migration_removes_orphans_of_the_race_then_keys_the_rows(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Values the race left before version 14 go (theirs only); then the key holds."""
    backend = bugless_model_backend
    component, field = await component_with_field(backend, "orphans")
    kept = await create(backend, component.id, custom_fields=value(field, "1.0"))
    (migration,) = [m for m in PostgresBackend.migrations() if m.version == 14]
    async with connected(model_settings, 1) as (conn,):
        gone = await conn.fetchval("SELECT max(id) + 1000 FROM custom_fields")
        async with conn.transaction():
            await conn.execute(
                "ALTER TABLE issue_custom_values DROP CONSTRAINT issue_custom_values_field_id_fkey"
            )
            await conn.execute(
                "UPDATE issues SET custom_fields = custom_fields || jsonb_build_object($2::text, "
                "'x') WHERE id = $1",
                kept.id,
                str(gone),
            )
            await conn.execute(
                "INSERT INTO issue_custom_values (issue_id, field_id, value, component_id, status)"
                " SELECT id, $2, 'x', component_id, status FROM issues WHERE id = $1",
                kept.id,
                gone,
            )
            await conn.execute(migration.sql)
        assert await conn.fetchval(FIELD_VALUES_HELD, gone) == 0
        stored = await conn.fetchval("SELECT custom_fields FROM issues WHERE id = $1", kept.id)
        assert stored == f'{{"{field.id}": "1.0"}}'
        rows = await conn.fetch(
            "SELECT field_id, value FROM issue_custom_values WHERE issue_id = $1", kept.id
        )
        assert [tuple(r) for r in rows] == [(field.id, "1.0")]
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "INSERT INTO issue_custom_values (issue_id, field_id, value, component_id, status)"
                " VALUES ($1, $2, 'x', 1, 1)",
                kept.id,
                gone,
            )
