"""Custom field values set and moves in a ChangeIssue are written in one statement, as locked.

A change setting values (the common team workflow: a status and a field
together) reads the issue and the fields that apply in its component
without locks (a move: its target component and the fields that apply
there too) and writes the row, its entry, its custom value search rows
and the change feed's row in one statement, only while the row is the row
version read. Each change here is made twice, on twin issues: in one
statement, and by the locked path (what the backend runs when the row
moved); replies, history, search rows, mentions and feed rows must be the
same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from write_support import ALICE, Holder, Sent, fresh_component

from bugless_core.errors import BuglessError, InvalidArgument
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend, _follow, _issues
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

ADMIN = v1.Caller(user_id="admin", admin=True)
SEARCH_ROWS = """
SELECT field_id, value, number, component_id, status FROM issue_custom_values
 WHERE issue_id = $1 ORDER BY field_id, value
"""
MENTIONS = "SELECT username FROM issue_mentions WHERE issue_id = $1 ORDER BY 1"
STORED = "SELECT custom_fields::text FROM issues WHERE id = $1"


async def _locked(
    backend: PostgresBackend, request: v1.ChangeIssueRequest
) -> v1.ChangeIssueResponse:
    """``request`` written by the locked path, as the backend runs it when the row moved."""
    changed, _ = await backend._write(
        request.caller,
        lambda ctx: _issues.change_issue(
            ctx, request.issue_id, request.expected_version, request.delta, request.comment,
            whole_transaction=True,
        ),
    )  # fmt: skip
    return v1.ChangeIssueResponse(issue=changed.issue, entry=changed.entry)


class Fields:
    """A component with one custom field of each kind a team sets alongside a status."""

    async def make(self, backend: PostgresBackend) -> Fields:
        self.component = await fresh_component(backend, "values")
        made = [
            await backend.create_custom_field(
                v1.CreateCustomFieldRequest(
                    caller=ADMIN,
                    component_id=self.component.id,
                    name=name,
                    type=kind,
                    options=options,
                    required=required,
                    default_values=defaults,
                )
            )
            for name, kind, options, required, defaults in (
                ("Found In", v1.CustomFieldType.ENUM, ["4.1", "4.2", "4.3"], True, ["4.1"]),
                ("Platforms", v1.CustomFieldType.ENUM_MULTI, ["linux", "mac", "win"], False, []),
                ("Points", v1.CustomFieldType.INTEGER, [], False, []),
                ("Notes", v1.CustomFieldType.TEXT, [], False, []),
                ("Owner", v1.CustomFieldType.USER, [], False, []),
            )
        ]
        self.found_in, self.platforms, self.points, self.notes, self.owner = made
        return self

    def value(self, field: v1.CustomField, *values: str) -> v1.CustomFieldValue:
        return v1.CustomFieldValue(field_id=field.id, values=list(values))


def _request(issue: v1.Issue, comment: str = "", **delta: Any) -> v1.ChangeIssueRequest:
    names = ("status", "priority", "title", "component_id")
    paths: list[str] = [name for name in names if name in delta]
    fields = v1.IssueFields(**{name: delta.pop(name) for name in paths})
    return v1.ChangeIssueRequest(
        caller=ALICE,
        issue_id=issue.id,
        expected_version=issue.version,
        delta=v1.IssueDelta(fields=fields, update_mask=FieldMask(paths), **delta),
        comment=comment,
    )


def _as_twin(message: Any, twin: v1.Issue, issue: v1.Issue) -> Any:
    """``message`` with the twin's id and times in place of the issue's."""
    out = message.__class__().parse(bytes(message))
    for name in ("created_at", "modified_at", "closed_at"):
        if hasattr(out, name) and getattr(out, name) is not None:
            setattr(out, name, None)
    if hasattr(out, "id"):
        out.id = twin.id if out.id == issue.id else out.id
    if hasattr(out, "issue_id"):
        out.issue_id = twin.id if out.issue_id == issue.id else out.issue_id
    return out


async def _stored(backend: PostgresBackend, issue_id: int) -> tuple[object, ...]:
    async with backend._pool.acquire() as conn:
        return (
            [dict(r) for r in await conn.fetch(SEARCH_ROWS, issue_id)],
            [r["username"] for r in await conn.fetch(MENTIONS, issue_id)],
            await conn.fetchval(STORED, issue_id),
        )


async def _feed(backend: PostgresBackend, after: int) -> list[list[tuple[int, int]]]:
    feed = await backend.read_feed(
        v1.ReadFeedRequest(caller=ADMIN, after_position=after, max_changes=100)
    )
    return [[(e.issue_id, e.version) for e in c.entries] for c in feed.changes]


async def test_values_set_with_a_status_are_one_statement_and_what_the_locked_path_writes(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Set, changed, cleared, unchanged and kept values, with status, priority and comments."""
    backend = bugless_model_backend
    f = await Fields().make(backend)
    created = [
        await backend.create_issue(
            v1.CreateIssueRequest(
                caller=ALICE,
                fields=v1.IssueFields(title="a crash", component_id=f.component.id),
                description="first words",
                custom_fields=[f.value(f.notes, "seen twice"), f.value(f.platforms, "linux")],
            )
        )
        for _ in range(2)
    ]
    issue, twin = created
    steps: list[Callable[[v1.Issue], v1.ChangeIssueRequest]] = [
        # The team workflow: a status and a value, with a comment naming someone.
        lambda i: _request(
            i,
            "over to @carol",
            status=v1.Status.ACCEPTED,
            custom_fields_set=[f.value(f.found_in, "4.2")],
        ),
        # Several at once: a multi value grows, an integer is set, a user too.
        lambda i: _request(
            i,
            priority=v1.Priority.P1,
            custom_fields_set=[
                f.value(f.platforms, "linux", "mac"),
                f.value(f.points, "3"),
                f.value(f.owner, "dave"),
            ],
        ),
        # Closed: an option swapped, a value cleared (search rows take the new status).
        lambda i: _request(
            i,
            "done",
            status=v1.Status.FIXED,
            custom_fields_set=[f.value(f.platforms, "mac", "win"), f.value(f.notes)],
        ),
        # A value given as it is, and a comment: only the comment is new.
        lambda i: _request(i, "still 4.2", custom_fields_set=[f.value(f.found_in, "4.2")]),
        # Reopened with a new number: the kept rows take the status.
        lambda i: _request(i, status=v1.Status.NEW, custom_fields_set=[f.value(f.points, "5")]),
        # Values only, no field of the row, no comment.
        lambda i: _request(i, custom_fields_set=[f.value(f.found_in, "4.3"), f.value(f.owner)]),
    ]
    async with backend._pool.acquire() as conn:
        head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM change_feed"))
    for step in steps:
        async with Sent(backend, model_settings.pool_max_size) as sent:
            one = await backend.change_issue(step(issue))
            statements = sent.take()
        assert len(statements) == 2, statements
        assert not any(s in {"BEGIN;", "COMMIT;"} for s in statements)
        locked = await _locked(backend, step(twin))
        assert one.issue is not None
        assert locked.issue is not None
        assert _as_twin(one.issue, twin, issue) == _as_twin(locked.issue, twin, issue)
        assert _as_twin(one.entry, twin, issue) == _as_twin(locked.entry, twin, issue)
        got = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
        assert got == one.issue
        one_rows, one_names, one_values = await _stored(backend, issue.id)
        twin_rows, twin_names, twin_values = await _stored(backend, twin.id)
        assert (one_rows, one_names, one_values) == (twin_rows, twin_names, twin_values)
        issue, twin = one.issue, locked.issue
    assert issue.status == v1.Status.NEW
    assert {v.name: v.values for v in issue.custom_fields} == {
        "Found In": ["4.3"],
        "Platforms": ["mac", "win"],
        "Points": ["5"],
    }
    history = [
        (await backend.list_history(v1.ListHistoryRequest(caller=ALICE, issue_id=i))).entries
        for i in (issue.id, twin.id)
    ]
    assert [_as_twin(e, twin, issue) for e in history[0]] == [
        _as_twin(e, twin, issue) for e in history[1]
    ]
    feed = await _feed(backend, head)
    assert [c for c in feed if c[0][0] == issue.id] == [
        [(issue.id, v)] for v in range(2, issue.version + 1)
    ]
    assert [c for c in feed if c[0][0] == twin.id] == [
        [(twin.id, v)] for v in range(2, twin.version + 1)
    ]


async def test_a_refused_value_is_refused_alike_and_writes_nothing(
    bugless_model_backend: PostgresBackend,
) -> None:
    """A field of another component, a bad option, a required field cleared: the same errors."""
    backend = bugless_model_backend
    f = await Fields().make(backend)
    other = await Fields().make(backend)
    issue = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE, fields=v1.IssueFields(title="a crash", component_id=f.component.id)
        )
    )
    before = await _stored(backend, issue.id)
    for given in (
        other.value(other.points, "1"),
        f.value(f.found_in, "9.9"),
        f.value(f.found_in),
        f.value(f.points, "many"),
    ):
        request = _request(issue, "x", status=v1.Status.FIXED, custom_fields_set=[given])
        with pytest.raises(InvalidArgument) as one:
            await backend.change_issue(request)
        with pytest.raises(InvalidArgument) as locked:
            await _locked(backend, request)
        assert (one.value.message, one.value.metadata) == (
            locked.value.message,
            locked.value.metadata,
        )
    got = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
    assert got.version == issue.version
    assert await _stored(backend, issue.id) == before


async def test_values_queued_behind_a_star_are_written_by_the_locked_path(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """The row moved after the read: the statement writes no row at all, the locked path all.

    The one statement waits for the star's row lock, finds another row
    version and writes nothing (no search row either); the locked path then
    writes the values once: the search rows are those of the new values.
    """
    backend = bugless_model_backend
    f = await Fields().make(backend)
    issue = await backend.create_issue(
        v1.CreateIssueRequest(
            caller=ALICE,
            fields=v1.IssueFields(title="a crash", component_id=f.component.id),
            custom_fields=[f.value(f.platforms, "linux")],
        )
    )
    request = _request(issue, "closing", status=v1.Status.FIXED,
                       custom_fields_set=[f.value(f.platforms, "mac", "win")])  # fmt: skip
    async with Sent(backend, model_settings.pool_max_size) as sent:
        async with Holder(model_settings) as holder:
            await holder.conn.execute(_follow.ADD_STAR, issue.id, ALICE.user_id, issue.created_at)
            change = await holder.queued(backend.change_issue(request))
            await holder.commit()
            changed = await change
        statements = sent.take()
    assert "BEGIN;" in statements  # the locked path ran after the statement wrote nothing
    assert changed.issue is not None
    assert changed.issue.starred
    assert changed.issue.version == issue.version + 1
    got = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
    assert got == changed.issue
    rows, _, _ = await _stored(backend, issue.id)
    assert [(r["field_id"], r["value"], r["status"]) for r in rows] == [  # type: ignore[attr-defined]
        (f.found_in.id, "4.1", int(v1.Status.FIXED)),  # its default, set by the create
        (f.platforms.id, "mac", int(v1.Status.FIXED)),
        (f.platforms.id, "win", int(v1.Status.FIXED)),
    ]


async def test_moves_are_one_statement_and_what_the_locked_path_writes(
    bugless_model_backend: PostgresBackend, model_settings: ModelSettings
) -> None:
    """Moves keeping, dropping and defaulting values, with statuses and values set; refusals."""
    backend = bugless_model_backend
    f = await Fields().make(backend)
    child = await fresh_component(backend, "child", parent_id=f.component.id)
    other = await Fields().make(backend)
    bare = await fresh_component(backend, "bare")
    bare_too = await fresh_component(backend, "bare")
    archived = await fresh_component(backend, "archived")
    await backend.update_component(
        v1.UpdateComponentRequest(
            caller=ADMIN,
            component=v1.Component(id=archived.id, archived=True),
            update_mask=FieldMask(["archived"]),
        )
    )
    created = [
        await backend.create_issue(
            v1.CreateIssueRequest(
                caller=ALICE,
                fields=v1.IssueFields(title="a crash", component_id=f.component.id),
                custom_fields=[f.value(f.platforms, "linux", "mac"), f.value(f.points, "2")],
            )
        )
        for _ in range(2)
    ]
    issue, twin = created
    steps: list[Callable[[v1.Issue], v1.ChangeIssueRequest]] = [
        # Into a child: the same fields apply; every search row takes the component.
        lambda i: _request(i, "to the team", component_id=child.id, status=v1.Status.ASSIGNED),
        # Elsewhere: the old values go, the required field takes its default, one is given.
        lambda i: _request(i, component_id=other.component.id,
                           custom_fields_set=[other.value(other.points, "7")]),
        # Back with a status only: the parent's defaults again, the other's values go.
        lambda i: _request(i, component_id=f.component.id, status=v1.Status.FIXED),
        # To a component without fields: every value and search row goes.
        lambda i: _request(i, "no fields here", component_id=bare.id),
        # Between two without fields: no value, no search row.
        lambda i: _request(i, component_id=bare_too.id, priority=v1.Priority.P1),
        # Back where fields apply, with a value given: it and the required one's default.
        lambda i: _request(i, component_id=f.component.id,
                           custom_fields_set=[f.value(f.notes, "seen")]),
    ]  # fmt: skip
    for step in steps:
        async with Sent(backend, model_settings.pool_max_size) as sent:
            one = await backend.change_issue(step(issue))
            statements = sent.take()
        assert len(statements) <= 3, statements
        assert not any(s in {"BEGIN;", "COMMIT;"} for s in statements)
        locked = await _locked(backend, step(twin))
        assert one.issue is not None
        assert locked.issue is not None
        assert _as_twin(one.issue, twin, issue) == _as_twin(locked.issue, twin, issue)
        assert _as_twin(one.entry, twin, issue) == _as_twin(locked.entry, twin, issue)
        got = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
        assert got == one.issue
        assert await _stored(backend, issue.id) == await _stored(backend, twin.id)
        rows, _, _ = await _stored(backend, issue.id)
        assert {r["component_id"] for r in rows} <= {one.issue.component_id}  # type: ignore[attr-defined]
        issue, twin = one.issue, locked.issue
    assert {v.name: v.values for v in issue.custom_fields} == {
        "Found In": ["4.1"],
        "Notes": ["seen"],
    }
    history = [
        (await backend.list_history(v1.ListHistoryRequest(caller=ALICE, issue_id=i))).entries
        for i in (issue.id, twin.id)
    ]
    assert [_as_twin(e, twin, issue) for e in history[0]] == [
        _as_twin(e, twin, issue) for e in history[1]
    ]
    before = await _stored(backend, issue.id)
    for refused in (
        _request(issue, component_id=archived.id),
        _request(issue, component_id=987654321),
        _request(issue, component_id=bare.id, custom_fields_set=[f.value(f.notes, "x")]),
        _request(issue, component_id=other.component.id,
                 custom_fields_set=[other.value(other.found_in)]),
    ):  # fmt: skip
        with pytest.raises(BuglessError) as one_error:
            await backend.change_issue(refused)
        with pytest.raises(BuglessError) as locked_error:
            await _locked(backend, refused)
        assert type(one_error.value) is type(locked_error.value)
        assert (one_error.value.message, one_error.value.metadata) == (
            locked_error.value.message,
            locked_error.value.metadata,
        )
    got = await backend.get_issue(v1.GetIssueRequest(caller=ALICE, issue_id=issue.id))
    assert got.version == issue.version
    assert await _stored(backend, issue.id) == before
