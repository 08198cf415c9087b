"""Contract: an imported history's custom field states are history; only the last is checked.

A component may require a field today that it did not when the source's
issue sat in it: the states an imported history passes through are what
happened, not edits made now, so a required field without a value there
refuses nothing. The state the issue ends in must be valid: a field
required where it ends needs a value (on a creation and on a refresh).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from grpclib.const import Status

from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_testing.model_contracts._support import (
    ADMIN,
    expect_error,
    get_issue,
    history,
    make_component,
    make_issue,
    unique,
)

#: The import identity: a global admin holding the import permission.
IMPORTER = v1.Caller(user_id="importer", admin=True, import_issues=True)
T0 = datetime(2018, 7, 2, 10, 0, tzinfo=UTC)


def _move(hours: float, component_id: int, *values: v1.CustomFieldValue) -> v1.ImportedEntry:
    """A source entry moving the issue to ``component_id`` (with ``values`` set, if any)."""
    return v1.ImportedEntry(
        author="src-dev", created_at=T0 + timedelta(hours=hours),
        fields=v1.IssueFields(component_id=component_id),
        update_mask=FieldMask(paths=["component_id"]), custom_fields=list(values),
    )  # fmt: skip


def _request(
    component_id: int, *items: v1.ImportedEntry, initial: list[v1.CustomFieldValue] | None = None
) -> v1.ImportIssueRequest:
    return v1.ImportIssueRequest(
        caller=IMPORTER, external_id=f"trac:{unique('labels')}",
        fields=v1.IssueFields(title="Gate leaks", component_id=component_id),
        reporter="src-reporter", created_at=T0, history=list(items),
        custom_fields_replayed=True, initial_custom_fields=initial or [],
    )  # fmt: skip


async def _gates_and_pipes(
    model: v1.ModelStub,
) -> tuple[v1.Component, v1.Component, v1.CustomField]:
    """Pipes (nothing required), Gates (Risk required, no default), and Risk."""
    pipes = await make_component(model)
    gates = await make_component(model)
    risk = await model.create_custom_field(
        v1.CreateCustomFieldRequest(
            caller=ADMIN, component_id=gates.id, name=unique("Risk"),
            type=v1.CustomFieldType.ENUM, options=["High", "Low"], required=True,
        )
    )  # fmt: skip
    return pipes, gates, risk


class ImportedLabelContract:
    """Required custom fields judge where an imported issue ends, not where it passed."""

    async def test_a_history_passing_through_a_component_requiring_a_field_is_imported(
        self, model: v1.ModelStub
    ) -> None:
        pipes, gates, risk = await _gates_and_pipes(model)
        through = await model.import_issue(
            _request(pipes.id, _move(1, gates.id), _move(2, pipes.id))
        )
        assert through.issue is not None
        assert (through.issue.component_id, list(through.issue.custom_fields)) == (pipes.id, [])
        assert through.entries_written == 3
        # Created in Gates with Risk, the Risk cleared there, then moved out.
        high = v1.CustomFieldValue(field_id=risk.id, values=["High"])
        cleared = v1.ImportedEntry(
            author="src-qa", created_at=T0 + timedelta(hours=1),
            custom_fields=[v1.CustomFieldValue(field_id=risk.id)],
        )  # fmt: skip
        left = await model.import_issue(
            _request(gates.id, cleared, _move(2, pipes.id), initial=[high])
        )
        assert left.issue is not None
        assert left.issue.component_id == pipes.id
        entries = await history(model, left.issue.id)
        risks = [(c.old_value, c.new_value) for e in entries for c in e.changes if c.field_name]
        assert risks == [("", "High"), ("High", "")]

    async def test_the_state_an_issue_ends_in_must_hold_the_fields_required_there(
        self, model: v1.ModelStub
    ) -> None:
        pipes, gates, risk = await _gates_and_pipes(model)
        ends_in_gates = _request(pipes.id, _move(1, gates.id))
        await expect_error(
            model.import_issue(ends_in_gates),
            Status.INVALID_ARGUMENT,
            f"history: custom field {risk.name!r} (id {risk.id}) is required in {gates.path}, "
            "where the issue ends",
            "give its last state a value",
        )
        # Nothing was written: with a value at the move it is created whole.
        high = v1.CustomFieldValue(field_id=risk.id, values=["High"])
        ends_in_gates.history = [_move(1, gates.id, high)]
        created = await model.import_issue(ends_in_gates)
        assert created.created
        assert created.issue is not None
        assert created.entries_written == 2

        # A refresh: passing through Gates again is history; ending there
        # without a value is refused, the issue left as it was.
        request = _request(pipes.id)
        await model.import_issue(request)
        request.history = [_move(1, gates.id), _move(2, pipes.id)]
        refreshed = await model.import_issue(request)
        assert refreshed.entries_written == 2
        request.history = [*request.history, _move(3, gates.id)]
        await expect_error(
            model.import_issue(request), Status.INVALID_ARGUMENT, f"required in {gates.path}"
        )
        assert refreshed.issue is not None
        kept = await get_issue(model, refreshed.issue.id)
        assert (kept.component_id, kept.version) == (pipes.id, refreshed.issue.version)

    async def test_an_issue_created_where_a_field_is_required_needs_its_value_there(
        self, model: v1.ModelStub
    ) -> None:
        """Created in Gates and never moved, it ends in Gates: the same rule as one moved there.

        The call replays custom fields (the importer's calls all do), so the
        state it ends in is checked whether or not an entry set a value or
        moved it: as a native create in a component with fields is, and as
        the same ticket moved into Gates by its history is.
        """
        _, gates, risk = await _gates_and_pipes(model)
        said = f"custom field {risk.name!r} (id {risk.id}) is required in {gates.path}"
        await expect_error(
            model.import_issue(_request(gates.id)),
            Status.INVALID_ARGUMENT,
            f"initial_custom_fields: {said}",
        )
        comment = v1.ImportedEntry(
            author="src-qa", created_at=T0 + timedelta(hours=1), comment="still leaking"
        )
        await expect_error(
            model.import_issue(_request(gates.id, comment)),
            Status.INVALID_ARGUMENT,
            f"history: {said}",
        )
        high = v1.CustomFieldValue(field_id=risk.id, values=["High"])
        created = await model.import_issue(_request(gates.id, comment, initial=[high]))
        assert created.created
        assert created.issue is not None
        assert [v.values for v in created.issue.custom_fields] == [["High"]]

    async def test_a_refresh_adding_comments_is_taken_after_a_field_became_required(
        self, model: v1.ModelStub
    ) -> None:
        """A refresh that sets no value and moves nothing is checked as a native comment is: not.

        The issue was imported before the field was required; its new
        comments change nothing of its values, so they are appended.
        """
        later = await make_component(model)
        request = _request(later.id)
        first = await model.import_issue(request)
        assert first.issue is not None
        await model.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN, component_id=later.id, name=unique("Risk"),
                type=v1.CustomFieldType.TEXT, required=True,
            )
        )  # fmt: skip
        request.history = [
            v1.ImportedEntry(author="src-qa", created_at=T0 + timedelta(hours=1), comment="again")
        ]
        refreshed = await model.import_issue(request)
        assert refreshed.entries_written == 1
        assert refreshed.issue is not None
        assert refreshed.issue.version == first.issue.version + 1

    async def test_an_issue_created_where_a_required_field_has_a_default_takes_it(
        self, model: v1.ModelStub
    ) -> None:
        """Created in a component whose required field has a default: the default, as natively.

        The refusal of one created without a value tells the operator to
        give the field a default; with one, the import takes it, as a native
        create there does (and as a move there in the history does), and
        the creation entry records it.
        """
        gates = await make_component(model)
        risk = await model.create_custom_field(
            v1.CreateCustomFieldRequest(
                caller=ADMIN, component_id=gates.id, name=unique("Risk"),
                type=v1.CustomFieldType.ENUM, options=["High", "Low"], required=True,
                default_values=["Low"],
            )
        )  # fmt: skip
        native = await make_issue(model, gates.id, caller=ADMIN)
        assert [(v.field_id, v.values) for v in native.custom_fields] == [(risk.id, ["Low"])]
        comment = v1.ImportedEntry(
            author="src-qa", created_at=T0 + timedelta(hours=1), comment="still leaking"
        )
        for items in ((), (comment,)):
            created = await model.import_issue(_request(gates.id, *items))
            assert created.created
            assert created.issue is not None
            assert [(v.field_id, v.values) for v in created.issue.custom_fields] == [
                (risk.id, ["Low"])
            ]
            entries = await history(model, created.issue.id)
            assert [(c.old_value, c.new_value) for c in entries[0].changes if c.field_name] == [
                ("", "Low")
            ]
