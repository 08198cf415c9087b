"""Jira, from the JSON of its REST search API (files; no network needed).

LOCATION is a directory of ``*.json`` files, each one page of::

    GET /rest/api/2/search?jql=project=PROJ ORDER BY key&expand=changelog
        &fields=*all&startAt=N&maxResults=100

(``{"issues": [...], "startAt": ..., "total": ...}``), read in name order.
Comments come from each issue's ``fields.comment.comments`` (every one is
included when the search returns them; otherwise add
``/rest/api/2/issue/KEY/comment`` pages as ``comments-KEY*.json``).
Text fields are Jira wiki notation (API v2) and are converted to Markdown.
An issue with an issue security level (``fields.security``: Jira shows it
to the level's members only) is marked restricted, and the report names it:
the import puts an issue in the component its Jira component maps to,
whoever may read that, so it is left out, or imported into the component
``--restricted-component`` names. A comment Jira shows only to a role or a group (its
``visibility``) is not imported: bugless has no per-comment visibility, so it would be read by
everyone who may read the issue. The report counts and names each one.
Jira Service Management's internal comments (``jsdPublic: false``, or the
``sd.public.comment`` property saying ``internal``: agents' notes the
customer portal does not show) are left out the same way, since a customer
with a bugless account could read them, unless
``--option internal-comments=import`` says that only agents have accounts
(``leave-out``, the default, is the other value).
Times carry their offset (``2019-03-04T10:00:00.000+0100``).

The status is written ``<status>/<resolution>`` when the issue has a
resolution (``done/fixed``), matching the changelog, where a status and a
resolution change of one history item are read as one change.

An issue's attachments (``fields.attachment``: id, filename, author,
created, size, mimeType, content) are copied by ``bugless import``, each by
its author at its time. The bytes come from ``attachments/ID/FILENAME`` in
LOCATION when that file is there (an export made with the pages), else from
the attachment's ``content`` URL over HTTP. Options for the latter:

* ``token-file=PATH``: a file holding an API token (or ``JIRA_TOKEN`` in the
  environment; never on the command line, where every user of the machine
  can read it). Sent as ``Authorization: Bearer`` (a Data Center personal
  access token), or with ``user=EMAIL`` as Basic ``EMAIL:TOKEN`` (Jira
  Cloud). The token goes only to the Jira the issue's ``self`` names, not
  on to where it redirects; a ``content`` URL elsewhere is read without it.
* ``retries=N``: how often a download that failed for now (429, 5xx, a
  network error) is asked again (default 4; 0 fails at once).

A file neither there nor readable is reported and left out.

Relations: ``fields.parent`` (a sub-task's, or a child's in a team-managed
project, or an epic's child since Jira Cloud's 2023 parent field), the
"Epic Link" custom field of a company-managed project (its id found in the
page's ``names``, ``"Epic Link"``, or ``schema``, Jira Software's
``gh-epic-link`` type: export with ``expand=changelog,names,schema``; or
given as ``--option epic-link-field=customfield_10014``) and
``fields.subtasks`` make sub-issues; ``fields.issuelinks`` of
a link type are read by the type's phrases (``outward``/``inward``): the
stock ``Duplicate`` (duplicates / is duplicated by) and ``Blocks`` (blocks /
is blocked by), and a site's own types whose phrases say the same ("depends
on" / "is depended on by" blocks; "is child of" / "is parent of" makes a
sub-issue; see ``_PHRASES``) are set as bugless holds them, in the direction
the phrases give. Other link types (``Relates``, ``Cloners``, a site's own
whose phrases say none of those, or contradict each other) have no bugless
counterpart: the report lists each link by its outward phrase and its type's
name. Jira lists a link on both issues. The changelog's "Link" items (read
by the same phrases: "is blocked by", "depends on", "duplicates", "is child
of" ...), "Epic Link" and parent items ("Parent", Jira Cloud's
``IssueParentAssociation``) are the entries' relation changes, kept in the
imported history.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit
from urllib.request import Request

from bugless_core.errors import InvalidArgument
from bugless_core.importer import (
    RELATION_KINDS,
    Importer,
    SourceAttachment,
    SourceChange,
    SourceEntry,
    SourceIssue,
    SourcePerson,
    SourceRelation,
    SourceRelationChange,
)
from bugless_import.sources._http import open_file, retry_count, secret_option
from bugless_import.sources._jira_comments import imports_internal_comments, withheld_because
from bugless_import.sources.markup import jira_to_markdown

_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")
#: Jira's stock link type names (lower case) -> the relation bugless holds.
_LINKS = {"duplicate": "duplicate_of", "blocks": "blocks"}
#: A link phrase (lower case) -> the relation "this issue <phrase> the other"
#: is (kind, reverse): the stock types' phrases and those a site's own types
#: commonly use for the relations bugless holds. A type is read by its
#: phrases, so a site's "Dependency" (depends on / is depended on by) blocks,
#: and a type whose phrases run the other way round than its name is read
#: the way its phrases say.
_PHRASES = {
    "blocks": ("blocks", False),
    "is blocked by": ("blocks", True),
    "depends on": ("blocks", True),
    "is depended on by": ("blocks", False),
    "is a dependency of": ("blocks", False),
    "is dependency of": ("blocks", False),
    "is required by": ("blocks", False),
    "duplicates": ("duplicate_of", False),
    "is a duplicate of": ("duplicate_of", False),
    "is duplicated by": ("duplicate_of", True),
    "is child of": ("parent", False),
    "is a child of": ("parent", False),
    "is subtask of": ("parent", False),
    "is sub-task of": ("parent", False),
    "is parent of": ("parent", True),
    "is a parent of": ("parent", True),
}
#: Jira Software's custom field type of the classic "Epic Link".
_EPIC_LINK_TYPE = "com.pyxis.greenhopper.jira:gh-epic-link"
_CUSTOM_FIELD = re.compile(r"customfield_[0-9]+")
#: An issue key, as a changelog's ``from``/``to`` give the linked issue.
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*-[0-9]+$")
#: A changelog "Link" item's text ("This issue is blocked by ROCK-1") is read
#: by :data:`_PHRASES`. Jira logs a link on both issues: the blocked issue's,
#: the duplicate's and the sub-issue's items are imported, the Model writes
#: the other side (the outward "blocks" would find it written already), and
#: "is duplicated by" is the other issue's to hold.
_HISTORY_PHRASES = {
    phrase: meaning
    for phrase, meaning in _PHRASES.items()
    if meaning[1] == (meaning[0] == "blocks")
}
#: Changelog fields that change an issue's parent (their strings are keys).
_PARENT_FIELDS = frozenset({"Epic Link", "Parent", "parent", "IssueParentAssociation"})


def when(text: str) -> datetime:
    """Jira's ``2019-03-04T10:00:00.000+0100`` (or ``Z``) as an aware datetime."""
    return datetime.fromisoformat(_OFFSET.sub(r"\1:\2", text.replace("Z", "+00:00")))


def _status(status: str, resolution: str) -> str:
    status = status.lower()
    return f"{status}/{resolution.lower()}" if resolution else status


class JiraImporter(Importer):
    """``bugless import jira DIR``: search result pages with changelogs."""

    name = "jira"
    description = "Jira from REST search JSON files (expand=changelog, with comments)"
    default_mapping = {
        "statuses": {
            "open": "NEW",
            "to do": "NEW",
            "backlog": "NEW",
            "selected for development": "NEW",
            "reopened": "NEW",
            "in progress": "ACCEPTED",
            "in review": "ACCEPTED",
            "done/done": "FIXED",
            "done/fixed": "FIXED",
            "resolved/fixed": "FIXED",
            "closed/fixed": "FIXED",
            "closed/done": "FIXED",
            "resolved/won't fix": "WONT_FIX_INFEASIBLE",
            "closed/won't fix": "WONT_FIX_INFEASIBLE",
            "done/won't do": "WONT_FIX_INFEASIBLE",
            "resolved/duplicate": "DUPLICATE",
            "closed/duplicate": "DUPLICATE",
            "resolved/cannot reproduce": "WONT_FIX_NOT_REPRODUCIBLE",
            "closed/cannot reproduce": "WONT_FIX_NOT_REPRODUCIBLE",
            "resolved/incomplete": "WONT_FIX_OBSOLETE",
            "closed/incomplete": "WONT_FIX_OBSOLETE",
        },
        "priorities": {
            "blocker": "P0",
            "highest": "P0",
            "critical": "P1",
            "high": "P1",
            "major": "P2",
            "medium": "P2",
            "minor": "P3",
            "low": "P3",
            "trivial": "P4",
            "lowest": "P4",
        },
        "types": {
            "bug": "BUG",
            "improvement": "FEATURE_REQUEST",
            "new feature": "FEATURE_REQUEST",
            "story": "FEATURE_REQUEST",
            "epic": "FEATURE_REQUEST",
            "task": "TASK",
            "sub-task": "TASK",
            "subtask": "TASK",
        },
    }

    def __init__(self, location: str, options: dict[str, str]) -> None:
        """Read the search pages in the directory ``location``."""
        super().__init__(location, options)
        self.root = Path(location)
        if not self.root.is_dir():
            raise InvalidArgument(f"{location}: not a directory of Jira search JSON")
        self._people: dict[str, SourcePerson] = {}
        try:
            self.retries = retry_count(options.get("retries"))
        except ValueError as exc:
            raise InvalidArgument(f"--option {exc}") from exc
        self._authorization = _authorization(options)
        epic_field = options.get("epic-link-field", "")
        if epic_field and not _CUSTOM_FIELD.fullmatch(epic_field):
            msg = f"--option epic-link-field={epic_field!r}: a field id like customfield_10014"
            raise InvalidArgument(msg)
        #: The "Epic Link" fields' ids (``customfield_N``; it differs by site).
        self._epic_fields = {epic_field} if epic_field else set()
        #: Whether internal comments are imported as ordinary comments.
        self._import_internal = imports_internal_comments(options)

    def _person(self, user: dict[str, Any] | None) -> str:
        if not user:
            return ""
        key = str(user.get("name") or user.get("accountId") or user.get("key") or "")
        if not key:
            return ""
        if key not in self._people:
            self._people[key] = SourcePerson(
                key=key,
                username=str(user.get("name") or ""),
                email=str(user.get("emailAddress") or ""),
                display_name=str(user.get("displayName") or ""),
            )
        return key

    def people(self) -> Iterator[SourcePerson]:
        """The people the issues name (Jira reports e-mails where allowed)."""
        if not self._people:
            list(self.issues())
        yield from self._people.values()

    def _pages(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.root.glob("*.json")):
            if path.name.startswith("comments-"):
                continue
            try:
                page = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"{path}: not JSON: {exc}") from exc
            if not isinstance(page, dict) or "issues" not in page:
                raise InvalidArgument(f"{path}: not a Jira search result (no 'issues')")
            yield page

    def _extra_comments(self, key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for path in sorted(self.root.glob(f"comments-{key}*.json")):
            found.extend(json.loads(path.read_text(encoding="utf-8")).get("comments", []))
        return found

    def issues(self) -> Iterator[SourceIssue]:
        """Every issue of every page, by project and number."""
        items: list[dict[str, Any]] = []
        for page in self._pages():
            items += page["issues"]
            self._epic_fields |= _epic_link_fields(page)
        items.sort(
            key=lambda i: (str(i["key"]).rsplit("-", 1)[0], int(str(i["key"]).rsplit("-", 1)[1]))
        )
        for item in items:
            issue = self._issue(item)
            security = (item.get("fields") or {}).get("security")
            if security:
                # An issue security level: only the level's members read it in Jira.
                name = security.get("name") if isinstance(security, dict) else security
                issue = dataclasses.replace(
                    issue,
                    restricted=f"issue security level {str(name or '?')!r} (Jira shows it to "
                    "that level's members only)",
                )
            yield issue

    def _issue(self, item: dict[str, Any]) -> SourceIssue:
        fields = item["fields"]
        key = str(item["key"])
        resolution = (fields.get("resolution") or {}).get("name") or ""
        status = _status(str((fields.get("status") or {}).get("name") or ""), str(resolution))
        comments = list((fields.get("comment") or {}).get("comments") or [])
        known = {str(c.get("id")) for c in comments}
        comments += [c for c in self._extra_comments(key) if str(c.get("id")) not in known]
        comments = [c for c in comments if not self._withheld(key, c)]
        entries: list[tuple[datetime, int, SourceEntry]] = [
            (
                when(c["created"]),
                1,
                SourceEntry(
                    author=self._person(c.get("author")),
                    at=when(c["created"]),
                    comment=jira_to_markdown(str(c.get("body") or "")),
                ),
            )
            for c in comments
        ]
        histories = sorted(
            (item.get("changelog") or {}).get("histories") or [], key=lambda h: when(h["created"])
        )
        entries += self._history(histories, status)
        entries.sort(key=lambda e: (e[0], e[1]))
        base = str(item.get("self") or "").split("/rest/", 1)[0]
        components = fields.get("components") or []
        return SourceIssue(
            key=key,
            url=f"{base}/browse/{key}" if base else key,
            title=str(fields.get("summary") or key),
            description=jira_to_markdown(str(fields.get("description") or "")),
            reporter=self._person(fields.get("reporter") or fields.get("creator")),
            created_at=when(fields["created"]),
            modified_at=when(fields["updated"]) if fields.get("updated") else None,
            closed_at=when(fields["resolutiondate"]) if fields.get("resolutiondate") else None,
            status=status,
            priority=str((fields.get("priority") or {}).get("name") or "").lower(),
            type=str((fields.get("issuetype") or {}).get("name") or "").lower(),
            component=str(components[0]["name"]) if components else "",
            assignee=self._person(fields.get("assignee")),
            # A bugless issue has one component: the first is it, the others
            # are labels ``component:<name>`` (a hotlist or a custom field
            # by the mapping file, or listed as unmapped).
            labels=(
                *(str(label) for label in fields.get("labels") or []),
                *(f"component:{c['name']}" for c in components[1:]),
            ),
            entries=tuple(e for _, _, e in entries),
            attachments=tuple(
                self._attachment(a, base)
                for a in sorted(
                    fields.get("attachment") or [],
                    key=lambda a: (when(a["created"]), int(a["id"])),
                )
            ),
            relations=_relations(fields, self._epic_fields),
        )

    def _withheld(self, key: str, comment: dict[str, Any]) -> bool:
        """Whether the import leaves ``comment`` out (then it is noted, not read).

        bugless has no per-comment visibility: imported, a comment Jira shows
        to a role, a group or a service desk's agents only would be read by
        everyone who may read the issue.
        """
        why = withheld_because(comment, import_internal=self._import_internal)
        if why is not None:
            self.withheld[f"{key} comment {comment.get('id')}"] = why
        return why is not None

    def _attachment(self, attachment: dict[str, Any], base: str) -> SourceAttachment:
        """One of an issue's files; its bytes are read when ``bugless import`` copies it."""
        size = attachment.get("size")
        return SourceAttachment(
            name=str(attachment.get("filename") or f"attachment{attachment['id']}"),
            author=self._person(attachment.get("author")),
            at=when(attachment["created"]),
            size=int(size) if size is not None else -1,
            content_type=str(attachment.get("mimeType") or ""),
            open=functools.partial(self._content, attachment, base),
        )

    def _content(self, attachment: dict[str, Any], base: str) -> BinaryIO:
        """The export's ``attachments/ID/FILENAME``, else a GET of the ``content`` URL."""
        name = Path(str(attachment.get("filename") or "")).name  # no way out of the directory
        exported = self.root / "attachments" / str(int(attachment["id"])) / name
        if exported.is_file():
            return exported.open("rb")
        url = str(attachment.get("content") or "")
        if not url.startswith(("http://", "https://")):
            msg = f"{exported} is missing and the attachment has no content URL"
            raise OSError(msg)
        request = Request(url, headers={"Accept": "*/*"})
        if self._authorization and base and _origin(url) == _origin(base):
            # Not on to where Jira redirects (Jira Cloud's media store signs
            # its own URLs): only the Jira the issue names sees the token.
            request.add_unredirected_header("Authorization", self._authorization)

        return open_file(request, source="Jira", retries=self.retries)

    def _history(
        self, histories: list[dict[str, Any]], final_status: str
    ) -> list[tuple[datetime, int, SourceEntry]]:
        """Changelog histories as entries; status+resolution read as one status."""
        statuses = [i for h in histories for i in h.get("items", []) if i.get("field") == "status"]
        resolutions = [
            i for h in histories for i in h.get("items", []) if i.get("field") == "resolution"
        ]
        status = (
            str(statuses[0].get("fromString") or "")
            if statuses
            else final_status.split("/", maxsplit=1)[0]
        )
        resolution = (
            str(resolutions[0].get("fromString") or "")
            if resolutions
            else (final_status.split("/", 1)[1] if "/" in final_status else "")
        )
        out: list[tuple[datetime, int, SourceEntry]] = []
        for history in histories:
            at = when(history["created"])
            author = self._person(history.get("author"))
            changes: list[SourceChange] = []
            relations: list[SourceRelationChange] = []
            before = _status(status, resolution)
            for change in history.get("items", []):
                name = change.get("field")
                old, new = str(change.get("fromString") or ""), str(change.get("toString") or "")
                if name == "Link" or name in _PARENT_FIELDS:
                    relations += _relation_changes(str(name), change)
                elif name == "status":
                    status = new
                elif name == "resolution":
                    resolution = new
                elif name == "assignee":
                    changes.append(
                        SourceChange(
                            "assignee",
                            old=str(change.get("from") or ""),
                            new=str(change.get("to") or ""),
                        )
                    )
                elif name == "priority":
                    changes.append(SourceChange("priority", old=old.lower(), new=new.lower()))
                elif name == "issuetype":
                    changes.append(SourceChange("type", old=old.lower(), new=new.lower()))
                elif name == "summary":
                    changes.append(SourceChange("title", old=old, new=new))
                elif name == "Component" and old and new:
                    changes.append(SourceChange("component", old=old, new=new))
                elif name == "Component":
                    # Jira adds and removes components one by one (a multi-valued
                    # field): bookkept as the ``component:`` labels above.
                    changes.append(
                        SourceChange(
                            "labels",
                            added=(f"component:{new}",) if new else (),
                            removed=(f"component:{old}",) if old else (),
                        )
                    )
            after = _status(status, resolution)
            if after != before:
                changes.insert(0, SourceChange("status", old=before, new=after))
            if changes or relations:
                entry = SourceEntry(
                    author=author, at=at, changes=tuple(changes), relations=tuple(relations)
                )
                out.append((at, 0, entry))
        return out


def _relation_changes(name: str, item: dict[str, Any]) -> list[SourceRelationChange]:
    """A changelog item's relation changes: a link added or removed, a parent or epic changed.

    A "Link" item names the other issue in ``to`` (added) or ``from``
    (removed), with the link's phrase in ``toString``/``fromString``; a
    parent's and an epic's items give the keys in ``fromString``/``toString``.
    """
    found: list[SourceRelationChange] = []
    if name == "Link":
        for side, removed in (("from", True), ("to", False)):
            key, text = str(item.get(side) or ""), str(item.get(f"{side}String") or "")
            phrase = text.removeprefix("This issue ").removesuffix(key).strip()
            kind = _HISTORY_PHRASES.get(phrase.lower())
            if kind and _KEY.match(key):
                found.append(SourceRelationChange(kind[0], key, kind[1], removed=removed))
        return found
    for side, removed in (("fromString", True), ("toString", False)):
        key = str(item.get(side) or "")
        if _KEY.match(key):
            found.append(SourceRelationChange("parent", key, removed=removed))
    return found


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _authorization(options: dict[str, str]) -> str:
    """The ``Authorization`` header for attachment downloads ("" without a token)."""
    token = secret_option(options, "token-file", "JIRA_TOKEN")
    if not token:
        return ""
    user = options.get("user", "")
    if user:
        return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode("ascii")
    return f"Bearer {token}"


def _epic_link_fields(page: dict[str, Any]) -> set[str]:
    """The ids of the "Epic Link" fields a search page names (``expand=names,schema``)."""
    names = page.get("names") or {}
    schema = page.get("schema") or {}
    return {
        str(field)
        for field in (*names, *schema)
        if names.get(field) == "Epic Link"
        or (schema.get(field) or {}).get("custom") == _EPIC_LINK_TYPE
    }


def _relations(fields: dict[str, Any], epic_fields: set[str]) -> tuple[SourceRelation, ...]:
    """The issue's parent, epic, sub-tasks and issue links, as seen from the issue."""
    found: list[SourceRelation] = []
    parent = (fields.get("parent") or {}).get("key")
    if parent:
        found.append(SourceRelation("parent", str(parent)))
    for field in sorted(epic_fields):
        # The epic's key ("ROCK-1"); an epic child that also has the newer
        # ``parent`` names the same epic, and the import sets it once.
        epic = fields.get(field)
        if isinstance(epic, str) and epic and epic != parent:
            found.append(SourceRelation("parent", epic))
    found += [
        SourceRelation("parent", str(sub["key"]), reverse=True)
        for sub in fields.get("subtasks") or []
        if sub.get("key")
    ]
    for link in fields.get("issuelinks") or []:
        kind, turned, type_name = link_meaning(link.get("type") or {})
        if (link.get("outwardIssue") or {}).get("key"):
            target, reverse = str(link["outwardIssue"]["key"]), turned
        elif (link.get("inwardIssue") or {}).get("key"):
            target, reverse = str(link["inwardIssue"]["key"]), not turned
        else:
            continue
        found.append(SourceRelation(kind, target, reverse, type_name=type_name))
    return tuple(found)


def link_meaning(link_type: dict[str, Any]) -> tuple[str, bool, str]:
    """What an issue link of ``link_type`` is: (kind, reverse, the type's name to report).

    ``kind`` and ``reverse`` say what "outward issue" means ("this issue
    <outward phrase> the outward issue"). By the type's phrases where they
    are clear: one of them in :data:`_PHRASES` and the other its converse
    or a phrase it does not know; else, with neither phrase known, by the
    stock names ``Blocks`` and ``Duplicate``. Any other type (its phrases
    unknown or contradicting each other: "blocks" / "duplicates") keeps its
    outward phrase as a kind bugless does not hold, and its name, for the
    report. The name is "" for the stock types read as such (the report
    needs no name to tell them apart).
    """
    name = str(link_type.get("name") or "")
    outward = " ".join(str(link_type.get("outward") or "").lower().split())
    inward = " ".join(str(link_type.get("inward") or "").lower().split())
    out_meaning, in_meaning = _PHRASES.get(outward), _PHRASES.get(inward)
    meaning = None
    if out_meaning and in_meaning in (None, (out_meaning[0], not out_meaning[1])):
        meaning = out_meaning
    elif in_meaning and out_meaning is None:
        meaning = (in_meaning[0], not in_meaning[1])
    elif out_meaning is None and name.lower() in _LINKS:
        meaning = (_LINKS[name.lower()], False)
    if meaning is None:
        phrase = outward or name.lower() or "linked to"
        if phrase in RELATION_KINDS:  # "blocks" / "duplicates": not a blocking link
            phrase = f"{outward} / {inward}"
        return phrase, False, name or "(unnamed)"
    stock = name.lower() in _LINKS and meaning == (_LINKS[name.lower()], False)
    return meaning[0], meaning[1], "" if stock else name
