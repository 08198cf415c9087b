"""Loading an issue's history and what its entries need to be read.

A history entry names people by opaque id, components and hotlists by number.
To show "Alice changed Component Platform → Platform>Storage", the page joins
people through the Authenticator's batch look-up and names through the Model,
one batch each, on every render (nothing is cached in the web tier).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bugless_core.clients import call, every_page
from bugless_core.errors import NotFound
from bugless_core.ids import try_parse_id
from bugless_core.issue_labels import holds_people
from bugless_core.limits import MAX_PAGE_SIZE
from bugless_core.mentions import mentioned_usernames
from bugless_core.usernames import username_key
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.searching import component_paths


@dataclass
class Timeline:
    """How an issue's history reads once edits and redactions are folded in.

    The Model's history is appended to: an edit is a later entry
    (``edits_version`` names the entry it edits), and a redaction blanks the
    redacted texts in place (``comment_redacted``) and adds a record entry.
    People read the *current* text at the place the comment was written,
    marked "edited", with the earlier texts one click away; the edit
    entries themselves read as short lines ("edited the comment of #5").

    Attributes:
        edits: Edit entries by the version they edit, oldest first.
        viewer_id: Who is reading (their own comments get an edit form).
        can_redact: Whether the reader administers the issue's component
            (the Model decides; this only decides whether the form shows).
        expected_version: The issue version the page's forms are made against.
        user_fields: History field names of user-typed custom fields (their
            values are user ids, shown as people); for entries written before
            FieldChange carried its field's type, which say so themselves.
    """

    edits: dict[int, list[v1.HistoryEntry]] = field(default_factory=dict)
    viewer_id: str = ""
    can_redact: bool = False
    expected_version: int = 0
    #: History field names (``customfield12``) of custom fields that hold people.
    user_fields: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        entries: Iterable[v1.HistoryEntry],
        *,
        viewer_id: str = "",
        can_redact: bool = False,
        expected_version: int = 0,
        user_fields: Iterable[str] = (),
    ) -> Timeline:
        """The fold of ``entries`` (the issue's whole history, oldest first)."""
        edits: dict[int, list[v1.HistoryEntry]] = {}
        for entry in entries:
            if entry.edits_version:
                edits.setdefault(entry.edits_version, []).append(entry)
        return cls(
            edits=edits,
            viewer_id=viewer_id,
            can_redact=can_redact,
            expected_version=expected_version,
            user_fields=frozenset(user_fields),
        )

    def people(self, entries: Iterable[v1.HistoryEntry]) -> set[str]:
        """User ids held in the entries' changes of user-typed custom fields."""
        return {
            value
            for entry in entries
            for change in entry.changes
            if change.field in self.user_fields or holds_people(change)
            for value in (change.old_value, change.new_value, *change.added, *change.removed)
            if value
        }

    def current_text(self, entry: v1.HistoryEntry) -> str:
        """The text the entry's comment has now: its latest edit's, else its own."""
        versions = self.edits.get(entry.version)
        return versions[-1].comment if versions else entry.comment

    def earlier(self, entry: v1.HistoryEntry) -> list[v1.HistoryEntry]:
        """The superseded texts of an edited comment, newest first (original last).

        Each is an entry whose ``comment`` was the text until the next one
        replaced it; its ``created_at`` says when it was written.
        """
        versions = self.edits.get(entry.version, [])
        return [*reversed(versions[:-1]), entry] if versions else []

    def can_edit(self, entry: v1.HistoryEntry) -> bool:
        """Whether the reader may edit this entry's comment (its author, text not redacted)."""
        return (
            bool(self.viewer_id)
            and entry.author == self.viewer_id
            and not entry.edits_version
            and not entry.comment_redacted
            and not entry.redaction_target
            and bool(entry.comment or entry.version == 1)
        )

    def redactable(self, entry: v1.HistoryEntry) -> bool:
        """Whether the entry has text a redaction could remove, for a reader who may."""
        return (
            self.can_redact
            and not entry.edits_version
            and not entry.comment_redacted
            and bool(self.current_text(entry))
        )


@dataclass
class Names:
    """What ids on a page are called: people, component paths, hotlist names.

    ``mentioned`` holds the :func:`~bugless_core.usernames.username_key` of
    each name ``@mentioned`` in the texts that is a user's: those mentions
    are links (:func:`bugless_web.markup.render_text`), the others text.
    """

    users: dict[str, v1.User] = field(default_factory=dict)
    components: dict[int, str] = field(default_factory=dict)
    hotlists: dict[int, str] = field(default_factory=dict)
    mentioned: frozenset[str] = frozenset()


async def load_history(
    backends: Backends, viewer: Viewer, issue_id: int, *, after_version: int = 0
) -> list[v1.HistoryEntry]:
    """Every entry of an issue (oldest first), optionally only those after a version."""
    entries: list[v1.HistoryEntry] = []
    async for response in every_page(
        backends.model.list_history,
        v1.ListHistoryRequest(caller=viewer.caller, issue_id=issue_id),
        page_size=MAX_PAGE_SIZE,
    ):
        entries.extend(e for e in response.entries if e.version > after_version)
    return entries


def people_in(entries: Iterable[v1.HistoryEntry]) -> set[str]:
    """Authors and every user value in the entries' changes."""
    found: set[str] = set()
    for entry in entries:
        found.add(entry.author)
        for change in entry.changes:
            if holds_people(change):
                found.update((change.old_value, change.new_value, *change.added, *change.removed))
    return found - {""}


def _ids(values: Iterable[str]) -> set[int]:
    return {i for i in map(try_parse_id, values) if i is not None}


async def hotlist_names(backends: Backends, viewer: Viewer, ids: Iterable[int]) -> dict[int, str]:
    """Names of hotlists (one concurrent GetHotlist each; invisible ones are numbered)."""
    wanted = sorted(set(ids) - {0})

    async def name_of(hotlist_id: int) -> str:
        try:
            hotlist = await call(
                backends.model.get_hotlist,
                v1.GetHotlistRequest(caller=viewer.caller, hotlist_id=hotlist_id),
            )
        except NotFound:
            return f"hotlist {hotlist_id}"
        return hotlist.name

    names = await asyncio.gather(*(name_of(h) for h in wanted))
    return dict(zip(wanted, names, strict=True))


async def names_for(
    backends: Backends,
    viewer: Viewer,
    entries: Sequence[v1.HistoryEntry],
    *,
    issues: Sequence[v1.Issue] = (),
    extra_users: Iterable[str] = (),
) -> Names:
    """Everything needed to show ``entries`` (and ``issues``) by name, in parallel.

    The names the entries' texts mention (every version of each: the
    timeline shows the earlier ones too) are looked up as a search's
    optional names are (:meth:`Backends.query_users`): one that is nobody's
    is not asked again for ``user_cache_seconds``.
    """
    users = people_in(entries) | set(extra_users)
    components: set[int] = set()
    hotlists: set[int] = set()
    for entry in entries:
        for change in entry.changes:
            if change.field == "component_id":
                components |= _ids((change.old_value, change.new_value))
            elif change.field == "hotlist_ids":
                hotlists |= _ids((*change.added, *change.removed))
    for issue in issues:
        users.update((issue.reporter, issue.assignee, issue.verifier, *issue.cc))
        components.add(issue.component_id)
        hotlists.update(issue.hotlist_ids)
    found_users, found_components, found_hotlists, mentioned = await asyncio.gather(
        backends.users(users),
        component_paths(backends, viewer, components),
        hotlist_names(backends, viewer, hotlists),
        mentioned_people(
            backends,
            [
                *(entry.comment for entry in entries),
                *(a.description for entry in entries for a in entry.attachments),
            ],
        ),
    )
    return Names(
        users=found_users,
        components=found_components,
        hotlists=found_hotlists,
        mentioned=mentioned,
    )


async def mentioned_people(backends: Backends, texts: Iterable[str]) -> frozenset[str]:
    """The keys of the names ``texts`` (Markdown) mention that are people's (see :class:`Names`)."""
    keys = mentioned_usernames(*texts)
    if not keys:
        return frozenset()
    found = await backends.query_users(keys, required=())
    return frozenset(username_key(name) for name in found)
