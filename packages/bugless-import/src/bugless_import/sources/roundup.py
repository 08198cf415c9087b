r"""Roundup, read over its REST interface (``/rest/data/...``).

LOCATION is the tracker's web address (``https://bugs.example.org/tracker/``,
the ``[tracker] web`` of its ``config.ini``). Options:

* ``user=NAME`` and ``password-file=PATH``: an account that may view users
  and issues (an Admin sees e-mail addresses, which match people best). The
  importer signs in once through the web login form and reuses the session
  cookie: Roundup's basic authentication re-hashes the password (PBKDF2) on
  every request. Without ``user`` it reads as the anonymous user.
* ``history=journal`` (the default) or ``history=messages``.
* ``retries=N``: how often a read that failed for now (429, 500, 502, 503,
  504, a network error) is repeated, after 0.5, 1, 2, 4 ... seconds or what
  ``Retry-After`` asks (default 4; 0 fails at once).
* ``tracker=NAME``: names the tracker in external ids (``roundup:NAME#12``),
  so that two trackers' issue 12 stay apart; by default the address's host
  and path (``roundup:bugs.example.org/tracker#12``).

What REST gives directly: issues (``title``, ``status``, ``priority``,
``assignedto``, ``nosy``, ``keyword``, ``messages``), messages (author, date,
content), users, statuses, priorities, keywords. What it does not give is an
item's *journal* (Roundup's history of changes: who changed which property
when, with the value before). Roundup documents how a tracker adds REST
endpoints (``doc/rest.txt``, "Adding new rest endpoints": a tracker's
``interfaces.py``); :data:`INTERFACES_PY` is such an endpoint, ``GET
/rest/history/<class>/<id>``, which returns ``Class.history()`` with
Roundup's own permission checks. Append it to the tracker's
``interfaces.py``::

    python -c 'from bugless_import.sources.roundup import INTERFACES_PY; print(INTERFACES_PY)' \\
        >> TRACKER/interfaces.py

A tracker without it fails the import with that hint, unless
``history=messages`` accepts less: each message then becomes a comment at its
date by its author, and only the current field values are imported.

Roundup keeps no "private" flag: a tracker restricts items by its schema's
``View`` permissions (a check function per item). The same ``interfaces.py``
adds ``GET /rest/bugless_hidden/<class>``, which asks them inside Roundup
for a reader with the roles new users get and no tie to any item
(:mod:`._roundup_endpoint`): an issue that reader may not view is restricted
(left out, or put into ``--restricted-component``), and a message or file it
may not view is left out and named in the report, its text never sent.
Without that endpoint (an older ``interfaces.py``, or none with
``history=messages``) the run stops before anything is written, saying what
to append, unless ``restrictions=unchecked`` says the tracker's schema
restricts no item: everything is then imported as the account sees it.

Roundup's journal stores each change's *previous* value (multilinks as the
ids added and removed), so the importer walks it back from the current values
to name old and new for every change. Messages added in one change are that
entry's comment; the first message of the issue is its description. Keywords
become labels; classic's ``priority`` (critical ... wish) maps to P0 ... P4.
People are keyed by username; a retired user (whom REST no longer lists, but
still answers for by id) is read by id where an issue names them, so their
history keeps their name and address instead of becoming ``ghost``'s. An
issue's files (REST ``file`` class: name, type, creator, creation) are
copied, their bytes read from ``/rest/data/file/N/binary_content``.

Relations: classic's ``superseder`` (a multilink to the issues that
supersede this one: it is their duplicate, as the classic templates'
"Superseder" and bugs.python.org's "duplicate" resolution use it) makes the
issue a duplicate of its superseder. bugless holds one: with several, the
lowest-numbered is set and the report names the others. ``blockers`` (the
customisation Roundup's documentation shows, "Blocking issues") and
``dependencies`` (bugs.python.org's; the devel template's), multilinks to
the issues this one waits for, make those issues block it. A property the
tracker's schema lacks imports no relation of its kind; one a schema
declares as a ``Link`` (one issue) is read as its one id. The journal's
changes of these properties (the issue holding them logs them) are the
entries' relation changes, kept in the imported history.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from http.client import HTTPException
from http.cookiejar import CookieJar
from typing import Any, BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin
from urllib.request import HTTPCookieProcessor, Request, build_opener

from bugless_core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from bugless_core.importer import (
    Importer,
    SourceAttachment,
    SourceEntry,
    SourceIssue,
    SourcePerson,
    SourceRelation,
)
from bugless_import.sources._http import open_file, read_with_retries, retry_count, secret_option
from bugless_import.sources._roundup_endpoint import INTERFACES_PY, UNCHECKED, hidden_items
from bugless_import.sources._roundup_journal import (
    BLOCKED_BY,
    LINKS,
    MULTILINKS,
    RELATION_PROPERTIES,
    link_id,
    multilink_ids,
    roundup_date,
    undo_record,
)

__all__ = ["INTERFACES_PY", "RoundupImporter", "roundup_date"]

_ISSUE_FIELDS = (
    "title,status,priority,assignedto,nosy,keyword,messages,files,creation,activity,creator"
)
_PAGE = 500


class _Users(dict[str, str]):
    """User id -> username; an id the listing lacks (a retired user) is read when asked for."""

    def __init__(self, listed: dict[str, str], read: Callable[[str], str]) -> None:
        super().__init__(listed)
        self._read = read
        self._unknown: set[str] = set()

    def _known(self, user_id: object) -> bool:
        key = str(user_id)
        if not dict.__contains__(self, key) and key and key not in self._unknown:
            username = self._read(key)
            if username:
                self[key] = username
            else:
                self._unknown.add(key)
        return dict.__contains__(self, key)

    def __contains__(self, user_id: object) -> bool:
        return self._known(user_id)

    def get(self, user_id: str, default: str = "") -> str:  # type: ignore[override]
        return self[user_id] if self._known(user_id) else default


class RoundupImporter(Importer):
    """``bugless import roundup URL``: a Roundup tracker over REST."""

    name = "roundup"
    description = "Roundup over its REST interface (the journal through a small REST endpoint)"
    default_mapping = {
        "statuses": {
            "unread": "NEW",
            "deferred": "NEW",
            "chatting": "ASSIGNED",
            "need-eg": "ASSIGNED",
            "in-progress": "ACCEPTED",
            "testing": "ACCEPTED",
            "done-cbb": "FIXED",
            "resolved": "FIXED",
        },
        "priorities": {
            "critical": "P0",
            "urgent": "P1",
            "bug": "P2",
            "feature": "P3",
            "wish": "P4",
        },
    }

    def __init__(self, location: str, options: dict[str, str]) -> None:
        """Remember the tracker's address; sign in on first use."""
        super().__init__(location, options)
        if not location.startswith(("http://", "https://")):
            raise InvalidArgument(f"{location}: a Roundup tracker's web address (http[s]://...)")
        self.base = location.rstrip("/") + "/"
        history = options.get("history", "journal")
        if history not in {"journal", "messages"}:
            raise InvalidArgument("--option history= takes journal or messages")
        self.journal = history == "journal"
        #: ``restrictions=unchecked``: no endpoint asked (a schema restricting nothing).
        self.unchecked = options.get("restrictions", "checked") == "unchecked"
        if options.get("restrictions", "checked") not in {"checked", "unchecked"}:
            raise InvalidArgument("--option restrictions= takes checked or unchecked")
        try:
            self.retries = retry_count(options.get("retries"))
        except ValueError as exc:
            raise InvalidArgument(f"--option {exc}") from exc
        self.tracker = options.get("tracker") or self.base.split("://", 1)[1].rstrip("/")
        #: ``password-file``'s content, read now: a file that cannot be read is
        #: refused before the run connects anywhere.
        self._password = secret_option(options, "password-file")
        self._cookies = CookieJar()
        self._opener = build_opener(HTTPCookieProcessor(self._cookies))
        self._signed_in = False
        self._names: dict[str, dict[str, str]] = {}
        #: Retired users the issues named, by id (read one by one: REST lists none).
        self._retired: dict[str, SourcePerson] = {}
        #: Per class, the ids the tracker's ordinary readers may not view.
        self._hidden: dict[str, frozenset[str]] = {}

    def _headers(self) -> dict[str, str]:
        # Roundup's CSRF defences want these on the login POST (doc/rest.txt).
        origin = self.base.split("/", 3)
        return {
            "X-Requested-With": "rest",
            "Origin": "/".join(origin[:3]),
            "Referer": self.base,
            "Accept": "application/json",
        }

    def _sign_in(self) -> None:
        if self._signed_in:
            return
        self._signed_in = True
        user = self.options.get("user", "")
        if not user:
            return
        if not self.options.get("password-file"):
            raise InvalidArgument("--option user= needs --option password-file=PATH")
        password = self._password
        form = urlencode(
            {"__login_name": user, "__login_password": password, "@action": "login"}
        ).encode()
        try:
            with self._opener.open(Request(self.base, form, self._headers()), timeout=60) as r:
                r.read()
        except (HTTPError, URLError) as exc:
            raise FailedPrecondition(f"signing in to {self.base}: {exc}") from exc
        if not any(c.name.startswith("roundup_session") for c in self._cookies):
            raise PermissionDenied(f"{self.base}: Roundup refused the sign-in of {user!r}")

    def get(self, path: str, **query: object) -> Any:
        """GET ``/rest/<path>`` and its ``data`` (None on 404)."""
        self._sign_in()
        url = urljoin(self.base, "rest/" + path)
        if query:
            url += "?" + urlencode(query)
        request = Request(url, headers=self._headers())

        def fetch() -> bytes:
            with self._opener.open(request, timeout=120) as response:
                body: bytes = response.read()
                return body

        try:
            return json.loads(read_with_retries(fetch, retries=self.retries))["data"]
        except HTTPError as exc:
            if exc.code == 404:
                return None
            detail = exc.read()[:300].decode("utf-8", "replace")
            if exc.code in {401, 403}:
                raise PermissionDenied(f"Roundup refused {url}: {detail}") from exc
            raise FailedPrecondition(f"Roundup answered {exc.code} for {url}: {detail}") from exc
        except (URLError, OSError, HTTPException) as exc:
            raise FailedPrecondition(f"{url}: {getattr(exc, 'reason', exc)}") from exc

    def collection(self, klass: str, fields: str) -> Iterator[dict[str, Any]]:
        """Every item of a class with ``fields``, page by page, in id order."""
        index = 1
        while True:
            page = self.get(
                f"data/{klass}", **{"@fields": fields, "@page_size": _PAGE, "@page_index": index}
            )
            items = (page or {}).get("collection", [])
            yield from items
            if len(items) < _PAGE:
                return
            index += 1

    def names(self, klass: str) -> dict[str, str]:
        """Map ids to names (usernames for users) of a class's items, read once."""
        if klass not in self._names:
            label = "username" if klass == "user" else "name"
            self._names[klass] = {
                str(item["id"]): str(item.get(label) or "")
                for item in self.collection(klass, label)
            }
        return self._names[klass]

    def people(self) -> Iterator[SourcePerson]:
        """The tracker's users (addresses where the account may see them).

        Read after :meth:`issues`, this includes the retired users they named.
        """
        listed: set[str] = set()
        for item in self.collection("user", "username,realname,address"):
            username = str(item.get("username") or "")
            if username and username != "anonymous":
                listed.add(username)
                yield SourcePerson(
                    key=username,
                    username=username,
                    email=str(item.get("address") or ""),
                    display_name=str(item.get("realname") or ""),
                )
        for person in self._retired.values():
            if person.key not in listed:
                listed.add(person.key)
                yield person

    def issue_url(self, number: str) -> str:
        """``<tracker>/issueN``: ``issueN`` and ``issue N`` name issues in Roundup."""
        return f"{self.base}issue{number}"

    def issue_external_id(self, number: str) -> str:
        """``roundup:TRACKER#N``, as :meth:`issues` keys."""
        return f"{self.name}:{self.tracker}#{number}"

    def _retired_user(self, user_id: str) -> str:
        """The username of a user the listing lacks (retired); "" if unknown."""
        data = self.get(f"data/user/{user_id}", **{"@fields": "username,realname,address"})
        attributes: dict[str, Any] = (data or {}).get("attributes") or {}
        username = str(attributes.get("username") or "")
        if username and username != "anonymous":
            self._retired[user_id] = SourcePerson(
                key=username,
                username=username,
                email=str(attributes.get("address") or ""),
                display_name=str(attributes.get("realname") or ""),
            )
        return username

    def issue_properties(self) -> frozenset[str]:
        """The properties of the tracker's issue class the account may read.

        REST has no schema request, and a listing's ``@fields`` naming a
        property the schema lacks is answered 400 (naming only the first),
        so one property was asked per request. An issue read without
        ``@fields`` gives every property the account may view: the first
        listed issue is read whole, two requests for any number of
        optional properties (one if the tracker has no issue).
        """
        listed = (self.get("data/issue", **{"@page_size": 1}) or {}).get("collection") or []
        if not listed:
            return frozenset()
        item = self.get(f"data/issue/{listed[0]['id']}") or {}
        return frozenset(item.get("attributes") or {})

    def issues(self) -> Iterator[SourceIssue]:
        """Every issue by id, with its journal (or its messages) as entries."""
        users = _Users(self.names("user"), self._retired_user)
        schema = self.issue_properties()
        related = [p for p in ("superseder", *BLOCKED_BY) if p in schema]
        fields = ",".join([_ISSUE_FIELDS, *related])
        self._hidden, roles = hidden_items(self.get, self.base, checked=not self.unchecked)
        self.warnings |= dict.fromkeys([UNCHECKED] if self.unchecked else [])
        for item in self.collection("issue", fields):
            issue = self._issue(item, users)
            if issue is not None and item["id"] in self._hidden["issue"]:
                whom = f"Roundup's View permissions hide from readers with the roles {roles}"
                issue = dataclasses.replace(issue, restricted=f"an issue {whom}")
            if issue is not None:
                yield issue

    def _file(self, file_id: str, users: dict[str, str], issue_id: str) -> SourceAttachment | None:
        """A file of an issue (None if it is gone, or hidden from the tracker's readers)."""
        data = self.get(f"data/file/{file_id}", **{"@fields": "name,type,creator,creation"})
        if data is None:
            return None
        attributes: dict[str, Any] = data.get("attributes") or {}
        if file_id in self._hidden["file"]:
            self.withheld[f"issue{issue_id} file{file_id}"] = (
                f"file {attributes.get('name')!r} of {attributes.get('creation')} (Roundup's "
                "View permissions hide it from the tracker's ordinary readers)"
            )
            return None
        return SourceAttachment(
            name=str(attributes.get("name") or f"file{file_id}"),
            author=users.get(link_id(attributes.get("creator")), ""),
            at=roundup_date(str(attributes["creation"])),
            content_type=str(attributes.get("type") or ""),
            open=functools.partial(self.content, file_id),
        )

    def content(self, file_id: str) -> BinaryIO:
        """A file's bytes, streamed: ``GET /rest/data/file/N/binary_content`` (Roundup 2.1+)."""
        self._sign_in()
        url = urljoin(self.base, f"rest/data/file/{file_id}/binary_content")
        request = Request(url, headers={**self._headers(), "Accept": "*/*"})
        return open_file(request, source="Roundup", retries=self.retries, opener=self._opener)

    def _message(self, msg_id: str, issue_id: str) -> dict[str, Any]:
        """A message; one the tracker's readers may not view keeps no text (named instead)."""
        data = self.get(
            f"data/msg/{msg_id}", **{"@fields": "author,date,creation,content", "@verbose": 3}
        )
        if data is None:
            return {"author": "", "date": "", "creation": "", "content": ""}
        attributes: dict[str, Any] = data["attributes"]
        if msg_id in self._hidden["msg"]:
            author = attributes.get("author") or {}
            name = author.get("username") if isinstance(author, dict) else author
            self.withheld[f"issue{issue_id} msg{msg_id}"] = (
                f"message by {name or 'someone'} of {attributes.get('date') or '?'} (Roundup's "
                "View permissions hide it from the tracker's ordinary readers)"
            )
            attributes = {**attributes, "content": ""}
        return attributes

    def _issue(self, item: dict[str, Any], users: dict[str, str]) -> SourceIssue | None:
        """The issue as the source gives it; None if it was destroyed since it was listed."""
        issue_id = str(item["id"])
        current: dict[str, Any] = {f: link_id(item.get(f)) for f in LINKS}
        current["title"] = str(item.get("title") or "")
        for name in RELATION_PROPERTIES:  # a relation held by a Link: its one issue
            if name in item and not isinstance(item[name], list):
                current[name] = link_id(item[name])
        sets: dict[str, set[str]] = {f: set(multilink_ids(item.get(f))) for f in MULTILINKS}
        final = dict(current), {f: set(v) for f, v in sets.items()}
        messages = {m: self._message(m, issue_id) for m in multilink_ids(item.get("messages"))}
        created = roundup_date(str(item["creation"]))
        reporter = users.get(link_id(item.get("creator")), "")
        entries: list[SourceEntry] = []
        if self.journal:
            journal = self.get(f"history/issue/{issue_id}")
            if journal is None and self.get(f"data/issue/{issue_id}") is None:
                # Destroyed after it was listed: not an error of the run.
                self.skipped.append(f"issue{issue_id}: listed, then gone (404) when read")
                return None
            if journal is None:
                raise FailedPrecondition(
                    f"{self.base}rest/history/issue/{issue_id}: no journal endpoint; append "
                    "bugless_import.sources.roundup.INTERFACES_PY to the tracker's interfaces.py "
                    "(or --option history=messages to import messages and current values only)"
                )
            for record in reversed(journal["history"]):
                if record["action"] == "create":
                    created = roundup_date(record["date"])
                    reporter = users.get(str(record["user"]), reporter)
                if record["action"] != "set":
                    continue
                entry = undo_record(
                    record, current, sets, messages, users, tracker=self.tracker, names=self.names
                )
                if entry is not None:
                    entries.append(entry)
            entries.reverse()
        initial_messages = sorted(sets["messages"], key=int)
        if not self.journal:
            initial_messages = sorted(messages, key=int)[:1]
            for msg_id in sorted(messages, key=int)[1:]:
                message = messages[msg_id]
                if not (message.get("date") or message.get("creation")):
                    continue  # a message this account may not view
                entries.append(
                    SourceEntry(
                        author=users.get(link_id(message.get("author")), ""),
                        at=roundup_date(str(message.get("date") or message["creation"])),
                        comment=str(message.get("content") or ""),
                    )
                )
        description = "\n\n".join(str(messages[m].get("content") or "") for m in initial_messages)
        last = max([created, *(e.at for e in entries)])
        status = self.names("status").get(final[0]["status"], "")
        return SourceIssue(
            key=f"{self.tracker}#{issue_id}",
            url=f"{self.base}issue{issue_id}",
            title=final[0]["title"] or f"issue {issue_id}",
            description=description,
            reporter=reporter,
            created_at=created,
            modified_at=last,
            status=status.lower(),
            priority=self.names("priority").get(final[0]["priority"], "").lower(),
            assignee=users.get(final[0]["assignedto"], ""),
            cc=tuple(sorted(users[u] for u in final[1]["nosy"] if u in users)),
            labels=tuple(
                self.names("keyword").get(k, k) for k in sorted(final[1]["keyword"], key=int)
            ),
            entries=tuple(entries),
            attachments=tuple(
                f
                for f in (
                    self._file(i, users, issue_id)
                    for i in sorted(multilink_ids(item.get("files")), key=int)
                )
                if f is not None
            ),
            relations=(
                *(
                    SourceRelation("duplicate_of", f"{self.tracker}#{other}")
                    for other in sorted(multilink_ids(item.get("superseder")), key=int)
                ),
                *(
                    SourceRelation("blocks", f"{self.tracker}#{other}", reverse=True)
                    for name in BLOCKED_BY
                    for other in sorted(multilink_ids(item.get(name)), key=int)
                ),
            ),
        )
