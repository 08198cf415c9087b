"""Redmine, from the JSON of its REST API: live over HTTP, or exported files.

LOCATION is either the Redmine's address (``https://redmine.example.org/``),
read over its REST API, or a directory of files exported from it::

    issues/N.json               GET /issues/N.json?include=journals,watchers,attachments,relations
    issue_statuses.json         GET /issue_statuses.json
    trackers.json               GET /trackers.json
    issue_priorities.json       GET /enumerations/issue_priorities.json
    issue_categories.json       GET /projects/P/issue_categories.json  (optional)
    projects/ID/issue_categories.json   GET /projects/ID/issue_categories.json (optional)
    users.json                  GET /users.json?limit=100 (pages merged; admin only, optional)
    attachments/ID/FILENAME     GET /attachments/download/ID/FILENAME  (a file's bytes)

Over HTTP the importer makes exactly those requests, and lists the issues
with ``GET /issues.json?status_id=*&sort=id&limit=100&offset=N`` (every
status, page by page as ``total_count`` says; a Redmine may cap ``limit``
lower). Both modes hand the same JSON to the same parsing, so a live import
and an import of that Redmine's exported files give the same issues. Options:

* ``api-key-file=PATH``: a file holding the API key (Redmine: "My account",
  "API access key"), sent as the ``X-Redmine-API-Key`` header. The key is
  taken from a file or the ``REDMINE_API_KEY`` environment variable, never
  from the command line, where every user of the machine can read it in the
  process list. Without a key the import reads what anonymous users may.
* ``project=IDENTIFIER``: only that project's issues (``project_id``).
* ``url=...``: the Redmine base URL for the redirect list; over HTTP it is
  LOCATION by default.
* ``retries=N``: how often a request that failed for now (429, 500, 502,
  503, 504, a network error) is repeated, after 0.5, 1, 2, 4 ... seconds or
  what ``Retry-After`` asks (default 4; 0 fails at once).

An issue the listing named but that answers 404 when read was deleted in
between: the import goes on without it and its report names it.

The users list is for administrators only: a key of a non-admin gets 403 for
it, and the import then knows people as the issues name them (no logins or
e-mails, so they match by name only or become placeholders).

Journal details name ids (``status_id`` 1 -> 5); the lists above turn them
into names. A closed status (``is_closed``) becomes ``<status>`` as named;
trackers are the type, categories the component. Text is left as Redmine
stored it (Markdown or Textile, by the instance's text formatting). A
status, priority or tracker id a journal names that its list no longer holds
(deleted in Redmine) becomes ``status 9 (deleted)`` (``(name unknown)`` when
the list was not read), one name per id for the mapping file to map, and
:attr:`~bugless_core.importer.Importer.unnamed` names where it was met.

Categories are per project, and Redmine has no list of them all: an issue
names its own (``category: {id, name}``), and a journal's ``category_id``
id is looked up in the categories of the projects the issue was in (its
``project`` and the journal's ``project_id`` changes), read once per project
as ``projects/ID/issue_categories.json`` when an id is not known yet. An id
no project lists any more (the category was deleted in Redmine) becomes the
component ``category ID (deleted)``, ``category ID (name unknown)`` where a
project's list could not be had (403, or not among the exported files), and
the report names each.

An issue's attachments (``include=attachments``: id, filename, filesize,
content_type, description, author, created_on) are copied by ``bugless
import``, each by its author at its time. Over HTTP the bytes come from the
attachment's ``content_url`` with the API key; Redmine builds that address
from its "Host name" setting, which is often left at ``localhost:3000``, so
a ``content_url`` outside LOCATION is read at LOCATION's
``attachments/download/ID/FILENAME`` instead (the key goes to LOCATION only).
From files, the bytes are ``attachments/ID/FILENAME`` of the directory; a
file missing there is reported and left out.

Private issues (``is_private``: Redmine shows them to their author, their
assignee and those with "View private issues") are marked restricted: the
import puts an issue in the component its category maps to, whoever may
read that, so ``bugless import`` leaves them out, or imports them into the
component ``--restricted-component`` names, and the report names each.

Private notes (a journal's ``private_notes``: Redmine shows the note only
to those with the "View private notes" permission) are not imported: bugless
has no per-comment visibility, so the note would be read by everyone who may
read the issue. The journal's changes, which Redmine shows to everyone, are
imported; the report counts and names each note left out. (A key whose user
lacks that permission gets no private notes from Redmine at all.)

Relations: an issue's ``parent`` makes it a sub-issue, and its relations
(``include=relations``, listed on both issues; Redmine stores each one way,
``issue_id`` to ``issue_to_id``) are set as bugless holds them:
``duplicates`` (is a duplicate of) and ``blocks`` (with their reverses
``duplicated`` and ``blocked``). ``relates``, ``precedes``/``follows`` and
``copied_to``/``copied_from`` have no bugless counterpart: the report lists
them. An export made without ``relations`` in ``include`` has none.

Relation history: Redmine journals a relation added or removed on both of
its issues (a ``relation`` detail naming the other issue) and a parent
changed on the sub-issue (the ``parent_id`` attribute). The blocked issue's
``blocked`` details, the duplicate's ``duplicates`` and the sub-issue's
``parent_id`` are the entries' relation changes, kept in the imported
history (the Model writes the blocking issue's side).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from bugless_core.errors import InvalidArgument, NotFound, PermissionDenied
from bugless_core.importer import (
    Importer,
    SourceAttachment,
    SourceChange,
    SourceEntry,
    SourceIssue,
    SourcePerson,
    SourceRelationChange,
)
from bugless_import.sources._http import retry_count
from bugless_import.sources._redmine_readers import ExportReader, Reader, RestReader, api_key
from bugless_import.sources._redmine_relations import issue_relations, relation_changes

#: Whom Redmine shows a private issue to, in the report's words.
_PRIVATE = (
    'a private issue (Redmine shows it to its author, its assignee and those with "View '
    'private issues")'
)
_ATTRIBUTES = {
    "status_id": ("status", "statuses"),
    "priority_id": ("priority", "priorities"),
    "tracker_id": ("type", "trackers"),
    "category_id": ("component", "categories"),
    "assigned_to_id": ("assignee", ""),
    "subject": ("title", ""),
}
#: The mapping file's section of each field an id list names.
_SECTIONS = {"status": "statuses", "priority": "priorities", "type": "types"}


def when(text: str) -> datetime:
    """Redmine's ``2019-03-04T10:00:00Z`` as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class RedmineImporter(Importer):
    """``bugless import redmine URL|DIR``: REST JSON of issues with journals."""

    name = "redmine"
    description = "Redmine over its REST API (API key) or from its JSON files"
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
        """Read from the Redmine at the URL ``location``, or the directory ``location``."""
        super().__init__(location, options)
        self.source: Reader
        if location.startswith(("http://", "https://")):
            try:
                retries = retry_count(options.get("retries"))
            except ValueError as exc:
                raise InvalidArgument(f"--option {exc}") from exc
            self.source = RestReader(
                location, api_key(options), options.get("project", ""), retries
            )
            self.base = options.get("url", location).rstrip("/")
        else:
            self.source = ExportReader(location)
            self.base = options.get("url", "").rstrip("/")
        self.names: dict[str, dict[str, str]] = {
            "statuses": self._names("issue_statuses.json", "issue_statuses"),
            "priorities": self._names("issue_priorities.json", "issue_priorities"),
            "trackers": self._names("trackers.json", "trackers"),
            "categories": self._names("issue_categories.json", "issue_categories"),
        }
        #: Project id -> whether its categories were read (False: 403 or 404).
        self._category_lists = {
            str(c["project"]["id"]): True
            for c in (self._read("issue_categories.json") or {}).get("issue_categories", [])
            if (c.get("project") or {}).get("id") is not None
        }
        self._people: dict[str, SourcePerson] = {}
        self._issues: list[SourceIssue] | None = None

    def issue_url(self, number: str) -> str:
        """``<url>/issues/N``: ``#N`` names an issue in Redmine's text."""
        return f"{self.base}/issues/{number}" if self.base else ""

    def issue_external_id(self, number: str) -> str:
        """``redmine:N``: issues are keyed by their id."""
        return f"{self.name}:{number}"

    def _read(self, name: str) -> Any:
        return self.source.read(name)

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
            # People as the issues name them; keep the issues (a second read is
            # a second pass over the network).
            self._issues = list(self.issues())
        yield from self._people.values()

    def _person(self, user: dict[str, Any] | None) -> str:
        if not user:
            return ""
        key = str(user["id"])
        name = str(user.get("name") or "")
        known = self._people.get(key)
        # A journal's assigned_to_id names only the id; a later {"id", "name"} names the person.
        if known is None or (name and not known.display_name and not known.username):
            self._people[key] = SourcePerson(key=key, display_name=name)
        return key

    def issues(self) -> Iterator[SourceIssue]:
        """Every issue, by issue id."""
        if self._issues is not None:
            yield from self._issues
            return
        for number in self.source.issue_ids():
            try:
                data = self._read(f"issues/{number}.json")
            except NotFound:
                # Listed, then deleted before it was read: not an error of the run.
                self.skipped.append(f"#{number}: listed, then gone (404) when read")
                continue
            issue = self._issue(data["issue"], self.base)
            if data["issue"].get("is_private"):
                # Only its author, assignee and those with "View private
                # issues" read it in Redmine.
                issue = dataclasses.replace(issue, restricted=_PRIVATE)
            yield issue

    def _value(self, attribute: str, raw: Any, item: dict[str, Any], where: str) -> str:
        field, table = _ATTRIBUTES[attribute]
        if raw in (None, ""):
            return ""
        text = str(raw)
        if field == "component":
            return self._category(text, item, where)
        if field == "assignee":
            self._people.setdefault(text, SourcePerson(key=text))
            return text
        if not table:
            return text
        known = self.names[table].get(text)
        return known.lower() if known else self._unnamed_value(attribute, text, where)

    def _unnamed_value(self, attribute: str, value_id: str, where: str) -> str:
        """The stand-in of a status, priority or tracker id its global list no longer holds.

        ``status 9 (deleted)``: one name for the id wherever it is met, which
        the mapping file can map (``[statuses] "status 9 (deleted)" = ...``)
        and the report's unmapped values list; before, the raw id (``9``)
        stood there, read as a value named "9". "(name unknown)" where the
        list itself is missing or empty (an export without the file).
        """
        field, table = _ATTRIBUTES[attribute]
        kind = {"type": "tracker"}.get(field, field)
        why = "deleted" if self.names[table] else "name unknown"
        name = f"{kind} {value_id} ({why})"
        listed = (
            f"no longer among the {table} Redmine lists"
            if self.names[table]
            else (f"no list of {table} was read")
        )
        self.unnamed[f"{where}, {attribute} {value_id}"] = (
            f"kept as the {field} {name!r} ({listed}; map it in the mapping file's "
            f"[{_SECTIONS[field]}])"
        )
        return name

    def _category(self, category_id: str, item: dict[str, Any], where: str) -> str:
        """The name of the category ``category_id`` that ``where`` (of ``item``) names.

        Looked up in the categories of every project the issue was in, read
        once each; a raw id would make a component named ``7``.
        """
        projects = {str((item.get("project") or {}).get("id") or "")}
        for journal in item.get("journals") or []:
            for detail in journal.get("details") or []:
                if detail.get("property") == "attr" and detail.get("name") == "project_id":
                    projects |= {str(detail.get(side) or "") for side in ("old_value", "new_value")}
        projects = {p for p in projects if p.isdigit()}
        read = [self._project_categories(p) for p in sorted(projects)]
        known = self.names["categories"].get(category_id)
        if known:
            return known
        why = "deleted" if projects and all(read) else "name unknown"
        name = f"category {category_id} ({why})"
        lists = ", ".join(sorted(projects)) or "none"
        self.unnamed[f"{where}, category_id {category_id}"] = (
            f"kept as the component {name!r} (not among the categories of the issue's "
            f"projects: {lists})"
        )
        return name

    def _project_categories(self, project: str) -> bool:
        """Learn project ``project``'s categories (read once); whether Redmine listed them."""
        if project not in self._category_lists:
            try:
                data = self._read(f"projects/{project}/issue_categories.json")
            except (NotFound, PermissionDenied):
                data = None  # a project gone, or its categories not for this key
            for category in (data or {}).get("issue_categories", []):
                self.names["categories"][str(category["id"])] = str(category["name"])
            self._category_lists[project] = data is not None
        return self._category_lists[project]

    def _issue(self, item: dict[str, Any], base: str) -> SourceIssue:
        category = item.get("category") or {}
        if category.get("id") is not None and category.get("name"):
            self.names["categories"][str(category["id"])] = str(category["name"])
        entries: list[SourceEntry] = []
        for journal in sorted(item.get("journals") or [], key=lambda j: (j["created_on"], j["id"])):
            changes = []
            relations: list[SourceRelationChange] = []
            for detail in journal.get("details") or []:
                name = detail.get("name")
                relations += relation_changes(detail)
                if detail.get("property") != "attr" or name not in _ATTRIBUTES:
                    continue
                where = f"#{item['id']} journal {journal['id']}"
                changes.append(
                    SourceChange(
                        _ATTRIBUTES[name][0],
                        old=self._value(name, detail.get("old_value"), item, where),
                        new=self._value(name, detail.get("new_value"), item, where),
                    )
                )
            notes = str(journal.get("notes") or "")
            if journal.get("private_notes") and notes.strip():
                # Only those with "View private notes" read it in Redmine; in
                # bugless everyone who reads the issue would. Its changes are
                # not private (Redmine shows them to all), so they stay.
                author = str((journal.get("user") or {}).get("name") or "someone")
                self.withheld[f"#{item['id']} journal {journal['id']}"] = (
                    f"private note by {author} of {journal['created_on']} (Redmine shows it "
                    'to those with "View private notes")'
                )
                notes = ""
            if notes.strip() or changes or relations:
                entries.append(
                    SourceEntry(
                        author=self._person(journal.get("user")),
                        at=when(journal["created_on"]),
                        comment=notes,
                        changes=tuple(changes),
                        relations=tuple(relations),
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
            attachments=tuple(
                self._attachment(a)
                for a in sorted(
                    item.get("attachments") or [], key=lambda a: (a["created_on"], int(a["id"]))
                )
            ),
            relations=issue_relations(item),
        )

    def _attachment(self, attachment: dict[str, Any]) -> SourceAttachment:
        """One of an issue's files; its bytes are read when ``bugless import`` copies it."""
        size = attachment.get("filesize")
        return SourceAttachment(
            name=str(attachment.get("filename") or f"attachment{attachment['id']}"),
            author=self._person(attachment.get("author")),
            at=when(attachment["created_on"]),
            size=int(size) if size is not None else -1,
            content_type=str(attachment.get("content_type") or ""),
            comment=str(attachment.get("description") or ""),
            open=functools.partial(self.source.content, attachment),
        )
