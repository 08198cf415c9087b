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

from bugless_core.clients import call
from bugless_core.errors import NotFound
from bugless_core.ids import try_parse_id
from bugless_core.limits import MAX_PAGE_SIZE
from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.display import USER_FIELDS
from bugless_web.searching import component_paths


@dataclass
class Names:
    """What ids on a page are called: people, component paths, hotlist names."""

    users: dict[str, v1.User] = field(default_factory=dict)
    components: dict[int, str] = field(default_factory=dict)
    hotlists: dict[int, str] = field(default_factory=dict)


async def load_history(
    backends: Backends, viewer: Viewer, issue_id: int, *, after_version: int = 0
) -> list[v1.HistoryEntry]:
    """Every entry of an issue (oldest first), optionally only those after a version."""
    entries: list[v1.HistoryEntry] = []
    token = ""
    while True:
        response = await call(
            backends.model.list_history,
            v1.ListHistoryRequest(
                caller=viewer.caller,
                issue_id=issue_id,
                page=v1.PageRequest(page_size=MAX_PAGE_SIZE, page_token=token),
            ),
        )
        entries.extend(e for e in response.entries if e.version > after_version)
        token = response.next_page_token
        if not token:
            return entries


def people_in(entries: Iterable[v1.HistoryEntry]) -> set[str]:
    """Authors and every user value in the entries' changes."""
    found: set[str] = set()
    for entry in entries:
        found.add(entry.author)
        for change in entry.changes:
            if change.field in USER_FIELDS:
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
    """Everything needed to show ``entries`` (and ``issues``) by name, in parallel."""
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
    found_users, found_components, found_hotlists = await asyncio.gather(
        backends.users(users),
        component_paths(backends, viewer, components),
        hotlist_names(backends, viewer, hotlists),
    )
    return Names(users=found_users, components=found_components, hotlists=found_hotlists)
