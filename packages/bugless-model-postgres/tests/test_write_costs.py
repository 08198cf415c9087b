"""What the cheap write path relies on: clean pooled connections, one row version per create.

The pool releases connections without asyncpg's reset query (see
``_database._release_as_is``), which is only safe while nothing leaves session
state behind; a create writes its row once and answers without reading it
back, which is only right while the answer equals what a read returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from write_support import ADMIN, ALICE, Sent, create, fresh_component, migrated

from bugless_core.errors import InvalidArgument
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _batch_create, _custom_fields, _issues
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import WriteContext, fetch_issue_rows
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.postgres import ThrowawayPostgres


async def _component(backend: PostgresBackend, parent_id: int = 0) -> int:
    return (await fresh_component(backend, "costs", parent_id=parent_id)).id


async def test_pooled_connections_carry_no_session_state_after_every_kind_of_call(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    backend = bugless_model_backend
    component_id = await _component(backend)
    stream = backend.watch(v1.WatchRequest(caller=ADMIN, query=v1.StructuredQuery()))
    assert (await asyncio.wait_for(anext(stream), 10)).subscribed
    first = asyncio.ensure_future(anext(stream))
    parent = await create(backend, component_id)
    child = await create(backend, component_id, blocking_ids=[parent.id])
    await backend.change_issue(  # takes the hierarchy lock (transaction-scoped)
        v1.ChangeIssueRequest(
            caller=ALICE,
            issue_id=child.id,
            expected_version=child.version,
            delta=v1.IssueDelta(
                fields=v1.IssueFields(parent_id=parent.id),
                update_mask=FieldMask(paths=["parent_id"]),
            ),
        )
    )
    await backend.search_issues(v1.SearchIssuesRequest(caller=ALICE, allow_stale=True))
    await PostgresBackend.migrate(model_settings)  # the migration lock, on its own connection
    await asyncio.wait_for(first, 10)
    await stream.aclose()  # type: ignore[attr-defined]  # an async generator

    size = model_settings.pool_max_size
    connections = [await backend._pool.acquire() for _ in range(size)]
    try:
        for conn in connections:
            state = await conn.fetchrow(
                """
                SELECT (SELECT count(*) FROM pg_locks
                         WHERE pid = pg_backend_pid() AND locktype = 'advisory') AS advisory,
                       (SELECT count(*) FROM pg_listening_channels()) AS listening,
                       (SELECT count(*) FROM pg_cursors WHERE name <> '') AS cursors,
                       current_setting('search_path') AS search_path,
                       current_setting('transaction_isolation') AS isolation
                """
            )
            assert state is not None
            assert state["advisory"] == 0
            assert state["listening"] == 0
            assert state["cursors"] == 0
            assert state["isolation"] == "read committed"
            assert state["search_path"].startswith(f'"{model_settings.schema}"')
            assert not conn.is_in_transaction()
    finally:
        for conn in connections:
            await backend._pool.release(conn)


async def test_a_create_answers_exactly_what_a_read_returns(
    bugless_model_backend: PostgresBackend,
) -> None:
    backend = bugless_model_backend
    component_id = await _component(backend)
    other = await create(backend, component_id)
    hotlist = await backend.create_hotlist(v1.CreateHotlistRequest(caller=ALICE, name="mine"))
    created = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(
                title="closed at birth",
                component_id=component_id,
                status=v1.Status.FIXED,
                priority=v1.Priority.P0,
                assignee="bob",
            ),
            description="why",
            cc=["zoe", "carol"],
            hotlist_ids=[hotlist.id],
            blocking_ids=[other.id],
        )
    )
    read = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=created.id))
    assert created == read
    assert created.closed_at is not None
    assert created.cc == ["carol", "zoe"]
    assert created.hotlist_ids == [hotlist.id]
    assert created.blocking_ids == [other.id]


@pytest.fixture
async def scratch(model_settings: ModelSettings) -> AsyncIterator[PostgresBackend]:
    """A backend on a schema of its own, dropped afterwards."""
    settings = dataclasses.replace(model_settings, schema=f"costs_{uuid.uuid4().hex[:8]}")
    try:
        async with migrated(settings) as backend:
            yield backend
    finally:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(f'DROP SCHEMA "{settings.schema}" CASCADE')
        finally:
            await conn.close()


async def test_a_create_writes_the_new_issue_row_once(scratch: PostgresBackend) -> None:
    """Every UPDATE of a fresh row is a second version in each of its ~20 indexes."""
    async with scratch._pool.acquire() as conn:
        await conn.execute(
            """
            CREATE TABLE issue_updates (issue_id bigint);
            CREATE FUNCTION count_issue_update() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO issue_updates VALUES (OLD.id); RETURN NEW; END $$;
            CREATE TRIGGER count_issue_update BEFORE UPDATE ON issues
                FOR EACH ROW EXECUTE FUNCTION count_issue_update();
            """
        )
    component_id = await _component(scratch)
    blocked = await create(scratch, component_id)
    plain = await create(scratch, component_id)
    related = await create(scratch, component_id, blocking_ids=[blocked.id], cc=["carol"])
    async with scratch._pool.acquire() as conn:
        updated = [r["issue_id"] for r in await conn.fetch("SELECT issue_id FROM issue_updates")]
    # Only the other side of the relation gets a new version (and its entry).
    assert updated == [blocked.id]
    assert plain.id not in updated
    assert related.id not in updated


async def _batch(backend: PostgresBackend, component_id: int, n: int) -> list[v1.Issue]:
    reply = await backend.batch_create_issues(
        v1.BatchCreateIssuesRequest(
            caller=ALICE,
            items=[
                v1.CreateIssueRequest(
                    fields=v1.IssueFields(title=f"item {i} for @bob", component_id=component_id),
                    description="written together",
                    idempotency_key=f"batch-{uuid.uuid4()}",
                )
                for i in range(n)
            ],
        )
    )
    assert [r.code for r in reply.results] == [0] * n
    return [r.issue for r in reply.results if r.issue is not None]


def _transaction_statements(sent: list[str]) -> list[str]:
    """BEGIN, COMMIT and ROLLBACK, as words (asyncpg sends ``BEGIN;``)."""
    words = (s.split()[0].rstrip(";").upper() for s in sent)
    return [w for w in words if w in {"BEGIN", "COMMIT", "ROLLBACK"}]


async def test_on_read_committed_a_batch_of_creates_is_its_reads_and_one_write(
    scratch: PostgresBackend, model_settings: ModelSettings
) -> None:
    """No BEGIN/COMMIT: the one write statement (feed row and NOTIFY included) is atomic alone."""
    assert scratch._dialect.statement_snapshots
    component_id = await _component(scratch)
    async with scratch._pool.acquire() as conn:
        position = await conn.fetchval("SELECT position FROM change_feed_state WHERE name = 'head'")
    async with Sent(scratch, model_settings.pool_max_size) as sent:
        issues = await _batch(scratch, component_id, 3)

    ours = sent.statements
    assert _transaction_statements(ours) == []
    assert [s.split()[:2] for s in ours] == [["WITH", "d"], ["WITH", "input"]]
    for issue in issues:
        read = await scratch.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
        assert read == issue
    async with scratch._pool.acquire() as conn:
        feed = await conn.fetch(
            "SELECT issue_ids FROM change_feed WHERE position > $1 ORDER BY position", position
        )
        mentions = await conn.fetchval(
            "SELECT count(*) FROM issue_mentions WHERE issue_id = ANY($1::bigint[])",
            [i.id for i in issues],
        )
    assert [list(row["issue_ids"]) for row in feed] == [[i.id for i in issues]]
    assert mentions == 3


async def test_a_batch_reads_the_custom_fields_that_apply_with_its_checks(
    scratch: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The fields of the component and its parent apply, read by the checks statement.

    As json in each checks row (``_custom_fields.APPLICABLE_JSON``, not an
    array of ``custom_fields`` rows: see ``_batch_create.BATCH_CHECKS``), so
    the batch is its checks and the one write, as without fields.
    """
    parent = await _component(scratch)
    child = await _component(scratch, parent)
    made = []
    for component_id, name, default in ((child, "Child", "c"), (parent, "Root", "r")):
        made.append(
            await scratch.create_custom_field(
                v1.CreateCustomFieldRequest(
                    caller=ADMIN,
                    component_id=component_id,
                    name=f"{name}-{uuid.uuid4().hex[:6]}",
                    type=v1.CustomFieldType.TEXT,
                    required=True,
                    default_values=[default],
                )
            )
        )
    async with Sent(scratch, model_settings.pool_max_size) as sent:
        issues = await _batch(scratch, child, 3)
    ours = sent.statements
    assert [s.split()[:2] for s in ours] == [["WITH", "d"], ["WITH", "input"]]
    child_field, root_field = made
    for issue in issues:
        assert {v.field_id: list(v.values) for v in issue.custom_fields} == {
            root_field.id: ["r"],
            child_field.id: ["c"],
        }
        read = await scratch.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
        assert read == issue


async def test_on_repeatable_read_creates_keep_their_transaction(
    postgres_server: ThrowawayPostgres,
) -> None:
    """A database whose default isolation is not READ COMMITTED: reads and write share one."""
    url = await postgres_server.acreate_database("model_repeatable_read")
    conn = await asyncpg.connect(url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute(
            f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'"
        )
    finally:
        await conn.close()
    settings = ModelSettings(database_url=url, page_token_secret="s" * 32, pool_max_size=4)
    async with migrated(settings) as backend:
        assert not backend._dialect.statement_snapshots
        component_id = await _component(backend)
        async with Sent(backend, settings.pool_max_size) as sent:
            await _batch(backend, component_id, 3)
        assert _transaction_statements(sent.statements) == ["BEGIN", "COMMIT"]
        async with Sent(backend, settings.pool_max_size) as sent:
            await create(backend, component_id, description="for @bob")
        assert _transaction_statements(sent.statements) == ["BEGIN", "COMMIT"]


async def _fields(backend: PostgresBackend, component_id: int) -> tuple[int, int]:
    """An integer field and a multi-valued enum field defaulting to "b"."""
    number = await backend.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN, component_id=component_id, name="points",
            type=v1.CustomFieldType.INTEGER,
        )
    )  # fmt: skip
    kinds = await backend.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN, component_id=component_id, name="kinds",
            type=v1.CustomFieldType.ENUM_MULTI, options=["a", "b"], default_values=["b"],
        )
    )  # fmt: skip
    return number.id, kinds.id


def _valued(component_id: int, number: int, points: str) -> v1.CreateIssueRequest:
    return v1.CreateIssueRequest(
        caller=ALICE,
        fields=v1.IssueFields(title=f"for @bob, {points} points", component_id=component_id),
        description="and @carol too",
        custom_fields=[v1.CustomFieldValue(field_id=number, values=[points])],
    )


async def _written(backend: PostgresBackend, after: int) -> dict[str, Any]:
    """Every issue, entry, mention and value row, the feed head and the feed rows past ``after``."""
    async with backend._pool.acquire() as conn:
        row = await conn.fetchrow(
            """
            SELECT (SELECT position FROM change_feed_state WHERE name = 'head') AS head,
                   (SELECT array_agg(id ORDER BY id) FROM issues) AS issues,
                   (SELECT count(*) FROM issue_history) AS entries,
                   (SELECT array_agg(username ORDER BY username) FROM issue_mentions) AS mentions,
                   (SELECT array_agg(value ORDER BY field_id, value) FROM issue_custom_values)
                       AS custom_values,
                   (SELECT array_agg(array_to_string(issue_ids, ',') ORDER BY position)
                      FROM change_feed WHERE position > $1) AS feed
            """,
            after,
        )
    assert row is not None
    return dict(row)


async def test_on_read_committed_a_create_with_mentions_and_custom_values_is_one_write(
    scratch: PostgresBackend, model_settings: ModelSettings
) -> None:
    """CreateIssue's reads, then one statement with every row: no BEGIN/COMMIT."""
    component_id = await _component(scratch)
    number, kinds = await _fields(scratch, component_id)
    start = (await _written(scratch, 0))["head"]
    async with Sent(scratch, model_settings.pool_max_size) as sent:
        created = await scratch.create_issue(_valued(component_id, number, "42"))

    ours = sent.statements
    assert _transaction_statements(ours) == []
    # The checks carry the fields that apply (_issues.CREATE_CHECKS): was
    # three statements in series, the fields read on their own between them.
    assert [s.split()[:2] for s in ours] == [["SELECT", "c.*,"], ["WITH", "created"]]
    writes = [s for s in ours if not s.startswith("SELECT")]
    assert len(writes) == 1
    assert writes[0].startswith("WITH created AS ( INSERT INTO issues")
    assert "mentioned AS" in writes[0]
    assert "valued AS" in writes[0]
    assert await scratch.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=created.id)) == (
        created
    )
    assert {v.field_id: list(v.values) for v in created.custom_fields} == {
        number: ["42"],
        kinds: ["b"],
    }
    written = await _written(scratch, start)
    assert written["head"] == start + 1
    assert written["issues"] == [created.id]
    assert written["entries"] == 1
    assert written["mentions"] == ["bob", "carol"]
    assert written["custom_values"] == ["42", "b"]
    assert written["feed"] == [str(created.id)]


async def test_a_create_whose_input_is_refused_or_whose_statement_fails_writes_nothing(
    scratch: PostgresBackend,
) -> None:
    """Refused in planning: nothing sent to write; failing in the statement: all of it undone."""
    component_id = await _component(scratch)
    number, _ = await _fields(scratch, component_id)
    start = await _written(scratch, (await _written(scratch, 0))["head"])
    assert start["feed"] is None

    with pytest.raises(InvalidArgument):
        await scratch.create_issue(_valued(component_id, number, "not a number"))
    assert await _written(scratch, start["head"]) == start

    # The last rows the statement writes fail: the issue, its entry, its
    # mentions and the feed row, written before them by the same statement, go too.
    async with scratch._pool.acquire() as conn:
        await conn.execute(
            """
            CREATE FUNCTION refuse_value() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
            CREATE TRIGGER refuse_value BEFORE INSERT ON issue_custom_values
                FOR EACH ROW EXECUTE FUNCTION refuse_value();
            """
        )
    with pytest.raises(asyncpg.RaiseError):
        await scratch.create_issue(_valued(component_id, number, "7"))
    assert await _written(scratch, start["head"]) == start

    async with scratch._pool.acquire() as conn:
        await conn.execute("DROP TRIGGER refuse_value ON issue_custom_values")
    created = await scratch.create_issue(_valued(component_id, number, "7"))
    after = await _written(scratch, start["head"])
    assert after["issues"] == [created.id]
    assert after["mentions"] == ["bob", "carol"]
    assert after["feed"] == [str(created.id)]


async def test_a_create_touching_other_issues_keeps_its_transaction(
    scratch: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Relations lock and write other rows: BEGIN … COMMIT, as before."""
    component_id = await _component(scratch)
    other = await create(scratch, component_id)
    async with Sent(scratch, model_settings.pool_max_size) as sent:
        await create(scratch, component_id, blocking_ids=[other.id])
    assert _transaction_statements(sent.statements) == ["BEGIN", "COMMIT"]


async def test_batch_reads_settle_on_one_plan_and_read_what_the_array_statement_reads(
    scratch: PostgresBackend,
) -> None:
    """Ids as a fixed number of parameters: PostgreSQL stops re-planning the statement."""
    component_id = await _component(scratch)
    ids = [(await create(scratch, component_id)).id for _ in range(10)]
    hidden = v1.Caller(user_id="mallory")
    async with scratch._pool.acquire() as conn:
        for wanted in ([*ids[:6], ids[0], 999_999], ids[:2], ids, ids[:8], ids[:9]):
            for caller in (ALICE, hidden, ADMIN):
                slotted = await fetch_issue_rows(conn, caller, wanted)
                by_array = await conn.fetch(q.FETCH_ISSUES, wanted, caller.admin, caller.user_id)
                assert {i: dict(r) for i, r in slotted.items()} == {
                    r["id"]: dict(r) for r in by_array if r["id"] in slotted
                }
                assert sorted(slotted) == sorted({i for i in wanted if i in ids})
        for _ in range(10):
            await fetch_issue_rows(conn, ALICE, ids[:6])
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            q.fetch_issues_in_slots(8),
        )
    assert plans is not None
    assert plans["generic_plans"] > 0


async def test_batch_checks_settle_on_one_plan_and_answer_as_the_array_statement(
    scratch: PostgresBackend,
) -> None:
    """BatchCreateIssues' checks with the items as parameters: one plan, the same rows."""
    component_id = await _component(scratch)
    made = await create(scratch, component_id, idempotency_key="used")
    ctx = WriteContext(conn=None, caller=ALICE, now=made.created_at, channel="")  # type: ignore[arg-type]
    cases: list[tuple[list[int], list[str | None]]] = [
        ([component_id, 999_999, component_id], ["used", None, "fresh"]),
        ([component_id] * 5, [None, "used", None, None, "x"]),
        ([component_id] * 4, [None] * 4),
    ]
    async with scratch._pool.acquire() as conn:
        ctx.conn = conn
        for components, keys in cases:
            slotted = await _batch_create._batch_checks(ctx, components, keys)
            by_array = await conn.fetch(_batch_create.BATCH_CHECKS, components, keys, ALICE.user_id)
            assert [dict(r) for r in slotted] == [dict(r) for r in by_array]
            assert [r["idempotent_id"] for r in slotted][: len(keys)] == [
                made.id if k == "used" else None for k in keys
            ]
        for _ in range(10):
            await _batch_create._batch_checks(ctx, [component_id] * 3, [None] * 3)
        plans = await conn.fetchrow(
            "SELECT generic_plans FROM pg_prepared_statements WHERE statement = $1",
            _batch_create.batch_checks_in_slots(4),
        )
    assert plans is not None
    assert plans["generic_plans"] > 0


async def test_the_checks_read_the_same_custom_fields_as_their_own_statement(
    scratch: PostgresBackend,
) -> None:
    """``APPLICABLE_JSON`` in the checks gives what ``applicable`` reads, in any session zone.

    In BatchCreateIssues' checks and CreateIssue's (the same text).

    Every column of a field (options, defaults, both timestamps, the type),
    the ancestors' fields first; no fields at all is NULL (none apply).
    """
    parent = await _component(scratch)
    child = await scratch.create_component(
        v1.CreateComponentRequest(
            caller=ADMIN, name=f"costs-{uuid.uuid4().hex[:8]}", parent_id=parent
        )
    )
    bare = await _component(scratch)
    await _fields(scratch, child.id)
    await scratch.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN, component_id=parent, name='say "hi" \\ é', description="∂ line\nnext",
            type=v1.CustomFieldType.TEXT, required=True, default_values=["d"],
        )
    )  # fmt: skip
    ctx = WriteContext(conn=None, caller=ALICE, now=None, channel="")  # type: ignore[arg-type]
    async with scratch._pool.acquire() as conn:
        ctx.conn = conn
        for zone in ("UTC", "Asia/Kathmandu"):
            await conn.execute(f"SET TimeZone = '{zone}'")
            rows = await _batch_create._batch_checks(ctx, [child.id, parent, bare], [None] * 3)
            for component_id, row in zip((child.id, parent), rows, strict=False):
                read = await _custom_fields.applicable(conn, component_id)
                assert len(read) == (3 if component_id == child.id else 1)
                decoded = _custom_fields.fields_from_json(row["applicable_fields"])
                assert list(decoded) == list(read)
                assert decoded == read
            assert rows[2]["applicable_fields"] is None
            # CreateIssue's checks read them as BatchCreateIssues' do.
            for component_id, row in zip((child.id, parent, bare), rows, strict=True):
                single = await conn.fetchrow(
                    _issues.CREATE_CHECKS, component_id, ALICE.user_id, None
                )
                assert single is not None
                assert single["applicable_fields"] == row["applicable_fields"]
        await conn.execute("RESET TimeZone")


def _loops(plan: dict[str, Any], node_type: str) -> list[int]:
    """``Actual Loops`` of each ``node_type`` node of an ``EXPLAIN (ANALYZE, FORMAT JSON)``."""
    found = [plan["Actual Loops"]] if plan["Node Type"] == node_type else []
    for child in plan.get("Plans", []):
        found.extend(_loops(child, node_type))
    return found


async def test_a_mixed_batchs_checks_answer_each_item_as_its_own_create_checks_would(
    scratch: PostgresBackend,
) -> None:
    """Components with fields, without, missing and repeated, interleaved, keys used or not.

    Every checks row equals what CreateIssue's checks (``_issues.CREATE_CHECKS``,
    one item at a time) read for the item, slotted and as arrays; and the
    fields are aggregated once per distinct component of the batch, not once
    per item.
    """
    parent = await _component(scratch)
    child = await _component(scratch, parent)
    bare = await _component(scratch)
    await _fields(scratch, child)
    await scratch.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN, component_id=parent, name="found in", type=v1.CustomFieldType.TEXT
        )
    )
    used = await create(scratch, child, idempotency_key="used")
    components = [child, bare, parent, child, 999_999, parent, bare, child, child, 0]
    keys = [None, "used", None, "used", None, "fresh", None, None, "used", None]
    ctx = WriteContext(conn=None, caller=ALICE, now=used.created_at, channel="")  # type: ignore[arg-type]
    async with scratch._pool.acquire() as conn:
        ctx.conn = conn
        slotted = await _batch_create._batch_checks(ctx, components, keys)
        by_array = await conn.fetch(_batch_create.BATCH_CHECKS, components, keys, ALICE.user_id)
        assert [dict(r) for r in slotted] == [dict(r) for r in by_array]
        for component_id, key, row in zip(components, keys, slotted, strict=True):
            single = await conn.fetchrow(_issues.CREATE_CHECKS, component_id, ALICE.user_id, key)
            assert single is not None
            assert dict(row) == dict(single)
        applicable = [r["applicable_fields"] for r in slotted]
        assert [len(_custom_fields.fields_from_json(a)) if a else 0 for a in applicable] == [
            3, 0, 1, 3, 0, 1, 0, 3, 3, 0,
        ]  # fmt: skip
        assert [r["idempotent_id"] for r in slotted] == [
            used.id if k == "used" else None for k in keys
        ]
        explained = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + _batch_create.BATCH_CHECKS,
            components,
            keys,
            ALICE.user_id,
        )
    plan = json.loads(explained)[0]["Plan"]
    assert _loops(plan, "Aggregate") == [3]  # child, parent, bare: not 8 (items in them)
