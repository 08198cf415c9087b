"""Redmine, from the JSON of its REST API (files; no network needed).

LOCATION is a directory holding what an API key can read::

    issues/N.json               GET /issues/N.json?include=journals,watchers
    issue_statuses.json         GET /issue_statuses.json
    trackers.json               GET /trackers.json
    issue_priorities.json       GET /enumerations/issue_priorities.json
    issue_categories.json       GET /projects/P/issue_categories.json  (optional)
    users.json                  GET /users.json?limit=100 (pages merged; admin only, optional)

Journal details name ids (``status_id`` 1 -> 5); the lists above turn them
into names. A closed status (``is_closed``) becomes ``<status>`` as named;
trackers are the type, categories the component. ``--option url=...`` is
the Redmine base URL for the redirect list. Text is left as Redmine stored it
(Markdown or Textile, by the instance's text formatting).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bugless_core.errors import InvalidArgument
from bugless_core.importer import (
    Importer,
    SourceChange,
    SourceEntry,
    SourceIssue,
    SourcePerson,
)

_ATTRIBUTES = {
    "status_id": ("status", "statuses"),
    "priority_id": ("priority", "priorities"),
    "tracker_id": ("type", "trackers"),
    "category_id": ("component", "categories"),
    "assigned_to_id": ("assignee", ""),
    "subject": ("title", ""),
}


def when(text: str) -> datetime:
    """Redmine's ``2019-03-04T10:00:00Z`` as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class RedmineImporter(Importer):
    """``bugless import redmine DIR``: REST JSON of issues with journals."""

    name = "redmine"
    description = "Redmine from REST API JSON files (issues with journals, statuses, ...)"
    default_mapping = {
        "statuses": {
            "new": "NEW",
            "in progress": "ACCEPTED",
            "feedback": "ASSIGNED",
            "resolved": "FIXED",
            "closed": "FIXED",
            "rejected": "WONT_FIX_INTENDED_BEHAVIOR",
        },
        "priorities": {
            "immediate": "P0",
            "urgent": "P1",
            "high": "P1",
            "normal": "P2",
            "low": "P3",
        },
        "types": {"bug": "BUG", "feature": "FEATURE_REQUEST", "support": "CUSTOMER_ISSUE"},
    }

    def __init__(self, location: str, options: dict[str, str]) -> None:
        """Read from the directory ``location``."""
        super().__init__(location, options)
        self.root = Path(location)
        if not (self.root / "issues").is_dir():
            raise InvalidArgument(f"{location}: no issues/ directory of Redmine issue JSON")
        self.names: dict[str, dict[str, str]] = {
            "statuses": self._names("issue_statuses.json", "issue_statuses"),
            "priorities": self._names("issue_priorities.json", "issue_priorities"),
            "trackers": self._names("trackers.json", "trackers"),
            "categories": self._names("issue_categories.json", "issue_categories"),
        }
        self._people: dict[str, SourcePerson] = {}

    def _read(self, name: str) -> Any:
        path = self.root / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{path}: not JSON: {exc}") from exc

    def _names(self, file: str, key: str) -> dict[str, str]:
        data = self._read(file) or {}
        return {str(item["id"]): str(item["name"]) for item in data.get(key, [])}

    def people(self) -> Iterator[SourcePerson]:
        """Accounts from users.json (logins, e-mails), else as issues name them."""
        for user in (self._read("users.json") or {}).get("users", []):
            key = str(user["id"])
            self._people[key] = SourcePerson(
                key=key,
                username=str(user.get("login") or ""),
                email=str(user.get("mail") or ""),
                display_name=f"{user.get('firstname', '')} {user.get('lastname', '')}".strip(),
            )
        if not self._people:
            list(self.issues())
        yield from self._people.values()

    def _person(self, user: dict[str, Any] | None) -> str:
        if not user:
            return ""
        key = str(user["id"])
        self._people.setdefault(
            key, SourcePerson(key=key, display_name=str(user.get("name") or ""))
        )
        return key

    def issues(self) -> Iterator[SourceIssue]:
        """Every issue file, by issue id."""
        paths = sorted((self.root / "issues").glob("*.json"), key=lambda p: int(p.stem))
        base = self.options.get("url", "").rstrip("/")
        for path in paths:
            data = self._read(f"issues/{path.name}")
            yield self._issue(data["issue"], base)

    def _value(self, attribute: str, raw: Any) -> str:
        field, table = _ATTRIBUTES[attribute]
        if raw in (None, ""):
            return ""
        text = str(raw)
        if field == "assignee":
            self._people.setdefault(text, SourcePerson(key=text))
            return text
        if not table:
            return text
        name = self.names[table].get(text, text)
        return name if field == "component" else name.lower()

    def _issue(self, item: dict[str, Any], base: str) -> SourceIssue:
        entries: list[SourceEntry] = []
        for journal in sorted(item.get("journals") or [], key=lambda j: (j["created_on"], j["id"])):
            changes = []
            for detail in journal.get("details") or []:
                name = detail.get("name")
                if detail.get("property") != "attr" or name not in _ATTRIBUTES:
                    continue
                field = _ATTRIBUTES[name][0]
                changes.append(
                    SourceChange(
                        field,
                        old=self._value(name, detail.get("old_value")),
                        new=self._value(name, detail.get("new_value")),
                    )
                )
            notes = str(journal.get("notes") or "")
            if notes.strip() or changes:
                entries.append(
                    SourceEntry(
                        author=self._person(journal.get("user")),
                        at=when(journal["created_on"]),
                        comment=notes,
                        changes=tuple(changes),
                    )
                )
        status = item.get("status") or {}
        return SourceIssue(
            key=str(item["id"]),
            url=f"{base}/issues/{item['id']}" if base else f"issues/{item['id']}",
            title=str(item.get("subject") or f"issue {item['id']}"),
            description=str(item.get("description") or ""),
            reporter=self._person(item.get("author")),
            created_at=when(item["created_on"]),
            modified_at=when(item["updated_on"]) if item.get("updated_on") else None,
            closed_at=when(item["closed_on"]) if item.get("closed_on") else None,
            status=str(status.get("name") or "").lower(),
            priority=str((item.get("priority") or {}).get("name") or "").lower(),
            type=str((item.get("tracker") or {}).get("name") or "").lower(),
            component=str((item.get("category") or {}).get("name") or ""),
            assignee=self._person(item.get("assigned_to")),
            cc=tuple(self._person(w) for w in item.get("watchers") or []),
            entries=tuple(entries),
        )
