"""The importer contract: how another tracker's issues reach ``bugless import``.

An importer (``trac``, ``github``, or one a plugin adds) is registered through
``bugless_register_importers`` and only *reads*: it turns its source into the
plain records below, in the source's own vocabulary (status ``closed/wontfix``,
priority ``major``, the source's logins). Everything after that is the
``bugless import`` command's (package bugless-import): the mapping file,
matching people through the Authenticator, creating components, the
idempotent ImportIssue calls, resume, reports. So an importer plugin needs
bugless-core and its source's client library, nothing else.

Records carry the issue as it is *now* and its history as the source logged
it (each change with its old and new value); the command rolls the changes
back to find the state at creation. Relations between issues (duplicate of,
parent, blocking) are carried by the source's keys, as they are now and as
each entry changed them: the command imports the changes with the history
once both ends exist, and sets the ones still lacking after that.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, ClassVar

from bugless_core.issue_references import EXTERNAL_ID, imported_link

#: The fields a :class:`SourceChange` may name. ``status`` values may carry a
#: resolution (``closed/wontfix``); ``cc`` and ``labels`` change by
#: ``added``/``removed``; the rest by ``old``/``new``; people are person keys.
#: ``description`` is an edit of the description (Markdown texts): imported as
#: an edit of entry 1, the issue's description being the first ``old``.
CHANGE_FIELDS = frozenset(
    {
        "title",
        "status",
        "priority",
        "severity",
        "type",
        "component",
        "assignee",
        "cc",
        "labels",
        "description",
    }
)


@dataclass(frozen=True)
class SourcePerson:
    """A person as the source knows them.

    Attributes:
        key: The source's own, stable key (login, account id).
        username: Their login, when the source has one.
        email: Their address, when the source shows it.
        display_name: Their full name.
    """

    key: str
    username: str = ""
    email: str = ""
    display_name: str = ""


@dataclass(frozen=True)
class SourceChange:
    """One field's change in one history entry, in the source's values."""

    field: str
    old: str = ""
    new: str = ""
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.field not in CHANGE_FIELDS:
            msg = f"unknown change field {self.field!r}; use one of {sorted(CHANGE_FIELDS)}"
            raise ValueError(msg)


@dataclass(frozen=True)
class SourceAttachment:
    """A file attached to an issue in the source: who attached it when, and how to read it.

    Attributes:
        name: The file name the source shows.
        author: Person key of the uploader.
        at: When it was attached (timezone-aware).
        size: Bytes, as the source says (-1: it does not say).
        content_type: The type the source declares, or "".
        comment: The source's description of the file, Markdown, or "".
        open: Opens the content for reading: a binary file object (a file on
            disk, an HTTP response, ``io.BytesIO`` of bytes at hand) that the
            run reads a chunk at a time and closes, so a file of any size is
            never held whole in memory. Opening and reading may block (the
            run does both in worker threads) and raise ``OSError`` (or any
            error) for a file the source lists but cannot give: the run then
            reports the file and imports the issue without it.
        link: The URL the source's text links the file by, or "" for a file
            attached the usual way. A linked file is copied where the text
            that links it is (with its :class:`SourceEntry`, or for one the
            description links, by an entry of its own at its time), and the
            link in the text is rewritten to bugless's copy
            (:func:`~bugless_core.issue_references.imported_file_link`).
        sha256: The content's SHA-256 (hex) when the issue's own text already
            links bugless's copy by it (Trac's ``attachment:f.txt``, converted
            while reading), or "". A file the run does not import (the Model
            refused it, it is unreadable) then has those links replaced by
            its name and why, instead of leading to a copy that is not there.
    """

    name: str
    author: str
    at: datetime
    size: int = -1
    content_type: str = ""
    comment: str = ""
    link: str = ""
    sha256: str = ""
    open: Callable[[], BinaryIO] = field(default=io.BytesIO, compare=False, repr=False)


#: The relations bugless holds, by the name :class:`SourceRelation` gives them.
#: ``duplicate_of`` and ``parent`` are one-valued (an issue duplicates one
#: issue, has one parent); ``blocks`` is many-valued and kept two-way.
RELATION_KINDS = frozenset({"duplicate_of", "parent", "blocks"})


@dataclass(frozen=True)
class SourceRelation:
    """A relation between two issues of the source, as one of them lists it.

    Sources list a relation on one end or on both (Redmine and Jira show it on
    both issues, in opposite directions): ``reverse`` says which way it runs,
    so that both listings name one relation and the import sets it once.

    Attributes:
        kind: One of :data:`RELATION_KINDS`, or the source's own name of a
            relation bugless does not hold (Redmine's ``relates``,
            ``precedes``; Jira's ``relates``, ``clones``), which the run
            reports instead of setting.
        target: The other issue's :attr:`SourceIssue.key`.
        reverse: False: this issue ``kind`` the target (is a duplicate of
            it, is its sub-issue, blocks it). True: the target ``kind`` this
            issue (duplicates it, is its sub-issue, blocks it).
        type_name: The source's own name of the relation's type, where a
            site names its types (Jira's link types: ``Relates``, a
            ``Dependency`` of its own), or "": the report names it beside a
            relation bugless does not hold, so a site's types can be told
            apart whatever their phrases.
    """

    kind: str
    target: str
    reverse: bool = False
    type_name: str = ""


@dataclass(frozen=True)
class SourceRelationChange:
    """A relation one history entry added or removed, as the source logged it.

    Attributes:
        kind: One of :data:`RELATION_KINDS` (others are not imported as
            history), read as :class:`SourceRelation` reads it.
        target: The other issue's :attr:`SourceIssue.key`.
        reverse: As :attr:`SourceRelation.reverse`. bugless records a parent
            or a duplicate on the sub-issue or the duplicate only, so a
            reverse ``parent``/``duplicate_of`` change (a sub-issue added to
            this issue) is left out of this issue's history: the other
            issue's history, or the relation pass, has it.
        removed: True: the entry removed the relation; False: added it.
    """

    kind: str
    target: str
    reverse: bool = False
    removed: bool = False


@dataclass(frozen=True)
class SourceEntry:
    """One entry of the source's history: who, when, what they wrote and changed.

    ``attachments`` are the files its comment links (their
    :attr:`SourceAttachment.link`, GitHub's pasted files): attached by this
    entry itself rather than by entries of their own, each link in the
    comment then pointing at the copy. ``relations`` are the relations it
    added or removed, which the import keeps as the entry's relation changes
    (``bugless_import.relation_history``).
    """

    author: str
    at: datetime
    comment: str = ""
    changes: tuple[SourceChange, ...] = ()
    attachments: tuple[SourceAttachment, ...] = ()
    relations: tuple[SourceRelationChange, ...] = ()


@dataclass(frozen=True)
class SourceIssue:
    """One issue of the source as it is now, with its history oldest first.

    Attributes:
        key: The source's key of the issue (``1234``, ``org/repo#56``,
            ``PROJ-12``); with the importer's name it makes the external id.
        url: Where the issue lives in the source (for redirects).
        title: Summary.
        description: Markdown (importers convert the source's markup).
        reporter: Person key.
        created_at: When the source created it (timezone-aware).
        modified_at: When the source last changed it, if it says.
        closed_at: When the source closed it, if it is closed and says.
        status: Status as the source writes it, lower case, with the
            resolution after a ``/`` where the source has one.
        priority: Source priority name (lower case), or "".
        type: Source type name (lower case), or "".
        severity: Source severity name (lower case), or "".
        component: Source component name, or "".
        assignee: Person key, or "".
        cc: Person keys.
        labels: Source labels/keywords (for hotlists or custom fields).
        entries: Later history, oldest first.
        attachments: The files attached in the source, oldest first: each is
            copied into bugless by an entry at its time, by its uploader
            (``bugless import`` stores the content, then ImportIssue attaches it);
            those with a ``link`` are the files the description links.
        relations: Its relations to other issues of the source as it has them
            now, which the relation pass sets where the history did not
            (``bugless_import.relations``); their changes over time are the
            entries' ``relations``.
        restricted: Whom the source shows the issue to, when that is only
            some of those who read its project (a Redmine private issue, a
            Jira issue security level), in the report's words; "" for an
            issue everyone who reads the project reads. bugless restricts who
            reads an issue by its component only, so ``bugless import``
            leaves such an issue out, or puts it in the one component
            ``--restricted-component`` names, and never where its fields
            map it.
    """

    key: str
    url: str
    title: str
    description: str
    reporter: str
    created_at: datetime
    status: str
    modified_at: datetime | None = None
    closed_at: datetime | None = None
    priority: str = ""
    type: str = ""
    severity: str = ""
    component: str = ""
    assignee: str = ""
    cc: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    entries: tuple[SourceEntry, ...] = ()
    attachments: tuple[SourceAttachment, ...] = ()
    relations: tuple[SourceRelation, ...] = ()
    restricted: str = ""


class Importer(ABC):
    """Reads one source tracker (a file tree, a database, a REST endpoint).

    Built once per run from the ``bugless import`` arguments. Reading may be
    blocking: the command runs it in a worker thread.
    """

    #: The source name: the ``bugless import <name>`` argument and the
    #: prefix of external ids (``trac:1234``).
    name: ClassVar[str]
    #: One line for ``bugless import --help``.
    description: ClassVar[str]
    #: The mapping the source's stock vocabulary gets unless the mapping file
    #: says otherwise: section (``statuses``, ``priorities``, ``types``,
    #: ``severities``) -> source value -> bugless name (``FIXED``, ``P1``).
    default_mapping: ClassVar[Mapping[str, Mapping[str, str]]] = {}

    def __init__(self, location: str, options: Mapping[str, str]) -> None:
        """Remember where the source is; open nothing yet.

        Args:
            location: Where the source is (a directory, a Trac environment, a URL).
            options: ``--option key=value`` pairs the importer documents.
        """
        self.location = location
        self.options = dict(options)
        #: Source issues the listing named that could not be read any more
        #: (deleted while the import ran), one line each with why; the run's
        #: report names them instead of the whole run failing.
        self.skipped: list[str] = []
        #: What the source shows only to some of its readers and the import
        #: left out (Redmine's private notes, Jira's comments restricted to a
        #: role or a group): where (``#12 journal 7``) -> whom the source
        #: shows it to. bugless has no per-comment visibility: imported, such
        #: a comment would be read by everyone who may read the issue, so an
        #: importer leaves it out and the report counts and names it. Keyed by
        #: where, so that reading the issues twice names each once.
        self.withheld: dict[str, str] = {}
        #: What the source holds in a shape the importer does not know (a
        #: relation event naming no issue where the importer looks), left
        #: out: where -> what. The report names each, so that a change in the
        #: source's format shows instead of history vanishing unnoticed.
        self.not_understood: dict[str, str] = {}
        #: Ids the source's history names but no longer has a name for (a
        #: Redmine category deleted since), kept under a readable stand-in
        #: (``category 9 (deleted)``): where (``#12 journal 7``) -> what it
        #: was kept as. The report names each, so an admin can rename the
        #: component the stand-in made.
        self.unnamed: dict[str, str] = {}
        #: What the admin must know about the run as a whole (an option that
        #: turned a check off), each once: the report prints each as a
        #: ``WARNING:`` line.
        self.warnings: dict[str, None] = {}

    @abstractmethod
    def people(self) -> Iterator[SourcePerson]:
        """Every person the source knows (each key once); more may appear in issues.

        A run calls it after :meth:`issues`, so an importer may include people
        it only learnt of from the issues (a user the source no longer lists).
        """

    @abstractmethod
    def issues(self) -> Iterator[SourceIssue]:
        """Every issue to import, in a stable order (the source's key order)."""

    def issue_url(self, number: str) -> str:
        """Where the source shows its issue ``number`` ("" if this source cannot say).

        Imported text that names ``#12`` or ``issue 12`` means the source's
        issue 12, not bugless issue 12: the import links it through
        :meth:`reference_link`, whose page shows this URL when the issue is
        not imported (yet). Called after :meth:`issues`.
        """
        return ""

    def issue_external_id(self, number: str) -> str:
        """The external id the source's issue ``number`` is imported as ("" if unknown).

        What :meth:`reference_link` finds the imported issue by; it must be
        what :meth:`external_id` gives that issue. Called after :meth:`issues`.
        """
        return ""

    def reference_link(self, number: str) -> str:
        """Where a reference to the source's issue ``number`` in imported text links.

        Bugless's own page for the external id (``/imported?id=trac:12``),
        which finds the imported issue, so the link outlives the source
        tracker; the source's URL rides along for when that issue is not
        imported (yet). Only the source's URL if the external id is unknown;
        "" (the text is kept) if neither is.
        """
        source = self.issue_url(number)
        external_id = self.issue_external_id(number)
        if external_id and EXTERNAL_ID.fullmatch(external_id):
            return imported_link(external_id, source)
        return source

    def references_in(self, issue: SourceIssue) -> Callable[[str], str]:
        """How a reference to the source's issue ``number`` in ``issue``'s text links.

        :meth:`reference_link`, unless the number means different issues in
        different parts of one source: GitHub's ``#3`` is issue 3 of the
        repository the text was written in, so an import of two repositories
        resolves each issue's references against its own repository, not
        against whichever the reader read last.
        """
        del issue
        return self.reference_link

    def external_id(self, issue: SourceIssue) -> str:
        """The unique reference of ``issue``: ``<name>:<key>``."""
        return self.key_external_id(issue.key)

    def key_external_id(self, key: str) -> str:
        """The external id of the source's issue whose :attr:`SourceIssue.key` is ``key``.

        What a :class:`SourceRelation`'s target is found by, whether or not
        this run reads that issue; it must agree with :meth:`external_id`.
        """
        return f"{self.name}:{key}"
