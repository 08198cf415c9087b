"""An import that changes blocking locks the issues it touches in id order, as ChangeIssue does.

A blocking change is two-way: importing "A blocks B" (into A, imported
before) writes A's row and B's. ChangeIssue locks every issue it touches in
one statement, in id order (``LOCK_ISSUES``). An import used to lock its own
issue first (reading it by external id) and the other issues later, when it
wrote their sides; with the other issue's id lower than its own, a native
change touching both, which had taken the other issue meanwhile, waited for
the import's issue while the import waited for the other one: a deadlock
(40P01), settled by PostgreSQL aborting one of the two and the retry policy
running it again. The test holds the import, by a trigger that waits for an
advisory lock the test holds, once it has written its own row, and starts
the native change meanwhile; the retries are read from the policy's log.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from write_support import ALICE, advisory_gate, create, fresh_component, wait_behind_lock

from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1

GATE = 0x1A0B
#: Waits, in the transaction writing it, after an issue of a component named
#: "importorder-..." is updated (the import's own row: the native change's
#: issue is in another component). Other tests' issues pass through.
TRIGGERS = f"""
CREATE OR REPLACE FUNCTION import_order_gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM components
                WHERE id = NEW.component_id AND name LIKE 'importorder-%') THEN
        PERFORM pg_advisory_xact_lock_shared({GATE});
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER import_order_gate AFTER UPDATE ON issues
    FOR EACH ROW EXECUTE FUNCTION import_order_gate_wait();
"""
DROP_TRIGGERS = """
DROP TRIGGER import_order_gate ON issues;
DROP FUNCTION import_order_gate_wait();
"""
RETRY_LOGGER = "bugless_core.transactions"
IMPORTER = v1.Caller(user_id="importer", admin=True, import_issues=True)


@pytest.fixture
async def gate(model_settings: ModelSettings) -> AsyncIterator[list[asyncpg.Connection]]:
    """The gate's trigger, its holder and a watcher of lock waits."""
    async with advisory_gate(model_settings, TRIGGERS, DROP_TRIGGERS) as connections:
        yield connections


def _import(
    external_id: str, component_id: int, *history: v1.ImportedEntry
) -> v1.ImportIssueRequest:
    return v1.ImportIssueRequest(
        caller=IMPORTER,
        external_id=external_id,
        fields=v1.IssueFields(title="imported", component_id=component_id),
        reporter="src-reporter",
        created_at=datetime(2020, 5, 6, 9, 0, tzinfo=UTC),
        history=list(history),
    )


async def test_an_import_and_a_native_change_touching_the_same_issues_do_not_deadlock(
    bugless_model_backend: PostgresBackend,
    gate: list[asyncpg.Connection],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The import holds both issues before its own row's write; the native change queues."""
    backend = bugless_model_backend
    holder, watcher = gate
    caplog.set_level(logging.DEBUG, logger=RETRY_LOGGER)
    native_component = await fresh_component(backend, "native")
    blocked = await create(backend, native_component.id)  # the lower id
    third = await create(backend, native_component.id)
    importing = await fresh_component(backend, "importorder")
    external_id = f"trac:{uuid.uuid4().hex}"
    first = await backend.import_issue(_import(external_id, importing.id))
    assert first.issue is not None
    blocker = first.issue
    assert blocked.id < blocker.id

    await holder.execute(f"SELECT pg_advisory_lock({GATE})")
    entry = v1.ImportedEntry(
        author="src-dev",
        created_at=datetime(2020, 5, 6, 10, 0, tzinfo=UTC),
        blocking_add=[str(blocked.id)],
    )
    extending = asyncio.ensure_future(
        backend.import_issue(_import(external_id, importing.id, entry))
    )
    await wait_behind_lock(watcher, extending)  # its own row written, the blocked one's not
    # A native change touching both issues locks them in id order: the
    # blocked issue first, then the import's.
    changing = asyncio.ensure_future(
        backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=third.id,
                expected_version=third.version,
                delta=v1.IssueDelta(blocking_add=[blocked.id, blocker.id]),
            )
        )
    )
    waiting = 0
    while waiting < 2 and not changing.done():
        await asyncio.sleep(0.01)
        waiting = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    assert not changing.done(), "the native change did not wait for the import"
    await holder.execute(f"SELECT pg_advisory_unlock({GATE})")
    imported, changed = await asyncio.gather(extending, changing)
    retries = [r.getMessage() for r in caplog.records if r.name == RETRY_LOGGER]
    assert retries == []
    assert imported.issue is not None
    assert imported.issue.blocking_ids == [blocked.id]
    assert changed.issue is not None
    assert changed.issue.blocking_ids == sorted([blocked.id, blocker.id])
    rows = await watcher.fetch(
        "SELECT id, blocked_by_ids FROM issues WHERE id = ANY ($1::bigint[]) ORDER BY id",
        [blocked.id, blocker.id],
    )
    assert [(r["id"], sorted(r["blocked_by_ids"])) for r in rows] == [
        (blocked.id, sorted([blocker.id, third.id])),
        (blocker.id, [third.id]),
    ]
