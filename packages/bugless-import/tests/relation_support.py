"""What the relation import tests share: source records that relate issues, and reading them back.

The relation, relation history, concurrent relation, link type, timeline
event and refusal tests build Jira, GitHub and Redmine records the same way
and compare the relation changes they leave in the same form. They live here
so no test module imports another (a moved test module must not break its
neighbours' collection).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from import_support import ADMIN, find

from bugless_core.clients import call
from bugless_proto import v1

KEY = "0123456789abcdef0123456789abcdef01234567"


async def _issue(model: v1.ModelStub, external_id: str) -> v1.Issue:
    """The one issue imported as ``external_id``, read whole."""
    (found,) = await find(model, external_id)
    return await call(model.get_issue, v1.GetIssueRequest(caller=ADMIN, issue_id=found.id))


def _jira_issue(key: str, **fields: Any) -> dict[str, Any]:
    """A Jira REST issue ``key`` (reporter zed, open) with ``fields`` added."""
    person = {"name": "zed", "displayName": "Zed Jira", "emailAddress": "zed@jira.example.org"}
    return {
        "key": key,
        "self": f"https://jira.example.org/rest/api/2/issue/{key}",
        "fields": {
            "summary": f"Issue {key}", "created": "2021-05-01T10:00:00.000+0000",
            "updated": "2021-05-02T10:00:00.000+0000", "status": {"name": "Open"},
            "reporter": person, **fields,
        },
    }  # fmt: skip


def _link(name: str, outward: str, inward: str, /, **issue: str) -> dict[str, Any]:
    """A Jira issue link of type ``name`` to one issue (``outward=`` or ``inward=`` its key)."""
    (direction, key), = issue.items()  # fmt: skip
    kind = {"name": name, "outward": outward, "inward": inward}
    return {"type": kind, f"{direction}Issue": {"key": key}}


def _github_issue(number: int, repo: str = "acme/relations") -> dict[str, Any]:
    """A GitHub REST issue ``number`` of ``repo`` (open, by octocat, no labels)."""
    api = f"https://api.github.com/repos/{repo}"
    return {
        "url": f"{api}/issues/{number}", "repository_url": api,
        "html_url": f"https://github.com/{repo}/issues/{number}", "number": number,
        "title": f"Issue {number}", "user": {"login": "octocat"}, "labels": [],
        "state": "open", "locked": False, "assignee": None, "body": "",
        "created_at": "2024-03-01T10:00:00Z", "updated_at": "2024-03-02T10:00:00Z",
        "closed_at": None,
    }  # fmt: skip


def _relation_changes(entries: list[v1.HistoryEntry]) -> list[tuple[datetime | None, str, str]]:
    """(time, field, change) of every relation FieldChange, in history order."""
    found = []
    for entry in entries:
        for change in entry.changes:
            if change.field in {"parent_id", "duplicate_of_id"}:
                found.append(
                    (entry.created_at, change.field, f"{change.old_value}->{change.new_value}")
                )
            elif change.field in {"blocking_ids", "blocked_by_ids"}:
                what = [f"+{v}" for v in change.added] + [f"-{v}" for v in change.removed]
                found.append((entry.created_at, change.field, " ".join(what)))
    return found


def _changes_only(entries: list[v1.HistoryEntry]) -> list[tuple[str, str]]:
    """:func:`_relation_changes` without the times."""
    return [(name, what) for _, name, what in _relation_changes(entries)]


def _changelog(at: str, *items: dict[str, Any]) -> dict[str, Any]:
    """A Jira changelog entry by yan at ``at`` of ``items``."""
    person = {"name": "yan", "displayName": "Yan Jira", "emailAddress": "yan@jira.example.org"}
    return {"created": at, "author": person, "items": list(items)}


def _link_item(phrase: str, key: str, *, removed: bool = False) -> dict[str, Any]:
    """A Jira changelog's Link item: ``phrase`` ``key`` added (or removed)."""
    side = "from" if removed else "to"
    return {"field": "Link", side: key, f"{side}String": f"This issue {phrase} {key}"}


ANN, REX = {"id": 5, "name": "Ann R"}, {"id": 6, "name": "Rex Redmine"}


def _journal(number: int, day: int, user: dict[str, Any], *details: dict[str, Any],
             notes: str = "") -> dict[str, Any]:  # fmt: skip
    """A Redmine journal ``number``+``day`` by ``user`` with ``details`` and ``notes``."""
    return {"id": number * 100 + day, "user": user, "notes": notes,
            "created_on": f"2019-05-0{day}T09:00:00Z", "private_notes": False,
            "details": list(details)}  # fmt: skip


def _detail(prop: str, name: str, old: int | None = None, new: int | None = None) -> dict[str, Any]:
    """A Redmine journal detail: ``prop`` ``name`` from ``old`` to ``new``."""
    return {"property": prop, "name": name, "old_value": None if old is None else str(old),
            "new_value": None if new is None else str(new)}  # fmt: skip
