"""Trac, read from its environment through Trac's own Python API.

LOCATION is a Trac environment directory (``trac-admin ENV initenv``); it is
opened with ``trac.env.Environment``, so whatever database it is configured
for (SQLite, PostgreSQL, MySQL) is read as Trac reads it, through its
``db_query``. Needs the ``trac`` package in the same Python (``pip install
'bugless-import[trac]'``). ``--option project=NAME`` names the environment in
the external ids (``trac:NAME#12``): needed when several environments are
imported into one bugless, whose ticket numbers overlap.

Every ticket is read with the ``ticket`` table's columns and its
``ticket_change`` rows; changes made together (one ``time`` and author)
form one entry, a ``comment`` row being its text. Status and resolution
are read as one status (``closed/wontfix``). Keywords become labels, and their
changes label changes; so do the milestone, the version and the custom
fields (``[ticket-custom]``, but not a ``textarea``), as ``milestone:1.0``,
``version:2.1``, ``<field>:<value>`` labels that the mapping file's
``[labels]`` sends to a hotlist or a custom field (a dry run lists them). A
``description`` change is an edit of the description (entry 1). Wiki
formatting is converted to Markdown; its links to changesets (``r123``,
``[123]``, ``[changeset:abc]``), revision logs (``r1:3``, ``log:trunk``),
files (``source:trunk/a.py``), wiki pages (``wiki:Page``, and a CamelCase
word that names one of the environment's pages), reports (``{4}``,
``report:4``) and milestones point at the old Trac (``--option url=...``,
else trac.ini's ``base_url``), which a team keeps read-only or as the
repository browser; with neither they are kept as code (a CamelCase word
as text). A ticket's files (``attachment:f.txt``,
``attachment:f.txt:ticket:12``, ``raw-attachment:``, ``[[Image(f.png)]]``)
link to bugless's copy by its SHA-256 (the import copies them; the web's
``/imported`` page finds the copy); a wiki page's file links to the old
Trac, and a file Trac does not have is code, as are ``diff:``, InterTrac's
``trac:#123``, other macros and ``["free link"]``, which lead nowhere the
import can point at. Trac's ``!`` escape keeps one as text (``!#12`` as
code, as bugless would link ``#12``). People are the authenticated sessions'
logins, with their name and e-mail from the session attributes; a reporter
Trac knows only by an e-mail address is keyed by that address. A ticket's
attachments are read through ``trac.attachment.Attachment`` (its
``select`` and ``path``: the environment's ``files/attachments/ticket/…``
layout is Trac's to know), each with its author, time, size and
description, and copied by ``bugless import``.

A ticket Trac's permission policies hide from its readers (Trac's own
``AuthzPolicy``, a sensitive- or private-tickets plugin: any policy in
``[trac] permission_policies``) is restricted (:mod:`._trac_permissions`
asks Trac, as its pages do, whether a reader holds ``TICKET_VIEW`` on it;
any signed-in user, or ``--option reader=NAME`` where only a group sees
tickets): ``bugless import`` leaves it out, or puts
it into ``--restricted-component``, never where its fields map it.

Core Trac has no relations between tickets. Two common plugins keep them in
custom fields, which are read as relations rather than labels when the
environment declares them: MasterTicketsPlugin's ``blockedby`` and
``blocking`` (ticket numbers, comma-separated) and TracSubtickets'
``parents`` (bugless holds one parent: the report names the others). Their
``ticket_change`` rows are the entries' relation changes (the numbers a row
added and removed), kept in the imported history: ``blockedby`` and
``parents`` rows; a ``blocking`` row is the other side of a ``blockedby`` row
MasterTicketsPlugin writes with it, which the Model writes itself.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from bugless_core.errors import FailedPrecondition, InvalidArgument
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
from bugless_core.issue_references import imported_file_link
from bugless_import.sources._trac_permissions import ticket_restrictions
from bugless_import.sources.markup import trac_to_markdown

#: Plugins' custom fields that hold relations: field -> (kind, reverse).
_RELATION_FIELDS = {
    "blockedby": ("blocks", True),  # MasterTicketsPlugin
    "blocking": ("blocks", False),  # MasterTicketsPlugin
    "parents": ("parent", False),  # TracSubtickets
}

_TICKETS = (
    "SELECT id, type, time, changetime, component, severity, priority, owner, reporter, cc, "
    "status, resolution, summary, description, keywords, milestone, version "
    "FROM ticket ORDER BY id"
)
_CUSTOM = "SELECT ticket, name, value FROM ticket_custom ORDER BY ticket, name"
#: Tickets with attachments (``Attachment.select`` then reads each one's files).
_ATTACHED = "SELECT DISTINCT id FROM attachment WHERE type = 'ticket'"
#: The wiki's pages, which a CamelCase word in the text links to (Trac's WikiPageNames).
_WIKI_PAGES = "SELECT DISTINCT name FROM wiki"
_CHANGES = (
    "SELECT ticket, time, author, field, oldvalue, newvalue FROM ticket_change "
    "ORDER BY ticket, time, author, field"
)
_SESSIONS = (
    "SELECT sid, name, value FROM session_attribute "
    "WHERE authenticated = 1 AND name IN ('name', 'email')"
)
_FIELDS = {
    "summary": "title",
    "priority": "priority",
    "type": "type",
    "severity": "severity",
    "component": "component",
    "owner": "assignee",
}


_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _time(value: int) -> datetime:
    """Trac's microseconds since the epoch (Trac 1.0 and later)."""
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def _keywords(value: object) -> list[str]:
    """Trac's keywords field: words separated by spaces or commas."""
    return [k for k in str(value or "").replace(",", " ").split() if k]


def _people(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").replace(";", ",").split(",") if p.strip()]


def _label(field: str, value: object) -> tuple[str, ...]:
    """The label of a milestone, version or custom field value (none when empty)."""
    text = str(value or "").strip()
    return (f"{field}:{text}",) if text else ()


def _owner(value: object) -> str:
    """Trac's placeholder for "the component's owner" names nobody by itself."""
    text = str(value or "")
    return "" if text == "< default >" else text


def _status(status: str, resolution: str) -> str:
    return f"{status}/{resolution}" if resolution and status == "closed" else status


class TracImporter(Importer):
    """``bugless import trac ENV``: a Trac environment's tickets."""

    name = "trac"
    description = "Trac, read from its environment through Trac's own Python API"
    default_mapping = {
        "statuses": {
            "new": "NEW",
            "reopened": "NEW",
            "assigned": "ASSIGNED",
            "accepted": "ACCEPTED",
            "closed": "FIXED",
            "closed/fixed": "FIXED",
            "closed/invalid": "WONT_FIX_INTENDED_BEHAVIOR",
            "closed/wontfix": "WONT_FIX_INFEASIBLE",
            "closed/duplicate": "DUPLICATE",
            "closed/worksforme": "WONT_FIX_NOT_REPRODUCIBLE",
        },
        "priorities": {
            "blocker": "P0",
            "critical": "P1",
            "major": "P2",
            "minor": "P3",
            "trivial": "P4",
        },
        "types": {"defect": "BUG", "enhancement": "FEATURE_REQUEST", "task": "TASK"},
    }

    def __init__(self, location: str, options: dict[str, str]) -> None:
        """Open nothing yet; ``location`` is the environment directory."""
        super().__init__(location, options)
        #: ``--option project=NAME``: external ids ``trac:NAME#12``, so that
        #: several environments' ticket 12 stay apart (default ``trac:12``).
        self.project = options.get("project", "")
        if self.project and not _PROJECT.match(self.project):
            raise InvalidArgument(
                f"--option project={self.project!r}: letters, digits, '.', '_' and '-'"
            )
        self._env: Any = None
        self._custom_fields: set[str] = set()
        #: The plugins' relation fields the environment declares (their change
        #: rows are relation changes).
        self._relation_fields: set[str] = set()
        #: The base URL Trac links in the text point at (read once).
        self._trac_url: str | None = None
        #: The environment's wiki page names, which a CamelCase word links to.
        self._wiki_pages: frozenset[str] = frozenset()
        #: (realm, id, file name) -> where Trac keeps that attachment, or None.
        self._attachment_paths: dict[tuple[str, str, str], str | None] = {}
        #: Path -> SHA-256 of the attachments a text names ("" if unreadable).
        self._digests: dict[str, str] = {}

    def _environment(self) -> Any:
        if self._env is None:
            try:
                with warnings.catch_warnings():
                    # Trac 1.6 imports pkg_resources, which warns on every run
                    # of the command; nothing the person can act on.
                    warnings.filterwarnings("ignore", "pkg_resources is deprecated")
                    from trac.env import Environment  # noqa: PLC0415
            except ImportError as exc:
                raise FailedPrecondition(
                    "reading Trac needs the trac package: pip install 'bugless-import[trac]'"
                ) from exc
            try:
                self._env = Environment(self.location)
            except Exception as exc:  # Trac raises its own TracError family
                raise InvalidArgument(f"{self.location}: not a Trac environment: {exc}") from exc
        return self._env

    def base_url(self) -> str:
        """Where the tickets are served (``--option url=...``, else trac.ini's base_url)."""
        url = self.options.get("url") or str(
            self._environment().config.get("trac", "base_url") or ""
        )
        return url.rstrip("/")

    def _markdown(self, text: str, ticket: int) -> str:
        """Ticket ``ticket``'s text as Markdown, its changeset, wiki, report, ... links to Trac."""
        if self._trac_url is None:
            self._trac_url = self.base_url()
            if self._trac_url:
                rows = self._environment().db_query(_WIKI_PAGES)
                self._wiki_pages = frozenset(str(name) for (name,) in rows)
        return trac_to_markdown(
            text,
            self._trac_url,
            self._wiki_pages,
            functools.partial(self._attachment_link, ticket),
        )

    def _attachment_link(self, ticket: int, realm: str, resource: str, name: str, raw: bool) -> str:
        """Where a text of ``ticket`` naming an attachment links ("": kept as code).

        A file Trac has of a ticket is copied with it: the link is bugless's
        (:func:`imported_file_link`, by the file's SHA-256), which the web
        sends on to the copy, or shows the old Trac's page for it while the
        ticket is not imported. A file of the text's own ticket that the run
        does not import (refused, unreadable) is then its name and why
        (:attr:`SourceAttachment.sha256`); one of another ticket leads to
        that issue's copy, or to the web's page saying that issue's import
        left the file out.
        A file Trac has that is not copied (a wiki page's) or cannot be read
        links to the old Trac when its URL is known. A file Trac does not
        have is code: Trac itself shows it as a missing attachment.
        """
        realm, resource = (realm, resource) if realm else ("ticket", str(ticket))
        path = self._attachment_path(realm, resource, name)
        if path is None:
            return ""
        kind = "raw-attachment" if raw else "attachment"
        base = self._trac_url or ""
        source = f"{base}/{kind}/{realm}/{quote(resource)}/{quote(name)}" if base else ""
        if realm == "ticket" and resource.isdigit():
            if path not in self._digests:
                self._digests[path] = _sha256(path)
            digest = self._digests[path]
            if digest:
                return imported_file_link(self.issue_external_id(resource), digest, source)
        return source

    def _attachment_path(self, realm: str, resource: str, name: str) -> str | None:
        """Where Trac keeps attachment ``name`` of ``realm:resource``; None if it has none."""
        key = (realm, resource, name)
        if key not in self._attachment_paths:
            from trac.attachment import Attachment  # noqa: PLC0415 - the optional dependency
            from trac.resource import ResourceNotFound  # noqa: PLC0415

            try:
                found = Attachment(self._environment(), realm, resource, name)
            except (ResourceNotFound, ValueError):
                self._attachment_paths[key] = None
            else:
                self._attachment_paths[key] = str(found.path)
        return self._attachment_paths[key]

    def issue_url(self, number: str) -> str:
        """``<base_url>/ticket/N``: ``#N`` and ``ticket:N`` name tickets in Trac."""
        base = self.base_url()
        return f"{base}/ticket/{number}" if base else ""

    def issue_external_id(self, number: str) -> str:
        """``trac:N``, or ``trac:PROJECT#N`` with ``--option project=``, as :meth:`issues` keys."""
        return f"{self.name}:{self.project}#{number}" if self.project else f"{self.name}:{number}"

    def people(self) -> Iterator[SourcePerson]:
        """The authenticated sessions, with their names and e-mails."""
        rows = self._environment().db_query(_SESSIONS)
        attributes: dict[str, dict[str, str]] = {}
        for sid, name, value in rows:
            attributes.setdefault(str(sid), {})[str(name)] = str(value or "")
        for sid, values in sorted(attributes.items()):
            yield SourcePerson(
                key=sid,
                username=sid,
                email=values.get("email", ""),
                display_name=values.get("name", ""),
            )

    def issues(self) -> Iterator[SourceIssue]:
        """Every ticket by id, with its changes."""
        env = self._environment()
        base = self.base_url()
        changes: dict[int, list[tuple[Any, ...]]] = {}
        for ticket, rows in groupby(env.db_query(_CHANGES), key=lambda r: int(r[0])):
            changes[ticket] = list(rows)
        # A textarea is prose, not a value to label an issue with.
        declared = self._custom_field_names()
        self._custom_fields = {
            name for name in declared
            if env.config.get("ticket-custom", name) != "textarea"
            and name not in _RELATION_FIELDS
        }  # fmt: skip
        # MasterTicketsPlugin logs a blocking change on both tickets; the
        # blocked one's ``blockedby`` row is imported, and the Model writes
        # the blocking ticket's side (its ``blocking`` row would find the
        # relation already changed).
        self._relation_fields = {n for n in _RELATION_FIELDS if n in declared and n != "blocking"}
        custom: dict[int, dict[str, str]] = {}
        related: dict[int, list[SourceRelation]] = {}
        for ticket, name, value in env.db_query(_CUSTOM):
            if name in self._custom_fields:
                custom.setdefault(int(ticket), {})[str(name)] = str(value or "")
            elif name in _RELATION_FIELDS and name in declared:
                related.setdefault(int(ticket), []).extend(self._relations(name, value))
        attached = {int(ticket) for (ticket,) in env.db_query(_ATTACHED)}
        hidden = ticket_restrictions(env, self.options.get("reader", ""))
        for row in env.db_query(_TICKETS):
            number = int(row[0])
            issue = self._ticket(
                row,
                changes.get(number, []),
                base,
                custom=custom.get(number, {}),
                attachments=self._attachments(number) if number in attached else (),
                relations=tuple(related.get(number, ())),
            )
            yield dataclasses.replace(issue, restricted=hidden(number))

    def _relations(self, field: str, value: object) -> list[SourceRelation]:
        """A relation field's ticket numbers (``12, 14``; ``#12`` too) as relations."""
        kind, reverse = _RELATION_FIELDS[field]
        numbers = re.findall(r"\d+", str(value or ""))
        return [
            SourceRelation(kind, f"{self.project}#{n}" if self.project else n, reverse=reverse)
            for n in dict.fromkeys(str(int(n)) for n in numbers)
        ]

    def _relation_changes(self, field: str, old: object, new: object) -> list[SourceRelationChange]:
        """A relation field's change row as the relations it added and removed."""
        was = {r.target: r for r in self._relations(field, old)}
        now = {r.target: r for r in self._relations(field, new)}
        return [
            *(SourceRelationChange(r.kind, r.target, r.reverse) for k, r in now.items()
              if k not in was),
            *(SourceRelationChange(r.kind, r.target, r.reverse, removed=True)
              for k, r in was.items() if k not in now),
        ]  # fmt: skip

    def _attachments(self, number: int) -> tuple[SourceAttachment, ...]:
        """Ticket ``number``'s files, oldest first, read from where Trac keeps them."""
        from trac.attachment import Attachment  # noqa: PLC0415 - the optional dependency

        files = []
        for found in Attachment.select(self._environment(), "ticket", number):
            path = str(found.path)
            files.append(
                SourceAttachment(
                    name=str(found.filename),
                    author=str(found.author or ""),
                    at=found.date.astimezone(UTC),
                    size=int(found.size or 0),
                    comment=self._markdown(str(found.description or ""), number),
                    open=functools.partial(_open_file, path),
                )
            )
        return tuple(files)

    def _custom_field_names(self) -> list[str]:
        """The ``[ticket-custom]`` fields (their options are ``name.label`` and the like)."""
        section = self._environment().config["ticket-custom"]
        return [name for name in section if "." not in name]

    def _ticket(
        self,
        row: tuple[Any, ...],
        rows: list[tuple[Any, ...]],
        base: str,
        *,
        custom: dict[str, str],
        attachments: tuple[SourceAttachment, ...],
        relations: tuple[SourceRelation, ...],
    ) -> SourceIssue:
        (ticket_id, ticket_type, created, changed, component, severity, priority, owner,
         reporter, cc, status, resolution, summary, description, keywords, milestone,
         version) = row  # fmt: skip
        status_rows = [r for r in rows if r[3] == "status"]
        resolution_rows = [r for r in rows if r[3] == "resolution"]
        current_status = str(status_rows[0][4] or "new") if status_rows else str(status or "new")
        current_resolution = (
            str(resolution_rows[0][4] or "") if resolution_rows else str(resolution or "")
        )
        entries: list[SourceEntry] = []
        closed_at: datetime | None = None
        for (at, author), group in groupby(rows, key=lambda r: (int(r[1]), str(r[2] or ""))):
            comment = ""
            found: list[SourceChange] = []
            relation_changes: list[SourceRelationChange] = []
            before = _status(current_status, current_resolution)
            for _, _, _, name, old, new in group:
                if name == "comment":
                    comment = self._markdown(str(new or ""), ticket_id)
                elif name in self._relation_fields:
                    relation_changes.extend(self._relation_changes(name, old, new))
                elif name == "status":
                    current_status = str(new or "")
                elif name == "resolution":
                    current_resolution = str(new or "")
                elif name == "description":
                    found.append(
                        SourceChange(
                            "description",
                            old=self._markdown(str(old or ""), ticket_id),
                            new=self._markdown(str(new or ""), ticket_id),
                        )
                    )
                elif name == "cc":
                    was, now = set(_people(old)), set(_people(new))
                    if was != now:
                        found.append(
                            SourceChange(
                                "cc",
                                added=tuple(sorted(now - was)),
                                removed=tuple(sorted(was - now)),
                            )
                        )
                elif name in {"milestone", "version"} or name in self._custom_fields:
                    was, now = set(_label(name, old)), set(_label(name, new))
                    if was != now:
                        found.append(
                            SourceChange(
                                "labels",
                                added=tuple(sorted(now - was)),
                                removed=tuple(sorted(was - now)),
                            )
                        )
                elif name == "keywords":
                    was, now = set(_keywords(old)), set(_keywords(new))
                    if was != now:
                        found.append(
                            SourceChange(
                                "labels",
                                added=tuple(sorted(now - was)),
                                removed=tuple(sorted(was - now)),
                            )
                        )
                elif name in _FIELDS:
                    value_old, value_new = str(old or ""), str(new or "")
                    if name == "owner":
                        value_old, value_new = _owner(old), _owner(new)
                    if _FIELDS[name] in {"priority", "type", "severity"}:
                        value_old, value_new = value_old.lower(), value_new.lower()
                    found.append(SourceChange(_FIELDS[name], old=value_old, new=value_new))
            after = _status(current_status, current_resolution)
            if after != before:
                found.insert(0, SourceChange("status", old=before, new=after))
                if current_status == "closed":
                    closed_at = _time(at)
            if comment.strip() or found or relation_changes:
                entries.append(
                    SourceEntry(
                        author=author, at=_time(at), comment=comment, changes=tuple(found),
                        relations=tuple(relation_changes),
                    )
                )  # fmt: skip
        final_status = _status(str(status or "new"), str(resolution or ""))
        if final_status.startswith("closed") and closed_at is None:
            closed_at = _time(int(changed))
        return SourceIssue(
            key=f"{self.project}#{ticket_id}" if self.project else str(ticket_id),
            url=f"{base}/ticket/{ticket_id}" if base else f"ticket/{ticket_id}",
            title=str(summary or f"ticket {ticket_id}"),
            description=self._markdown(str(description or ""), ticket_id),
            reporter=str(reporter or ""),
            created_at=_time(int(created)),
            modified_at=_time(int(changed)),
            closed_at=closed_at if final_status.startswith("closed") else None,
            status=final_status,
            priority=str(priority or "").lower(),
            type=str(ticket_type or "").lower(),
            severity=str(severity or "").lower(),
            component=str(component or ""),
            assignee=_owner(owner),
            cc=tuple(_people(cc)),
            labels=(
                *_keywords(keywords),
                *_label("milestone", milestone),
                *_label("version", version),
                *(label for name, value in sorted(custom.items()) for label in _label(name, value)),
            ),
            entries=tuple(entries),
            attachments=tuple(self._with_linked_digest(ticket_id, a) for a in attachments),
            relations=relations,
        )

    def _with_linked_digest(self, ticket: int, attachment: SourceAttachment) -> SourceAttachment:
        """``attachment`` with the SHA-256 its ticket's text links it by, if it does.

        Known once the ticket's texts are converted (:meth:`_attachment_link`
        reads a file's digest only when a text names it), so that the run
        can tell those links that the file was not imported.
        """
        path = self._attachment_paths.get(("ticket", str(ticket), attachment.name))
        digest = self._digests.get(path, "") if path else ""
        return dataclasses.replace(attachment, sha256=digest) if digest else attachment


def _open_file(path: str) -> BinaryIO:
    """An attachment's content, open (``OSError`` when the file is missing or unreadable)."""
    return Path(path).open("rb")


def _sha256(path: str) -> str:
    """The SHA-256 of the file at ``path`` (what bugless keys a copy by); "" if unreadable."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()
