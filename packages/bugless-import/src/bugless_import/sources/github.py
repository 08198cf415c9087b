"""GitHub Issues, from the JSON ``gh api --paginate`` writes (no network needed).

LOCATION is a directory holding, for one repository::

    issues.json      gh api --paginate 'repos/ORG/REPO/issues?state=all&direction=asc'
    comments.json    gh api --paginate 'repos/ORG/REPO/issues/comments?direction=asc'
    timeline/N.json  gh api --paginate repos/ORG/REPO/issues/N/timeline   (optional, per issue)
    sub_issues/N.json  gh api --paginate repos/ORG/REPO/issues/N/sub_issues   (optional)
    blocked_by/N.json  gh api --paginate repos/ORG/REPO/issues/N/dependencies/blocked_by
                                                                          (optional)

``--paginate`` writes one JSON array per page, back to back; each file may
hold any number of them. Pull requests (items with ``pull_request``) are
skipped: the issues endpoint lists them too. A deleted account (``user:
null``) is GitHub's ``ghost``. A locked issue gets the label
``locked:<reason>`` (map it to a hotlist if it matters). Times are ISO 8601
with their offset. Bodies are already Markdown.

Timeline events become history: ``closed`` (with ``state_reason``) and
``reopened`` change the status, ``assigned``/``unassigned`` the assignee,
``renamed`` the title, ``labeled``/``unlabeled`` the labels.

Relations: an issue's sub-issues (``sub_issues/N.json``) become its
sub-issues in bugless, and the issues it is blocked by
(``blocked_by/N.json``, GitHub's issue dependencies) block it; either may be
in another repository (``OTHER/REPO#N``, set when that one is imported too).
GitHub's REST API names no issue a duplicate is a duplicate of (the
``marked_as_duplicate`` event has no target): a ``closed/duplicate`` issue
gets its status, not a ``duplicate of``.

Relation history: the timeline's ``parent_issue_added``/``_removed`` events
of a sub-issue and ``blocked_by_added``/``_removed`` of a blocked issue are
its entries' relation changes. GitHub's REST page "Issue event types"
(docs.github.com/en/rest/using-the-rest-api/issue-event-types) does not list
these four; the names are those of its GraphQL reference
(``ParentIssueAddedEvent``: "Represents a 'parent_issue_added' event on a
given issue", ``BlockedByAddedEvent``: "... a 'blocked_by_added' event") and
of its ``sub_issues`` and ``issue_dependencies`` webhooks' actions. The other
issue is read from the event's ``parent_issue`` (the webhook's name) or
``parent`` (GraphQL's field), and ``blocking_issue`` (both), an issue object
(its ``repository_url``, else ``html_url``, and ``number``). An event naming
no issue there is not read, and the report names it ("source records in a
shape the importer does not know") with the fields it has: the relation as
it is now still comes from ``sub_issues/`` and ``blocked_by/``. GitHub logs
each on both issues: the parent's ``sub_issue_added`` and the blocker's
``blocking_added`` are the same changes, which the Model writes on those
issues.

What that REST page does document names no relation bugless holds:
``marked_as_duplicate`` and ``unmarked_as_duplicate`` have only the
properties every event has (no issue it duplicates: a ``closed/duplicate``
issue gets its status, not a ``duplicate of``), ``connected`` and
``disconnected`` (an issue linked to a pull request, which is not imported)
likewise, and ``cross-referenced`` names in ``source[issue]`` an issue that
mentioned this one, a mention, not a relation. None of them is a relation
change in the history, nor a record the report calls unknown.

GitHub has no attachments API: a file pasted into an issue or a comment is
a link in its Markdown (or an ``<img src>``) to ``/user-attachments/assets/``
or ``/user-attachments/files/`` on the repository's host, to
``OWNER/REPO/assets/`` or ``OWNER/REPO/files/`` there, or to
``user-images.githubusercontent.com`` (before 2024). Each is copied as an
attachment of what links it: the comment's own entry, or for the
description an entry of the reporter at the issue's creation, and the link
in the text then points at the copy in bugless (``/imported?...&file=``).
The file is named by its link's text when that looks like a file name
(``[launch.log](...)``), else by the URL's last segment. Options:

* ``token-file=PATH``: a file holding a GitHub token (or ``GITHUB_TOKEN`` in
  the environment), sent as ``Authorization: Bearer`` to the repository's
  host only, never on to where it redirects (the files' storage); files of
  a private repository need it. A file GitHub refuses is reported and its
  link kept as written.
* ``retries=N``: how often a download that failed for now is asked again
  (default 4).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit
from urllib.request import Request

from bugless_core.errors import InvalidArgument
from bugless_core.importer import (
    Importer,
    SourceAttachment,
    SourceChange,
    SourceEntry,
    SourceIssue,
    SourcePerson,
    SourceRelation,
    SourceRelationChange,
)
from bugless_core.issue_references import EXTERNAL_ID, imported_link
from bugless_import.sources._http import open_file, retry_count, secret_option

#: Timeline events that add or remove a relation, as the issue that holds it
#: sees it -> (the event's fields that may name the other issue, kind,
#: reverse, removed). GitHub logs each on both issues: the sub-issue's and
#: the blocked issue's events are read, and the Model writes the other side
#: (``sub_issue_added`` and ``blocking_added`` would repeat them). The names
#: are GitHub's GraphQL reference's (``ParentIssueAddedEvent`` "represents a
#: 'parent_issue_added' event"; its field ``parent``, ``BlockedByAddedEvent``'s
#: ``blockingIssue``) and its webhooks' (``parent_issue``, ``blocking_issue``):
#: the REST "Issue event types" page lists none of the four.
_RELATION_EVENTS: dict[str, tuple[tuple[str, ...], str, bool, bool]] = {
    "parent_issue_added": (("parent_issue", "parent"), "parent", False, False),
    "parent_issue_removed": (("parent_issue", "parent"), "parent", False, True),
    "blocked_by_added": (("blocking_issue",), "blocks", True, False),
    "blocked_by_removed": (("blocking_issue",), "blocks", True, True),
}
#: Fields every timeline event has (GitHub's "issue event object common
#: properties"): not what names the other issue of a relation event.
_EVENT_COMMON = frozenset(
    {"id", "node_id", "url", "actor", "event", "commit_id", "commit_url", "created_at",
     "performed_via_github_app"}
)  # fmt: skip
#: A label that names a file: ``launch.log``, not ``image`` or ``screenshot``.
_FILE_NAME = re.compile(r"[^\s/\\]+\.[A-Za-z0-9]{1,10}")


def linked_file_pattern(origin: str) -> re.Pattern[str]:
    """The links to files pasted into the text of a repository at ``origin``.

    ``origin`` is the repository's ``scheme://host`` (``https://github.com``,
    or a GitHub Enterprise Server's). Groups: ``label`` (the Markdown link's
    text, if the URL is one's target) and ``url``.
    """
    host = re.escape(origin.rstrip("/"))
    url = (
        rf"(?:{host}/(?:user-attachments/(?:assets|files)/|[\w.-]+/[\w.-]+/(?:assets|files)/)"
        r"|https://(?:private-)?user-images\.githubusercontent\.com/)[^\s)\]\"'<>]+"
    )
    # The label is the innermost brackets': "[^\]\n]*" made each "[" of a
    # run of them scan to the line's end (quadratic on a 64 KiB comment).
    return re.compile(rf"(?:!?\[(?P<label>[^\[\]\n]*)\]\()?(?P<url>{url})")


def read_pages(path: Path) -> list[Any]:
    """Every item of every JSON array in a ``gh api --paginate`` output file."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    items: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return items
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{path}: not gh api JSON output: {exc}") from exc
        items.extend(value if isinstance(value, list) else [value])


def when(text: str) -> datetime:
    """An ISO 8601 time with its offset (``Z`` or ``+02:00``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _login(user: dict[str, Any] | None) -> str:
    return str(user["login"]) if user else "ghost"


def _status(state: str, reason: str | None) -> str:
    if state == "open":
        return "open"
    return f"closed/{reason}" if reason else "closed"


class GitHubImporter(Importer):
    """``bugless import github DIR``: an exported repository's issues."""

    name = "github"
    description = "GitHub Issues from `gh api --paginate` JSON files (issues, comments, timeline)"
    default_mapping = {
        "statuses": {
            "open": "NEW",
            "closed": "FIXED",
            "closed/completed": "FIXED",
            "closed/not_planned": "WONT_FIX_OBSOLETE",
            "closed/duplicate": "DUPLICATE",
            "closed/reopened": "FIXED",
        },
    }

    def __init__(self, location: str, options: dict[str, str]) -> None:
        """Read from the directory ``location``."""
        super().__init__(location, options)
        self.root = Path(location)
        if not (self.root / "issues.json").is_file():
            raise InvalidArgument(f"{location}: no issues.json (see `bugless import --help`)")
        self._users: dict[str, SourcePerson] = {}
        try:
            self.retries = retry_count(options.get("retries"))
        except ValueError as exc:
            raise InvalidArgument(f"--option {exc}") from exc
        self._token = secret_option(options, "token-file", "GITHUB_TOKEN")

    def references_in(self, issue: SourceIssue) -> Callable[[str], str]:
        """``#N`` in ``issue``'s text: issue N of ``issue``'s own repository.

        Not of the repository read last: ``issues.json`` may hold several
        repositories' issues (their ``--paginate`` outputs back to back), whose
        numbers overlap.
        """
        repository = issue.key.rsplit("#", 1)[0]
        page = issue.url.rsplit("/issues/", 1)[0]

        def link(number: str) -> str:
            source = f"{page}/issues/{number}"
            external_id = self.key_external_id(f"{repository}#{number}")
            if EXTERNAL_ID.fullmatch(external_id):
                return imported_link(external_id, source)
            return source

        return link

    def _person(self, user: dict[str, Any] | None) -> str:
        login = _login(user)
        if login not in self._users:
            self._users[login] = SourcePerson(
                key=login, username=login, email=str((user or {}).get("email") or "")
            )
        return login

    def people(self) -> Iterator[SourcePerson]:
        """The people of the issues read so far (GitHub shows no e-mails)."""
        if not self._users:
            list(self.issues())
        yield from self._users.values()

    def _comments(self) -> dict[str, list[dict[str, Any]]]:
        path = self.root / "comments.json"
        by_issue: dict[str, list[dict[str, Any]]] = {}
        if path.is_file():
            for comment in read_pages(path):
                by_issue.setdefault(str(comment["issue_url"]), []).append(comment)
        return by_issue

    def _timeline(self, number: int) -> list[dict[str, Any]]:
        path = self.root / "timeline" / f"{number}.json"
        return read_pages(path) if path.is_file() else []

    def _relations(self, number: int) -> tuple[SourceRelation, ...]:
        """Its sub-issues and the issues blocking it, from the optional files."""
        found: list[SourceRelation] = []
        for folder, kind in (("sub_issues", "parent"), ("blocked_by", "blocks")):
            path = self.root / folder / f"{number}.json"
            for other in read_pages(path) if path.is_file() else []:
                repo = str(other["repository_url"]).split("/repos/", 1)[-1]
                found.append(SourceRelation(kind, f"{repo}#{int(other['number'])}", reverse=True))
        return tuple(found)

    def issues(self) -> Iterator[SourceIssue]:
        """The issues in number order, pull requests left out."""
        comments = self._comments()
        items = [i for i in read_pages(self.root / "issues.json") if "pull_request" not in i]
        for item in sorted(items, key=lambda i: int(i["number"])):
            yield self._issue(item, comments.get(str(item["url"]), []))

    def _issue(self, item: dict[str, Any], comments: list[dict[str, Any]]) -> SourceIssue:
        repo = str(item["repository_url"]).split("/repos/", 1)[-1]
        number = int(item["number"])
        reporter = self._person(item.get("user"))
        created_at = when(item["created_at"])
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(str(item["html_url"])))
        entries: list[tuple[datetime, int, SourceEntry]] = []
        for comment in comments:
            author = self._person(comment.get("user"))
            at = when(comment["created_at"])
            body = str(comment.get("body") or "")
            entries.append(
                (
                    at,
                    0,
                    SourceEntry(
                        author=author,
                        at=at,
                        comment=body,
                        attachments=self._linked(body, origin, author, at),
                    ),
                )
            )
        entries += self._events(number, item)
        entries.sort(key=lambda e: (e[0], e[1]))
        labels = [str(label["name"]) for label in item.get("labels") or []]
        if item.get("locked"):
            labels.append(f"locked:{item.get('active_lock_reason') or 'locked'}")
        return SourceIssue(
            key=f"{repo}#{number}",
            url=str(item["html_url"]),
            title=str(item["title"]),
            description=str(item.get("body") or ""),
            reporter=reporter,
            created_at=created_at,
            modified_at=when(item["updated_at"]) if item.get("updated_at") else None,
            closed_at=when(item["closed_at"]) if item.get("closed_at") else None,
            status=_status(str(item["state"]), item.get("state_reason")),
            assignee=self._person(item["assignee"]) if item.get("assignee") else "",
            labels=tuple(labels),
            entries=tuple(e for _, _, e in entries),
            relations=self._relations(number),
            attachments=self._linked(str(item.get("body") or ""), origin, reporter, created_at),
        )

    def _linked(
        self, text: str, origin: str, author: str, at: datetime
    ) -> tuple[SourceAttachment, ...]:
        """The files ``text`` links, each once, in the order it links them."""
        found: dict[str, SourceAttachment] = {}
        for match in linked_file_pattern(origin).finditer(text):
            url = match.group("url")
            if url in found:
                continue
            label = (match.group("label") or "").strip()
            segment = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
            name = label if _FILE_NAME.fullmatch(label) else segment or "attachment"
            found[url] = SourceAttachment(
                name=name,
                author=author,
                at=at,
                link=url,
                open=functools.partial(self._download, url, origin),
            )
        return tuple(found.values())

    def _download(self, url: str, origin: str) -> BinaryIO:
        """GET a linked file; the token only to the repository's host, not where it redirects."""
        request = Request(url, headers={"Accept": "*/*"})
        if self._token and url.startswith(origin + "/"):
            request.add_unredirected_header("Authorization", f"Bearer {self._token}")

        return open_file(request, source="GitHub", retries=self.retries)

    def _events(self, number: int, item: dict[str, Any]) -> list[tuple[datetime, int, SourceEntry]]:
        """Status, assignee and title changes from the timeline, with old values."""
        events = [e for e in self._timeline(number) if e.get("created_at")]
        status = "open"
        assignee = ""
        title_changes = [e for e in events if e.get("event") == "renamed"]
        title = str(title_changes[0]["rename"]["from"]) if title_changes else str(item["title"])
        out: list[tuple[datetime, int, SourceEntry]] = []
        for n, event in enumerate(events, start=1):
            kind = event.get("event")
            actor = self._person(event.get("actor"))
            at = when(event["created_at"])
            change: SourceChange | None = None
            if kind == "closed":
                new = _status("closed", event.get("state_reason"))
                change, status = SourceChange("status", old=status, new=new), new
            elif kind == "reopened":
                change, status = SourceChange("status", old=status, new="open"), "open"
            elif kind == "assigned":
                new = self._person(event.get("assignee"))
                change, assignee = SourceChange("assignee", old=assignee, new=new), new
            elif kind == "unassigned" and assignee:
                change, assignee = SourceChange("assignee", old=assignee, new=""), ""
            elif kind == "renamed":
                new = str(event["rename"]["to"])
                change, title = SourceChange("title", old=title, new=new), new
            elif kind in {"labeled", "unlabeled"} and (event.get("label") or {}).get("name"):
                name = (str(event["label"]["name"]),)
                added = kind == "labeled"
                change = SourceChange(
                    "labels", added=name if added else (), removed=() if added else name
                )
            if change is not None:
                out.append((at, n, SourceEntry(author=actor, at=at, changes=(change,))))
            elif kind in _RELATION_EVENTS:
                relation = _relation_change(event, str(item["repository_url"]))
                last = out[-1][2] if out else None
                if relation is None:
                    self._not_understood(number, item, event)
                    continue
                if last and (last.at, last.author, last.changes) == (at, actor, ()):
                    # A move to another parent is two events of one moment:
                    # one entry, as bugless makes it one change.
                    merged = SourceEntry(author=actor, at=at, relations=(*last.relations, relation))
                    out[-1] = (at, out[-1][1], merged)
                else:
                    out.append((at, n, SourceEntry(author=actor, at=at, relations=(relation,))))
        return out

    def _not_understood(self, number: int, item: dict[str, Any], event: dict[str, Any]) -> None:
        """Note a relation event that names no issue where :data:`_RELATION_EVENTS` looks.

        GitHub's REST documentation does not list these events (the names
        read are its GraphQL reference's and webhooks'); if the timeline names the other issue
        elsewhere, the run's report says so instead of the history losing the
        change unnoticed. The relation as it is now still comes from
        ``sub_issues/`` and ``blocked_by/``.
        """
        repo = str(item["repository_url"]).split("/repos/", 1)[-1]
        fields = " or ".join(repr(f) for f in _RELATION_EVENTS[str(event["event"])][0])
        keys = ", ".join(sorted(k for k in event if k not in _EVENT_COMMON)) or "none"
        self.not_understood[f"{repo}#{number} timeline event {event.get('id', '?')}"] = (
            f"{event['event']} of {event.get('created_at')} names no issue in {fields} "
            f"(its other fields: {keys}); the change is not in the history, the relation "
            "as it is now is set from sub_issues/ and blocked_by/"
        )


def _issue_key(other: Any, repository_url: str) -> str:
    """``OWNER/REPO#N`` of an issue object an event names ("" if it names none).

    Its repository from its ``repository_url`` (the API's), else its
    ``html_url``, else the repository of the issue whose timeline it is in.
    """
    if not isinstance(other, dict) or not str(other.get("number") or "").isdigit():
        return ""
    number = int(other["number"])
    if other.get("repository_url"):
        repo = str(other["repository_url"]).split("/repos/", 1)[-1]
    elif "/issues/" in str(other.get("html_url") or ""):
        repo = urlsplit(str(other["html_url"])).path.strip("/").rsplit("/issues/", 1)[0]
    else:
        repo = repository_url.split("/repos/", 1)[-1]
    return f"{repo}#{number}"


def _relation_change(event: dict[str, Any], repository_url: str) -> SourceRelationChange | None:
    """A sub-issue's or a blocked issue's timeline event as the relation change it made.

    None for an event that names no other issue (nothing to import it by).
    """
    fields, kind, reverse, removed = _RELATION_EVENTS[str(event["event"])]
    key = next((k for k in (_issue_key(event.get(f), repository_url) for f in fields) if k), "")
    return SourceRelationChange(kind, key, reverse, removed=removed) if key else None
