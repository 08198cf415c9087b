"""A field's change never waits for an issue while holding the field (``_field_holders``).

DeleteCustomField removes a field's values and UpdateCustomField renaming an
option's case respells them: both rewrite the issues holding them, so both
lock those issues before the field. An issue can still become a holder
while the change waits for the field (its write holds the field until it
commits), and a second write can lock that issue as the first commits and
then insert a value, which waits for the field. Had the change then waited
for the issue, the two would wait for each other until PostgreSQL's deadlock
timeout aborted one (40P01, retried). The change locks such issues without
waiting instead, and runs again when one is taken (HoldersBusy): the second
write goes through at once, the change after it, and nobody deadlocks.

The test makes that interleaving certain: a transaction of its own holds the
field FOR KEY SHARE so the change waits for the field; a first write gives
the issue its value meanwhile (KEY SHARE does not wait for a waiting FOR
UPDATE) and commits; a second write, held by a trigger on an advisory lock
after it updated the issue and before it inserts its value's row, holds the
issue; then the field is let go. The retries are read from the policy's log.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from value_writes import until_waiting_or_done, value
from write_support import (
    ADMIN,
    ALICE,
    FIELD_VALUES_HELD,
    Holder,
    advisory_gate,
    create,
    fresh_component,
)

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _issues
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

GATE = 0x401D
#: Waits, in the transaction writing it, after an issue's row is updated to
#: hold a value "gated ...", before that value's search row is inserted (the
#: locked path inserts it in a later statement). Other tests' issues pass.
TRIGGERS = f"""
CREATE OR REPLACE FUNCTION holders_gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({GATE});
    RETURN NULL;
END $$;
CREATE TRIGGER holders_gate_issue AFTER UPDATE ON issues
    FOR EACH ROW WHEN (NEW.custom_fields::text LIKE '%"gated %')
    EXECUTE FUNCTION holders_gate_wait();
"""
DROP_TRIGGERS = """
DROP TRIGGER holders_gate_issue ON issues;
DROP FUNCTION holders_gate_wait();
"""
RETRY_LOGGER = "bugless_core.transactions"
#: Sessions some session ``$1`` blocks.
BLOCKED_BY = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))"
#: The session waiting for the gate.
GATED = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
FieldChange = Callable[[PostgresBackend, v1.CustomField], Awaitable[object]]


async def _rename_case(backend: PostgresBackend, field: v1.CustomField) -> object:
    return await backend.update_custom_field(
        v1.UpdateCustomFieldRequest(
            caller=ADMIN,
            custom_field=v1.CustomField(id=field.id, options=["bug", "gated other"]),
            update_mask=FieldMask(["options"]),
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


async def _until(watcher: asyncpg.Connection, query: str, *args: object) -> int:
    """The first non-zero answer of ``query`` (polled; fails after about 10 s)."""
    for _ in range(1000):
        found = await watcher.fetchval(query, *args)
        if found:
            return int(found)
        await asyncio.sleep(0.01)
    raise AssertionError(f"no session came to wait: {query}")


@pytest.mark.parametrize("change", [_rename_case, _delete], ids=["rename", "delete"])
async def test_an_issue_gaining_a_value_while_the_change_waits_is_not_waited_for(
    bugless_model_backend: PostgresBackend,
    model_settings: ModelSettings,
    gate: list[asyncpg.Connection],
    caplog: pytest.LogCaptureFixture,
    change: FieldChange,
) -> None:
    """The change runs again behind the second write; nothing deadlocks."""
    backend = bugless_model_backend
    holder, watcher = gate
    caplog.set_level(logging.DEBUG, logger=RETRY_LOGGER)
    component = await fresh_component(backend, "holders")
    field = await backend.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN,
            component_id=component.id,
            name=f"Kind {uuid.uuid4().hex[:6]}",
            type=v1.CustomFieldType.ENUM,
            options=["Bug", "gated other"],
        )
    )
    issue = await create(backend, component.id)
    async with Holder(model_settings) as field_holder:
        await field_holder.conn.execute(
            "SELECT 1 FROM custom_fields WHERE id = $1 FOR KEY SHARE", field.id
        )
        changing = await field_holder.queued(change(backend, field))
        first = await asyncio.wait_for(
            backend.change_issue(
                v1.ChangeIssueRequest(
                    caller=ALICE,
                    issue_id=issue.id,
                    expected_version=issue.version,
                    delta=v1.IssueDelta(custom_fields_set=value(field, "bug")),
                )
            ),
            10,
        )
        assert first.issue is not None
        version = first.issue.version
        await holder.execute(f"SELECT pg_advisory_lock({GATE})")
        delta = v1.IssueDelta(custom_fields_set=value(field, "gated other"))
        second = asyncio.ensure_future(
            backend._write(
                ALICE,
                lambda ctx: _issues.change_issue(
                    ctx, issue.id, version, delta, "", whole_transaction=True
                ),
            )
        )
        await until_waiting_or_done(watcher, second, 2)
        second_pid = await _until(watcher, GATED)
        await field_holder.commit()
    await _until(watcher, BLOCKED_BY, second_pid)  # the change waits for the second write
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    await asyncio.gather(second, changing)
    retries = [r.getMessage() for r in caplog.records if r.name == RETRY_LOGGER]
    assert not [r for r in retries if "deadlock" in r], retries
    assert len(retries) == 1, retries
    assert "could not obtain lock" in retries[0]
    if change is _delete:
        assert await watcher.fetchval(FIELD_VALUES_HELD, field.id) == 0
    else:
        stored = await watcher.fetchval(
            "SELECT custom_fields ->> $2::bigint::text FROM issues WHERE id = $1",
            issue.id,
            field.id,
        )
        assert stored == "gated other"
