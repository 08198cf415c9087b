"""Jira search JSON (changelog, comments, wiki markup, offsets) into the real Model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from import_support import FIXTURES, MakeSettings, find, history, usernames

from bugless_core.clients import call
from bugless_core.errors import NotFound
from bugless_import import run_import
from bugless_import.sources.jira import JiraImporter, when
from bugless_import.sources.markup import jira_to_markdown
from bugless_proto import v1


def test_times_keep_their_offsets() -> None:
    assert when("2020-02-02T23:30:00.000-0500") == datetime(
        2020, 2, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5))
    )
    assert when("2020-02-02T23:30:00.000-0500") == datetime(2020, 2, 3, 4, 30, tzinfo=UTC)


def test_wiki_markup_becomes_markdown() -> None:
    text = "h2. Steps\n# one\n# two\n*bold* _it_ {{mono}} -gone- [spec|https://x.org]\n{code:java}\n*raw*\n{code}"
    assert jira_to_markdown(text) == (
        "## Steps\n1. one\n1. two\n**bold** *it* `mono` ~~gone~~ [spec](https://x.org)\n"
        "\n```java\n*raw*\n```\n"
    )


async def test_a_jira_project_keeps_its_changelog_comments_and_people(
    make_settings: MakeSettings, model: v1.ModelStub, auth: v1.AuthenticatorStub
) -> None:
    report = await run_import(JiraImporter(str(FIXTURES / "jira"), {}), make_settings())
    assert report.created == 2
    (issue,) = await find(model, "jira:ROCK-1")
    assert issue.status is v1.Status.FIXED
    assert issue.priority is v1.Priority.P2
    assert issue.type is v1.IssueType.BUG
    assert issue.created_at == datetime(2020, 2, 1, 8, 15, tzinfo=UTC)
    assert issue.closed_at == datetime(2020, 2, 3, 17, 30, tzinfo=UTC)
    assert "## Steps" in issue.description
    assert "```python\nprint('*not bold*')\n```" in issue.description
    assert "[the spec](https://example.org/spec)" in issue.description
    reporter, assignee = await usernames(auth, [issue.reporter, issue.assignee])
    assert reporter == "zed@jira"
    assert assignee == "ann", "matched by e-mail, whatever its case"

    entries = await history(model, issue.id)
    authors = await usernames(auth, [e.author for e in entries])
    summary = [
        (a, e.created_at, e.comment, [(c.field, c.old_value, c.new_value) for c in e.changes])
        for a, e in zip(authors, entries, strict=False)
    ]
    assert summary[1:] == [
        ("zed@jira", datetime(2020, 2, 1, 8, 30, tzinfo=UTC), "", [
            ("priority", "P3", "P2"), ("assignee", "", issue.assignee)]),
        ("ann", datetime(2020, 2, 1, 9, tzinfo=UTC), "*Looking* into it.", []),
        ("ann", datetime(2020, 2, 2, 11, tzinfo=UTC), "", [("status", "NEW", "ACCEPTED")]),
        ("bob", datetime(2020, 2, 3, 4, 30, tzinfo=UTC), "~~Works~~ does not work for me", []),
        ("ann", datetime(2020, 2, 3, 17, 30, tzinfo=UTC), "", [("status", "ACCEPTED", "FIXED")]),
    ]  # fmt: skip
    (first,) = [c for c in entries[0].changes if c.field == "priority"]
    assert first.new_value == "P3", "created with the priority the changelog started from"

    (feature,) = await find(model, "jira:ROCK-2")
    assert feature.type is v1.IssueType.FEATURE_REQUEST
    assert feature.priority is v1.Priority.P4
    assert feature.created_at == datetime(2020, 3, 1, 6, 30, tzinfo=UTC)


def _two_components(root: Path) -> None:
    """A search page of one issue in two components; a third came and went."""
    person = {"name": "ann.k", "key": "ann.k", "emailAddress": "ann@example.com"}
    issue = {
        "id": "20001",
        "self": "https://jira.example.org/rest/api/2/issue/20001",
        "key": "MULTI-1",
        "fields": {
            "summary": "Telemetry drops at staging",
            "description": "Both teams see it.",
            "issuetype": {"name": "Bug"},
            "priority": {"name": "Medium"},
            "status": {"name": "To Do"},
            "created": "2021-05-01T10:00:00.000+0000",
            "updated": "2021-05-02T10:00:00.000+0000",
            "reporter": person,
            "components": [{"name": "Avionics"}, {"name": "Telemetry"}],
            "labels": ["customer"],
            "comment": {"comments": [], "total": 0},
        },
        "changelog": {
            "histories": [
                {
                    "created": "2021-05-01T11:00:00.000+0000",
                    "author": person,
                    "items": [{"field": "Component", "fromString": None, "toString": "Ground"}],
                },
                {
                    "created": "2021-05-02T10:00:00.000+0000",
                    "author": person,
                    "items": [{"field": "Component", "fromString": "Ground", "toString": None}],
                },
            ]
        },
    }
    root.mkdir()
    page = {"startAt": 0, "maxResults": 1, "total": 1, "issues": [issue]}
    (root / "search-0000.json").write_text(json.dumps(page), encoding="utf-8")


async def test_every_component_of_an_issue_is_kept(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """The first component is the issue's; the others become ``component:`` labels."""
    _two_components(tmp_path / "jira")
    (source,) = JiraImporter(str(tmp_path / "jira"), {}).issues()
    assert source.component == "Avionics"
    assert source.labels == ("customer", "component:Telemetry")
    assert [c.added or c.removed for e in source.entries for c in e.changes] == [
        ("component:Ground",),
        ("component:Ground",),
    ], "components added and removed one by one are label changes, not moves"

    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[labels]\n"component:Telemetry" = "hotlist:Telemetry team"\n')
    report = await run_import(
        JiraImporter(str(tmp_path / "jira"), {}), make_settings(mapping=mapping)
    )
    assert report.created == 1
    (issue,) = await find(model, "jira:MULTI-1")
    component = await call(
        model.get_component,
        v1.GetComponentRequest(
            caller=v1.Caller(user_id="t", admin=True), component_id=issue.component_id
        ),
    )
    assert component.path == "Imported>Avionics", "never moved to Ground"
    hotlists = await call(
        model.list_hotlists,
        v1.ListHotlistsRequest(
            caller=v1.Caller(user_id="t", admin=True), page=v1.PageRequest(page_size=500)
        ),
    )
    (telemetry,) = [h.id for h in hotlists.hotlists if h.name == "Telemetry team"]
    assert list(issue.hotlist_ids) == [telemetry]


async def test_no_root_component_is_made_when_every_component_is_mapped(
    make_settings: MakeSettings, model: v1.ModelStub, tmp_path: Path
) -> None:
    """A mapping that places every component leaves ``--component-root`` unmade.

    Before, the root was always created, even with no issue to hold: after a
    team mapped all its components, an empty "Imported" stood in every
    component picker (walk26, a Trac import on ``bugless dev``).
    """
    _two_components(tmp_path / "jira")
    page = tmp_path / "jira" / "search-0000.json"
    page.write_text(page.read_text(encoding="utf-8").replace("MULTI-", "ROOTLESS-"))
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[components]\nAvionics = "Flight Rootless>Avionics"\n')

    report = await run_import(
        JiraImporter(str(tmp_path / "jira"), {}),
        make_settings(mapping=mapping, component_root="Unused Rootless"),
    )

    assert report.created == 1
    assert report.components_to_create == ["Flight Rootless", "Flight Rootless>Avionics"]
    admin = v1.Caller(user_id="t", admin=True)
    (issue,) = await find(model, "jira:ROOTLESS-1")
    component = await call(
        model.get_component, v1.GetComponentRequest(caller=admin, component_id=issue.component_id)
    )
    assert component.path == "Flight Rootless>Avionics"
    with pytest.raises(NotFound):
        await call(
            model.get_component, v1.GetComponentRequest(caller=admin, path="Unused Rootless")
        )
