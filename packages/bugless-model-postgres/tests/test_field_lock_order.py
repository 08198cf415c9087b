"""A custom field's change and a write setting it take their locks in one order.

Writes lock issues, then components, then fields: a change locks its
issue (a move's key then holds the new component), a create holds its
component (the new issue's key to it, FOR KEY SHARE), and then their new
value rows hold the field (their key, migration 0014, and migration
0015's trigger, FOR KEY SHARE). UpdateCustomField locks the field's
component, then the field, both FOR UPDATE; DeleteCustomField first locks
the issues holding the field's values, whose values it removes. So either
side waits for the other and neither is retried. Each test here holds a
write on a connection of its own, by a trigger that waits for an advisory
lock the test holds, after it wrote its issue's row, before its value
rows, and starts the field's change meanwhile:

* a create (alone, in a batch, by import), against an update or a deletion;
* a change of an issue's value (one statement, locked), against a deletion.

When the field's change locked the field first, it held the field while
waiting for the create's component (or the deletion for the changed
issue), and the write then waited for the field: a deadlock (40P01),
settled by aborting one of the two, which the retry policy ran again. The
retries are read from the policy's log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from value_writes import Write, _batch, _create, _import, until_waiting_or_done, value
from write_support import (
    ADMIN,
    ALICE,
    FIELD_VALUES_HELD,
    advisory_gate,
    component_with_field,
    create,
    wait_behind_lock,
)

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _issues
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

GATE = 0x10C0
#: Waits, in the transaction writing it, after an issue of a component
#: named "lockorder-..." is inserted (its key to the component checked: the
#: key's trigger, "RI_...", fires before this one, triggers fire in name
#: order) or updated, its new custom values' rows not yet inserted (their
#: key's checks fire after, at the end of the statement or in a later
#: one). Other tests' issues pass through.
TRIGGERS = f"""
CREATE OR REPLACE FUNCTION order_gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM components
                WHERE id = NEW.component_id AND name LIKE 'lockorder-%') THEN
        PERFORM pg_advisory_xact_lock_shared({GATE});
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER order_gate_issue AFTER INSERT OR UPDATE ON issues
    FOR EACH ROW EXECUTE FUNCTION order_gate_wait();
"""
DROP_TRIGGERS = """
DROP TRIGGER order_gate_issue ON issues;
DROP FUNCTION order_gate_wait();
"""
RETRY_LOGGER = "bugless_core.transactions"
FieldChange = Callable[[PostgresBackend, v1.CustomField], Awaitable[object]]


async def _update(backend: PostgresBackend, field: v1.CustomField) -> object:
    return await backend.update_custom_field(
        v1.UpdateCustomFieldRequest(
            caller=ADMIN,
            custom_field=v1.CustomField(id=field.id, description="changed meanwhile"),
            update_mask=FieldMask(["description"]),
        )
    )


async def _delete(backend: PostgresBackend, field: v1.CustomField) -> object:
    await backend.delete_custom_field(v1.DeleteCustomFieldRequest(caller=ADMIN, field_id=field.id))
    return None


@pytest.fixture
async def gate(model_settings: ModelSettings) -> AsyncIterator[list[asyncpg.Connection]]:
    """The gate's triggers, its holder and a watcher of lock waits."""
    async with advisory_gate(model_settings, TRIGGERS, DROP_TRIGGERS) as connections:
        yield connections


@pytest.mark.parametrize("change", [_update, _delete], ids=["update", "delete"])
@pytest.mark.parametrize("write", [_create, _batch, _import], ids=["create", "batch", "import"])
async def test_a_field_change_waits_for_a_create_holding_its_component(
    bugless_model_backend: PostgresBackend,
    gate: list[asyncpg.Connection],
    caplog: pytest.LogCaptureFixture,
    write: Write,
    change: FieldChange,
) -> None:
    """The create holds the component, not yet the field; the change queues, nobody retries."""
    backend = bugless_model_backend
    holder, watcher = gate
    caplog.set_level(logging.DEBUG, logger=RETRY_LOGGER)
    component, field = await component_with_field(backend, "lockorder")
    run = await write(backend, component, field)
    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    writing = asyncio.ensure_future(run("4.2"))
    await wait_behind_lock(watcher, writing)  # its issue inserted, its values not
    changing = asyncio.ensure_future(change(backend, field))
    await until_waiting_or_done(watcher, changing, 2)
    assert not changing.done(), "the field's change did not wait for the create"
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    await asyncio.gather(writing, changing)
    retries = [r.getMessage() for r in caplog.records if r.name == RETRY_LOGGER]
    assert retries == []
    if change is _delete:
        assert await watcher.fetchval(FIELD_VALUES_HELD, field.id) == 0
    else:
        assert await watcher.fetchval(FIELD_VALUES_HELD, field.id) == 2
        described = await watcher.fetchval(
            "SELECT description FROM custom_fields WHERE id = $1", field.id
        )
        assert described == "changed meanwhile"


async def _change_value(backend: PostgresBackend, issue: v1.Issue, field: v1.CustomField) -> object:
    """A new value of ``field`` on ``issue``, in ChangeIssue's one statement."""
    return await backend.change_issue(
        v1.ChangeIssueRequest(
            caller=ALICE,
            issue_id=issue.id,
            expected_version=issue.version,
            delta=v1.IssueDelta(custom_fields_set=value(field, "2.0")),
        )
    )


async def _change_value_locked(
    backend: PostgresBackend, issue: v1.Issue, field: v1.CustomField
) -> object:
    """The same change by the locked path."""
    delta = v1.IssueDelta(custom_fields_set=value(field, "2.0"))
    return await backend._write(
        ALICE,
        lambda ctx: _issues.change_issue(
            ctx, issue.id, issue.version, delta, "", whole_transaction=True
        ),
    )


@pytest.mark.parametrize("write", [_change_value, _change_value_locked], ids=["one", "locked"])
async def test_a_deletion_waits_for_a_change_holding_an_issue_with_a_value(
    bugless_model_backend: PostgresBackend,
    gate: list[asyncpg.Connection],
    caplog: pytest.LogCaptureFixture,
    write: Callable[[PostgresBackend, v1.Issue, v1.CustomField], Awaitable[object]],
) -> None:
    """The change holds an issue valued in the field, not yet the field; nobody retries.

    A change of an issue's value locks the issue, then inserts the new
    value's row (which holds the field). DeleteCustomField updates every
    issue holding the field (``DROP_VALUES``): it locks them before the
    field, so it waits for the change instead of holding the field the
    change is about to need.
    """
    backend = bugless_model_backend
    holder, watcher = gate
    caplog.set_level(logging.DEBUG, logger=RETRY_LOGGER)
    component, field = await component_with_field(backend, "lockorder")
    issue = await create(backend, component.id, custom_fields=value(field, "1.0"))
    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    writing = asyncio.ensure_future(write(backend, issue, field))
    await wait_behind_lock(watcher, writing)  # the issue updated, its new value's row not
    deleting = asyncio.ensure_future(_delete(backend, field))
    await until_waiting_or_done(watcher, deleting, 2)
    assert not deleting.done(), "the deletion did not wait for the change"
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    await asyncio.gather(writing, deleting)
    retries = [r.getMessage() for r in caplog.records if r.name == RETRY_LOGGER]
    assert retries == []
    assert await watcher.fetchval(FIELD_VALUES_HELD, field.id) == 0
