"""Relation history of Redmine and GitHub: when a relation was added or removed is kept.

Before, both set only the relations as they are at the end, by the import
identity at the time of the import: a blocker added in 2019 and removed a
week later left no trace, nor a sub-issue moved from one parent to another.
A Redmine served over loopback from its REST JSON (journals with
``relation`` details on both issues and the sub-issue's ``parent_id``) and
a GitHub export (timelines with ``parent_issue_added``/``_removed`` and
``blocked_by_added``/``_removed``, and the other side's ``sub_issue_added``
and ``blocking_added``) are imported into the real Model: each change is an
entry of its author at its time, blocking has its entry on both issues
(once), an issue outside the import is left out and counted, and a second
run and a ``--refresh`` write nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from import_support import FIXTURES, MakeSettings, find, history, usernames
from redmine_server import Redmine, serve
from relation_support import (
    ANN,
    KEY,
    REX,
    _changes_only,
    _detail,
    _github_issue,
    _journal,
    _relation_changes,
)

from bugless_import import run_import
from bugless_import.sources.github import GitHubImporter
from bugless_import.sources.redmine import RedmineImporter
from bugless_proto import v1


def _day(n: int) -> datetime:
    return datetime(2019, 5, n, 9, 0, tzinfo=UTC)


#: Four Redmine issues' journals, each relation journaled on both issues as
#: Redmine does (``IssueRelation``'s journal callbacks); a parent on the
#: sub-issue only. Their relations at the end: 7103 under 7102, 7104 a
#: duplicate of 7102 and blocked by 7999 (another project's).
# fmt: off
_JOURNALS: dict[int, list[dict[str, Any]]] = {
    7101: [
        _journal(7101, 1, REX, _detail("relation", "blocks", new=7102)),
        _journal(7101, 4, REX, _detail("relation", "blocks", old=7102)),
    ],
    7102: [
        _journal(7102, 1, REX, _detail("relation", "blocked", new=7101), notes="Needs #7101."),
        _journal(7102, 4, REX, _detail("relation", "blocked", old=7101)),
        _journal(7102, 5, ANN, _detail("relation", "duplicated", new=7104)),
    ],
    7103: [
        _journal(7103, 2, ANN, _detail("attr", "parent_id", new=7101)),
        _journal(7103, 3, ANN, _detail("attr", "parent_id", old=7101, new=7102),
                 notes="Moved under #7102."),
    ],
    7104: [
        _journal(7104, 5, ANN, _detail("relation", "duplicates", new=7102),
                 _detail("attr", "status_id", old=1, new=2)),
        _journal(7104, 6, ANN, _detail("relation", "blocked", new=7999)),
        _journal(7104, 7, ANN, _detail("relation", "relates", new=7101)),
    ],
}
# fmt: on
_NOW: dict[int, dict[str, Any]] = {
    7102: {
        "relations": [
            {
                "id": 2,
                "issue_id": 7104,
                "issue_to_id": 7102,
                "relation_type": "duplicates",
                "delay": None,
            }
        ]
    },
    7103: {"parent": {"id": 7102}},
    7104: {
        "relations": [
            {
                "id": 2,
                "issue_id": 7104,
                "issue_to_id": 7102,
                "relation_type": "duplicates",
                "delay": None,
            },
            {
                "id": 3,
                "issue_id": 7999,
                "issue_to_id": 7104,
                "relation_type": "blocks",
                "delay": None,
            },
            {
                "id": 4,
                "issue_id": 7104,
                "issue_to_id": 7101,
                "relation_type": "relates",
                "delay": None,
            },
        ]
    },
}  # fmt: skip


@pytest.fixture
def redmine(tmp_path: Path) -> Iterator[Redmine]:
    """The four issues of :data:`_JOURNALS`, served over loopback."""
    root = tmp_path / "redmine"
    shutil.copytree(FIXTURES / "redmine", root)
    template = json.loads((root / "issues" / "12.json").read_text(encoding="utf-8"))["issue"]
    (root / "issues" / "12.json").unlink()
    for number, journals in _JOURNALS.items():
        issue = {**template, "id": number, "subject": f"Issue {number}", "journals": journals,
                 "created_on": "2019-04-30T09:00:00Z", "updated_on": "2019-05-07T09:00:00Z",
                 "status": {"id": 1, "name": "New"}, "closed_on": None, "attachments": [],
                 "relations": [], **_NOW.get(number, {})}  # fmt: skip
        (root / "issues" / f"{number}.json").write_text(
            json.dumps({"issue": issue}), encoding="utf-8"
        )
    with serve(Redmine(root, KEY)) as server:
        yield server


async def test_a_redmine_journal_of_relations_and_parents(
    redmine: Redmine,
    tmp_path: Path,
    make_settings: MakeSettings,
    model: v1.ModelStub,
    auth: v1.AuthenticatorStub,
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    options = {"api-key-file": str(key_file)}
    settings = make_settings()
    report = await run_import(RedmineImporter(redmine.url, options), settings)
    assert report.created == 4
    one, two, three, four = [(await find(model, f"redmine:{n}"))[0] for n in _JOURNALS]
    assert (three.parent_id, four.duplicate_of_id, two.blocked_by_ids) == (two.id, two.id, [])

    two_history = await history(model, two.id)
    assert _relation_changes(two_history) == [
        (_day(1), "blocked_by_ids", f"+{one.id}"),
        (_day(4), "blocked_by_ids", f"-{one.id}"),
    ]
    assert next(e.comment for e in two_history if e.created_at == _day(1)).startswith("Needs [#")
    # 7101's own "blocks" details are the same changes: written once, caused by 7102's.
    one_history = await history(model, one.id)
    assert _relation_changes(one_history) == [
        (_day(1), "blocking_ids", f"+{two.id}"),
        (_day(4), "blocking_ids", f"-{two.id}"),
    ]
    assert {e.caused_by_issue_id for e in one_history if e.created_at in {_day(1), _day(4)}} == {
        two.id
    }
    three_history = await history(model, three.id)
    assert _relation_changes(three_history) == [
        (_day(2), "parent_id", f"->{one.id}"),
        (_day(3), "parent_id", f"{one.id}->{two.id}"),
    ]
    assert await usernames(auth, [three_history[-1].author]) == ["ann"]
    # The duplicate's entry keeps its status change with the relation; the
    # blocker outside the import and "relates" leave entries with nothing.
    assert _changes_only(await history(model, four.id)) == [("duplicate_of_id", f"->{two.id}")]
    assert (report.relation_changes, report.relation_changes_left_out) == (6, 1)
    assert report.relations is not None
    assert (report.relations.set, report.relations.present) == (0, 2)
    text = report.render()
    assert "    not set (redmine:7999 not imported): redmine:7999 blocks redmine:7104\n" in text

    versions = [i.version for i in (one, two, three, four)]
    for again in (settings, make_settings(refresh=True)):
        rerun = await run_import(RedmineImporter(redmine.url, options), again)
        assert rerun.entries_written == 0
        assert [(await find(model, f"redmine:{n}"))[0].version for n in _JOURNALS] == versions


def _event(kind: str, day: int, **other: dict[str, Any]) -> dict[str, Any]:
    return {"event": kind, "actor": {"login": "hubot"},
            "created_at": f"2024-03-0{day}T12:00:00Z", **other}  # fmt: skip


async def test_a_github_timeline_of_sub_issues_and_dependencies(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub, auth: v1.AuthenticatorStub
) -> None:
    repo = "acme/relhist"
    issue = {n: _github_issue(n, repo) for n in (1, 2, 3)}
    elsewhere = _github_issue(9, "acme/elsewhere")
    timelines: dict[int, list[dict[str, Any]]] = {
        1: [
            _event("sub_issue_added", 3, sub_issue=issue[2]),
            _event("blocking_added", 4, blocked_issue=issue[3]),
            _event("blocking_removed", 6, blocked_issue=issue[3]),
        ],
        2: [
            _event("parent_issue_added", 3, parent_issue=issue[1]),
            _event("parent_issue_removed", 5, parent_issue=issue[1]),
            _event("parent_issue_added", 5, parent_issue=issue[3]),
            _event("marked_as_duplicate", 7),  # REST names no issue: not read
        ],
        3: [
            _event("sub_issue_added", 5, sub_issue=issue[2]),
            _event("blocked_by_added", 4, blocking_issue=issue[1]),
            _event("blocked_by_removed", 6, blocking_issue=issue[1]),
            _event("blocked_by_added", 7, blocking_issue=elsewhere),
        ],
    }
    (tmp_path / "timeline").mkdir()
    (tmp_path / "sub_issues").mkdir()
    (tmp_path / "blocked_by").mkdir()
    (tmp_path / "issues.json").write_text(json.dumps(list(issue.values())), encoding="utf-8")
    for number, events in timelines.items():
        (tmp_path / "timeline" / f"{number}.json").write_text(json.dumps(events), "utf-8")
    (tmp_path / "sub_issues" / "3.json").write_text(json.dumps([issue[2]]), "utf-8")
    (tmp_path / "blocked_by" / "3.json").write_text(json.dumps([elsewhere]), "utf-8")

    settings = make_settings()
    report = await run_import(GitHubImporter(str(tmp_path), {}), settings)
    assert report.created == 3
    one, two, three = [(await find(model, f"github:{repo}#{n}"))[0] for n in (1, 2, 3)]
    assert (two.parent_id, one.blocking_ids, three.blocked_by_ids) == (three.id, [], [])

    at = {day: datetime(2024, 3, day, 12, tzinfo=UTC) for day in range(1, 8)}
    assert _relation_changes(await history(model, two.id)) == [
        (at[3], "parent_id", f"->{one.id}"),
        (at[5], "parent_id", f"{one.id}->{three.id}"),
    ]
    assert _relation_changes(await history(model, three.id)) == [
        (at[4], "blocked_by_ids", f"+{one.id}"),
        (at[6], "blocked_by_ids", f"-{one.id}"),
    ]
    one_history = await history(model, one.id)
    assert _relation_changes(one_history) == [
        (at[4], "blocking_ids", f"+{three.id}"),
        (at[6], "blocking_ids", f"-{three.id}"),
    ]
    assert await usernames(auth, [one_history[-1].author]) == ["hubot@github"]
    assert (report.relation_changes, report.relation_changes_left_out) == (5, 1)
    assert report.relations is not None
    assert (report.relations.set, report.relations.present) == (0, 1)

    versions = [i.version for i in (one, two, three)]
    for again in (settings, make_settings(refresh=True)):
        rerun = await run_import(GitHubImporter(str(tmp_path), {}), again)
        assert rerun.entries_written == 0
        assert [(await find(model, f"github:{repo}#{n}"))[0].version for n in (1, 2, 3)] == (
            versions
        )


async def test_a_github_relation_event_of_another_shape_is_reported_not_dropped(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """GitHub's REST docs do not list these events' fields: a shape not read is named.

    Before, an event naming its other issue elsewhere than the webhooks'
    ``parent_issue`` / ``blocking_issue`` (or GraphQL's ``parent``) left no trace in the history or
    the report.
    """
    repo = "acme/relshape"
    issue = {n: _github_issue(n, repo) for n in (1, 2)}
    timeline = [
        {**_event("parent_issue_added", 3, subject=issue[1]), "id": 701},
        {**_event("blocked_by_added", 4, blocking=issue[1]), "id": 702},
    ]
    (tmp_path / "timeline").mkdir()
    (tmp_path / "sub_issues").mkdir()
    (tmp_path / "issues.json").write_text(json.dumps(list(issue.values())), encoding="utf-8")
    (tmp_path / "timeline" / "2.json").write_text(json.dumps(timeline), "utf-8")
    (tmp_path / "sub_issues" / "1.json").write_text(json.dumps([issue[2]]), "utf-8")

    report = await run_import(GitHubImporter(str(tmp_path), {}), make_settings())

    one, two = [(await find(model, f"github:{repo}#{n}"))[0] for n in (1, 2)]
    assert two.parent_id == one.id, "the relation as it is now, from sub_issues/"
    assert report.relation_changes == 0
    assert report.not_understood == [
        (
            f"{repo}#2 timeline event 701",
            "parent_issue_added of 2024-03-03T12:00:00Z names no issue in 'parent_issue' or "
            "'parent' (its other fields: subject); the change is not in the history, the "
            "relation as it is now is set from sub_issues/ and blocked_by/",
        ),
        (
            f"{repo}#2 timeline event 702",
            "blocked_by_added of 2024-03-04T12:00:00Z names no issue in 'blocking_issue' "
            "(its other fields: blocking); the change is not in the history, the relation as "
            "it is now is set from sub_issues/ and blocked_by/",
        ),
    ]
    assert (
        "source records in a shape the importer does not know, not imported: 2\n"
        f"    {repo}#2 timeline event 701: parent_issue_added"
    ) in report.render()
