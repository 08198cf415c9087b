"""The writes that set a custom field's value, each ready to run against a race.

Each builder takes a backend, a component and a field of it, does what
must happen before the race (a change needs an issue to change), and
returns the write itself, taking the value's text: the race tests start it
while another transaction holds what it will wait for. One per write path
that inserts a custom value's search row: ChangeIssue in one statement and
by the locked path, CreateIssue, a batch item sharing the batch's
transaction, and an import.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from write_support import ALICE, create

from bugless_core.errors import InvalidArgument
from bugless_model_postgres import PostgresBackend, _issues
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: The caller of the import write.
IMPORTER = v1.Caller(user_id="importer", admin=True, import_issues=True)
#: A write builder: (backend, component, field) to the write, taking the text.
Write = Callable[
    [PostgresBackend, v1.Component, v1.CustomField], Awaitable[Callable[[str], Awaitable[Any]]]
]


def value(field: v1.CustomField, text: str) -> list[v1.CustomFieldValue]:
    """``text`` as the one value of ``field`` to set."""
    return [v1.CustomFieldValue(field_id=field.id, values=[text])]


async def _change(
    backend: PostgresBackend, component: v1.Component, field: v1.CustomField
) -> Callable[[str], Awaitable[Any]]:
    """A status and the field, in ChangeIssue's one statement (the issue never held it)."""
    issue = await create(backend, component.id)

    async def run(text: str) -> Any:
        return await backend.change_issue(
            v1.ChangeIssueRequest(
                caller=ALICE,
                issue_id=issue.id,
                expected_version=issue.version,
                delta=v1.IssueDelta(
                    fields=v1.IssueFields(status=v1.Status.ACCEPTED),
                    update_mask=FieldMask(["status"]),
                    custom_fields_set=value(field, text),
                ),
            )
        )

    return run


async def _change_locked(
    backend: PostgresBackend, component: v1.Component, field: v1.CustomField
) -> Callable[[str], Awaitable[Any]]:
    """The same change by the locked path (the issue's row lock, then several statements)."""
    issue = await create(backend, component.id)

    async def run(text: str) -> Any:
        delta = v1.IssueDelta(custom_fields_set=value(field, text))
        return await backend._write(
            ALICE,
            lambda ctx: _issues.change_issue(
                ctx, issue.id, issue.version, delta, "", whole_transaction=True
            ),
        )

    return run


async def _create(
    backend: PostgresBackend, component: v1.Component, field: v1.CustomField
) -> Callable[[str], Awaitable[Any]]:
    return functools.partial(_create_now, backend, component, field)


async def _create_now(
    backend: PostgresBackend, component: v1.Component, field: v1.CustomField, text: str
) -> Any:
    return await create(backend, component.id, custom_fields=value(field, text))


async def _batch(
    backend: PostgresBackend, component: v1.Component, field: v1.CustomField
) -> Callable[[str], Awaitable[Any]]:
    return functools.partial(_batch_now, backend, component, field)


async def _batch_now(
    backend: PostgresBackend, component: v1.Component, field: v1.CustomField, text: str
) -> Any:
    """Two items sharing the batch's transaction, the second setting the field."""
    fields = v1.IssueFields(title="a batch item", component_id=component.id)
    answer = await backend.batch_create_issues(
        v1.BatchCreateIssuesRequest(
            caller=ALICE,
            items=[
                v1.CreateIssueRequest(fields=fields),
                v1.CreateIssueRequest(fields=fields, custom_fields=value(field, text)),
            ],
        )
    )
    assert answer.results[0].issue is not None, answer.results[0]
    second = answer.results[1]
    if second.issue is None:
        raise InvalidArgument(second.message)
    return answer


async def _import(
    backend: PostgresBackend, component: v1.Component, field: v1.CustomField
) -> Callable[[str], Awaitable[Any]]:
    return functools.partial(_import_now, backend, component, field)


async def _import_now(
    backend: PostgresBackend, component: v1.Component, field: v1.CustomField, text: str
) -> Any:
    return await backend.import_issue(
        v1.ImportIssueRequest(
            caller=IMPORTER,
            external_id=f"trac:{uuid.uuid4().hex}",
            fields=v1.IssueFields(title="imported", component_id=component.id),
            reporter="src-reporter",
            created_at=datetime(2019, 3, 4, 10, 0, tzinfo=UTC),
            custom_fields=value(field, text),
        )
    )


WRITES: list[Write] = [_change, _change_locked, _create, _batch, _import]


async def until_waiting_or_done(
    watcher: asyncpg.Connection, call: asyncio.Future[Any], waiting: int
) -> None:
    """Return once ``waiting`` sessions wait for a lock, or ``call`` finished."""
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    seen = 0
    while seen < waiting and not call.done():
        await asyncio.sleep(0.01)
        seen = await watcher.fetchval(query)
