"""GitHub timeline events as GitHub documents them: which are relations, which are not.

The payloads are shaped as GitHub's REST page "Issue event types"
(https://docs.github.com/en/rest/using-the-rest-api/issue-event-types) shows
them: every event has the "issue event object common properties" (``id``,
``node_id``, ``url``, ``actor``, ``event``, ``commit_id``, ``commit_url``,
``created_at``); ``marked_as_duplicate``, ``unmarked_as_duplicate``,
``connected`` and ``disconnected`` have nothing more, and ``cross-referenced``
has ``actor``, ``created_at``, ``updated_at`` and ``source`` (``type``
"issue", ``issue``: the issue that mentioned this one). That page lists no
sub-issue or dependency event; GitHub's GraphQL reference names them
(``ParentIssueAddedEvent``: "Represents a 'parent_issue_added' event on a
given issue", with the field ``parent``), and its ``sub_issues`` webhook
calls the same issue ``parent_issue``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from import_support import MakeSettings, find, history
from relation_support import _github_issue, _relation_changes

from bugless_import import run_import
from bugless_import.sources.github import GitHubImporter
from bugless_proto import v1

_HUBOT = {"login": "hubot", "id": 7, "type": "User", "site_admin": False,
          "url": "https://api.github.com/users/hubot"}  # fmt: skip


def _documented(kind: str, event_id: int, day: int, repo: str) -> dict[str, Any]:
    """An event with exactly the page's common properties."""
    return {
        "id": event_id,
        "node_id": f"MDEwOklzc3VlRXZlbnQ{event_id}",
        "url": f"https://api.github.com/repos/{repo}/issues/events/{event_id}",
        "actor": _HUBOT,
        "event": kind,
        "commit_id": None,
        "commit_url": None,
        "created_at": f"2024-04-0{day}T08:00:00Z",
    }


def _write(root: Path, issues: list[dict[str, Any]], timelines: dict[int, list[Any]]) -> None:
    (root / "timeline").mkdir()
    (root / "issues.json").write_text(json.dumps(issues), encoding="utf-8")
    for number, events in timelines.items():
        (root / "timeline" / f"{number}.json").write_text(json.dumps(events), "utf-8")


async def test_the_documented_events_that_name_no_relation_stay_out_of_relations_and_report(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """Duplicate marks, pull-request links and mentions are no relation changes.

    ``marked_as_duplicate`` names no issue (only the common properties), so
    the duplicate is its ``closed`` event's ``state_reason``; a
    ``cross-referenced`` issue only mentioned this one. None of them is a
    record of a shape the importer does not know: the report names none.
    """
    repo = "acme/documented"
    one, two = _github_issue(1, repo), _github_issue(2, repo)
    two |= {"state": "closed", "state_reason": "duplicate", "closed_at": "2024-04-05T08:00:00Z"}
    closed = _documented("closed", 905, 5, repo) | {"state_reason": "duplicate"}
    mention = {
        "actor": _HUBOT,
        "created_at": "2024-04-02T08:00:00Z",
        "updated_at": "2024-04-02T08:00:00Z",
        "source": {"type": "issue", "issue": one},
        "event": "cross-referenced",
    }
    _write(
        tmp_path,
        [one, two],
        {
            2: [
                mention,
                _documented("connected", 903, 3, repo),
                _documented("disconnected", 904, 4, repo),
                _documented("marked_as_duplicate", 906, 5, repo),
                _documented("unmarked_as_duplicate", 907, 6, repo),
                _documented("marked_as_duplicate", 908, 7, repo),
                closed,
            ]
        },
    )

    report = await run_import(GitHubImporter(str(tmp_path), {}), make_settings())

    assert report.created == 2
    assert report.not_understood == []
    assert (report.relation_changes, report.relation_changes_left_out) == (0, 0)
    imported_one, imported_two = [(await find(model, f"github:{repo}#{n}"))[0] for n in (1, 2)]
    assert imported_two.status is v1.Status.DUPLICATE
    assert (imported_two.duplicate_of_id, imported_two.parent_id) == (0, 0)
    assert (imported_two.blocked_by_ids, imported_one.blocking_ids) == ([], [])
    entries = await history(model, imported_two.id)
    assert _relation_changes(entries) == []
    assert len(entries) == 2, "its creation, then the closing as a duplicate"


async def test_a_sub_issue_event_naming_its_parent_as_graphql_does_is_its_history(
    tmp_path: Path, make_settings: MakeSettings, model: v1.ModelStub
) -> None:
    """``parent`` (GraphQL's field) is read as ``parent_issue`` (the webhook's) is.

    Before, an event naming its parent there was reported as a shape the
    importer does not know and the change was missing from the history.
    """
    repo = "acme/graphqlnames"
    one, two, three = (_github_issue(n, repo) for n in (1, 2, 3))
    added = _documented("parent_issue_added", 911, 3, repo) | {"parent": one}
    removed = _documented("parent_issue_removed", 912, 5, repo) | {"parent": one}
    moved = _documented("parent_issue_added", 913, 5, repo) | {"parent_issue": three}
    _write(tmp_path, [one, two, three], {2: [added, removed, moved]})

    report = await run_import(GitHubImporter(str(tmp_path), {}), make_settings())

    assert report.not_understood == []
    first, second, third = [(await find(model, f"github:{repo}#{n}"))[0] for n in (1, 2, 3)]
    assert second.parent_id == third.id
    at = {day: datetime(2024, 4, day, 8, tzinfo=UTC) for day in (3, 5)}
    assert _relation_changes(await history(model, second.id)) == [
        (at[3], "parent_id", f"->{first.id}"),
        (at[5], "parent_id", f"{first.id}->{third.id}"),
    ]
