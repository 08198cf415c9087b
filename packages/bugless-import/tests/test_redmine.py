"""Redmine REST JSON (issue with journals, id lists) into the real Model."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import FIXTURES, MakeSettings, find, history, usernames

from bugless_core.clients import call
from bugless_import import run_import
from bugless_import.sources.redmine import RedmineImporter
from bugless_proto import v1


async def test_journals_become_history_with_names_for_ids(
    make_settings: MakeSettings, model: v1.ModelStub, auth: v1.AuthenticatorStub
) -> None:
    importer = RedmineImporter(str(FIXTURES / "redmine"), {"url": "https://redmine.example.org"})
    report = await run_import(importer, make_settings())
    assert report.created == 1
    (issue,) = await find(model, "redmine:12")
    assert issue.status is v1.Status.FIXED
    assert issue.priority is v1.Priority.P1
    assert issue.closed_at == datetime(2019, 4, 5, 9, tzinfo=UTC)
    component = await call(
        model.get_component,
        v1.GetComponentRequest(
            caller=v1.Caller(user_id="t", admin=True), component_id=issue.component_id
        ),
    )
    assert component.path == "Imported>Ground"
    reporter, assignee, watcher = await usernames(auth, [issue.reporter, issue.assignee, *issue.cc])
    assert (reporter, assignee, watcher) == ("rex@redmine", "ann", "ann")
    entries = await history(model, issue.id)
    changes = [[(c.field, c.old_value, c.new_value) for c in e.changes] for e in entries[1:]]
    first_component = next(c for c in entries[0].changes if c.field == "component_id")
    assert changes[0][0][0] == "component_id"
    assert changes[0][0][1] == first_component.new_value, "created in Telemetry, then moved"
    assert changes[1] == [("status", "NEW", "ACCEPTED"), ("priority", "P2", "P1")]
    assert changes[2] == [("status", "ACCEPTED", "FIXED")]
    assert [e.comment for e in entries[1:]] == ["", "Looking.", "Fixed the buffer."]
