"""An option removed while a write sets it is never stored (migration 0015).

Every write that sets an ENUM or ENUM_MULTI value checks it against the
options it read, without a lock, and writes the value and its search rows
after. UpdateCustomField locks the definition, refuses to remove an option
a search row names, then writes the new options. Each test here holds one
of the two transactions open at the point where the race bites, on a
connection of its own, by a trigger that waits for an advisory lock the
test holds, and lets the other run:

* the update is held after its statements, before its commit, while a
  write (each of :data:`value_writes.WRITES`) sets the option it removes:
  the write must wait for the update, then answer as it would after it
  (InvalidArgument: not an option), writing nothing;
* the same with an update renaming the option, its case only: the write
  must store the new spelling (migration 0017);
* a write is held after inserting the value's row, before its commit,
  while the update runs: the update must wait for it, then refuse
  (FailedPrecondition: the option is set on an issue).

Without migration 0015's trigger the first ordering stores the removed
option on the issue for every write: migration 0014's key makes the write
wait for the update's lock on the field, then lets its row in.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from value_writes import WRITES, Write, until_waiting_or_done
from write_support import ADMIN, advisory_gate, fresh_component, wait_behind_lock

from bugless_core.errors import FailedPrecondition, InvalidArgument
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

GATE = 0x0F7E
#: Waits (in whichever transaction fires it) until the test lets the gate go:
#: on an update of a field named "gated ...", or on the insertion of a search
#: row valued "held ...". Other tests' rows pass through.
TRIGGERS = f"""
CREATE OR REPLACE FUNCTION option_gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({GATE});
    RETURN NULL;
END $$;
CREATE TRIGGER option_gate_update AFTER UPDATE ON custom_fields
    FOR EACH ROW WHEN (NEW.name LIKE 'gated %') EXECUTE FUNCTION option_gate_wait();
CREATE TRIGGER option_gate_value AFTER INSERT ON issue_custom_values
    FOR EACH ROW WHEN (NEW.value LIKE 'held %') EXECUTE FUNCTION option_gate_wait();
"""
DROP_TRIGGERS = """
DROP TRIGGER option_gate_update ON custom_fields;
DROP TRIGGER option_gate_value ON issue_custom_values;
DROP FUNCTION option_gate_wait();
"""
#: Issues holding option $2 of field $1: in their values or in a search row.
HOLDING = """
SELECT (SELECT count(*) FROM issue_custom_values WHERE field_id = $1 AND value = $2)
     + (SELECT count(*) FROM issues
         WHERE custom_fields -> ($1::bigint::text) @> to_jsonb($2::text))
"""
TYPES = [v1.CustomFieldType.ENUM, v1.CustomFieldType.ENUM_MULTI]


@pytest.fixture
async def gate(model_settings: ModelSettings) -> AsyncIterator[list[asyncpg.Connection]]:
    """The gate's triggers, its holder and a watcher of lock waits."""
    async with advisory_gate(model_settings, TRIGGERS, DROP_TRIGGERS) as connections:
        yield connections


async def _gated_field(
    backend: PostgresBackend, field_type: v1.CustomFieldType, options: list[str]
) -> tuple[v1.Component, v1.CustomField]:
    """A fresh component with a field of ``field_type`` named "gated ..." (its updates wait)."""
    component = await fresh_component(backend, "options")
    field = await backend.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=component.id,
            name=f"gated {uuid.uuid4().hex[:6]}",
            type=field_type,
            options=options,
        )
    )
    return component, field


async def _keep_only(backend: PostgresBackend, field: v1.CustomField, option: str) -> None:
    """Remove every option of ``field`` but ``option``."""
    await backend.update_custom_field(
        v1.UpdateCustomFieldRequest(
            caller=ADMIN,
            custom_field=v1.CustomField(id=field.id, options=[option]),
            update_mask=FieldMask(["options"]),
        )
    )


@pytest.mark.parametrize("field_type", TYPES, ids=lambda t: t.name.lower())
@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__.strip("_"))
async def test_a_write_behind_an_uncommitted_removal_answers_as_after_it(
    bugless_model_backend: PostgresBackend,
    gate: list[asyncpg.Connection],
    write: Write,
    field_type: v1.CustomFieldType,
) -> None:
    """The update removed the option, uncommitted; the write read the options before."""
    backend = bugless_model_backend
    holder, watcher = gate
    component, field = await _gated_field(backend, field_type, ["kept", "removed"])
    run = await write(backend, component, field)
    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    removal = asyncio.ensure_future(_keep_only(backend, field, "kept"))
    await wait_behind_lock(watcher, removal)  # its statements done, its commit not
    writing = asyncio.ensure_future(run("removed"))
    await until_waiting_or_done(watcher, writing, 2)
    assert not writing.done(), "the write did not wait for the update"
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    await removal
    with pytest.raises(InvalidArgument, match="'removed' is not an option of"):
        await writing
    assert await watcher.fetchval(HOLDING, field.id, "removed") == 0


@pytest.mark.parametrize("field_type", TYPES, ids=lambda t: t.name.lower())
@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__.strip("_"))
async def test_a_write_behind_an_uncommitted_case_rename_stores_the_new_spelling(
    bugless_model_backend: PostgresBackend,
    gate: list[asyncpg.Connection],
    write: Write,
    field_type: v1.CustomFieldType,
) -> None:
    """The update renamed "Bug" to "bug", uncommitted; the write matched "BUG" to "Bug" before.

    The write's value must end in the spelling the field has when the write
    commits: its row, matched to "Bug", is refused (migration 0017 compares
    exactly) and the retry matches "bug". (With 0015's ``lower()`` the row
    went in as "Bug", a spelling the field no longer had.)
    """
    backend = bugless_model_backend
    holder, watcher = gate
    component, field = await _gated_field(backend, field_type, ["Bug", "other"])
    run = await write(backend, component, field)
    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    renaming = asyncio.ensure_future(
        backend.update_custom_field(
            v1.UpdateCustomFieldRequest(
                caller=ADMIN,
                custom_field=v1.CustomField(id=field.id, options=["bug", "other"]),
                update_mask=FieldMask(["options"]),
            )
        )
    )
    await wait_behind_lock(watcher, renaming)  # its statements done, its commit not
    writing = asyncio.ensure_future(run("BUG"))
    await until_waiting_or_done(watcher, writing, 2)
    assert not writing.done(), "the write did not wait for the update"
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    await renaming
    await writing
    assert await watcher.fetchval(HOLDING, field.id, "Bug") == 0
    assert await watcher.fetchval(HOLDING, field.id, "bug") == 2


@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__.strip("_"))
async def test_a_removal_behind_an_uncommitted_write_is_refused(
    bugless_model_backend: PostgresBackend, gate: list[asyncpg.Connection], write: Write
) -> None:
    """The write inserted the option's row; the update starts before it commits."""
    backend = bugless_model_backend
    holder, watcher = gate
    component, field = await _gated_field(backend, v1.CustomFieldType.ENUM, ["kept", "held one"])
    run = await write(backend, component, field)
    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    writing = asyncio.ensure_future(run("held one"))
    await wait_behind_lock(watcher, writing)  # its value's row inserted, its commit not
    removal = asyncio.ensure_future(_keep_only(backend, field, "kept"))
    await until_waiting_or_done(watcher, removal, 2)
    assert not removal.done(), "the update did not wait for the write"
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    await writing
    with pytest.raises(FailedPrecondition, match="option 'held one' is set on issues"):
        await removal
    assert await watcher.fetchval(HOLDING, field.id, "held one") >= 2


@pytest.mark.parametrize("field_type", TYPES, ids=lambda t: t.name.lower())
@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__.strip("_"))
async def test_a_case_rename_behind_an_uncommitted_write_carries_its_value(
    bugless_model_backend: PostgresBackend,
    gate: list[asyncpg.Connection],
    write: Write,
    field_type: v1.CustomFieldType,
) -> None:
    """The write inserted "held Bug"; the update renaming it "held bug" starts before it commits.

    The update waits for the write (its row holds the field), then reads
    the spellings held and carries the write's value along with the others.
    """
    backend = bugless_model_backend
    holder, watcher = gate
    component, field = await _gated_field(backend, field_type, ["kept", "held Bug"])
    run = await write(backend, component, field)
    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    writing = asyncio.ensure_future(run("HELD BUG"))
    await wait_behind_lock(watcher, writing)  # its value's row inserted, its commit not
    renaming = asyncio.ensure_future(
        backend.update_custom_field(
            v1.UpdateCustomFieldRequest(
                caller=ADMIN,
                custom_field=v1.CustomField(id=field.id, options=["kept", "held bug"]),
                update_mask=FieldMask(["options"]),
            )
        )
    )
    await until_waiting_or_done(watcher, renaming, 2)
    assert not renaming.done(), "the update did not wait for the write"
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    await writing
    await renaming
    assert await watcher.fetchval(HOLDING, field.id, "held Bug") == 0
    assert await watcher.fetchval(HOLDING, field.id, "held bug") == 2
