"""The home page: the lists a person works from every day, each a search.

Every section is a query in the search language, run as one ``SearchIssues``
(all at once), and links to the full search. "My components" needs two
steps: first the components that are the viewer's, then the recent changes
in them (one more search). A person's components are:

- those whose own ACL names them or one of their groups (any role), and
- those of the issues they reported, are assigned or verify that changed in
  the last :data:`TOUCHED_DAYS` days (what they recently worked on).

At most :data:`MAX_MY_COMPONENTS` of them are searched (ACL ones first,
then by how many of the person's issues they hold), subtrees included.
"CC'd or starred" lists the open issues that CC the person or that they
starred (``cc:me OR star:me``): both are ways of following an issue.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get

from bugless_proto import v1
from bugless_web.backends import Backends, Viewer
from bugless_web.frontend import frontend_of, optional_viewer, redirect, render
from bugless_web.searching import DEFAULT_HOME_QUERY, SearchResults, run_search
from bugless_web.timezones import CallerZone, zone_of

#: Rows each section shows; "all N" links to the whole search.
SECTION_ROWS = 10
#: How far back "recently touched" and "recently changed" look, in days.
TOUCHED_DAYS = 30
RECENT_DAYS = 7
#: Most components the "my components" section searches.
MAX_MY_COMPONENTS = 20
#: Issues looked at to find the components a person recently worked in.
TOUCHED_SAMPLE = 200
#: Columns of the section tables (narrow: several sections share the page).
HOME_COLUMNS = ("id", "priority", "title", "assignee", "status", "modified")


@dataclass
class Section:
    """One list on the home page."""

    key: str
    title: str
    query: str
    results: SearchResults
    explanation: str = ""


async def my_components(backends: Backends, viewer: Viewer, zone: CallerZone) -> list[int]:
    """The component ids the "my components" section covers (see the module docstring)."""
    on_acl = [
        c.id
        for c in await backends.components(viewer)
        if not c.archived and any(_names_viewer(e, viewer) for e in c.acl)
    ]
    touched = await run_search(
        backends,
        viewer,
        f"(reporter:me OR assignee:me OR verifier:me) modified>today-{TOUCHED_DAYS}",
        zone=zone,
        page_size=TOUCHED_SAMPLE,
        columns=(),
    )
    counts = Counter(i.component_id for i in touched.issues)
    chosen = list(dict.fromkeys([*on_acl, *(c for c, _ in counts.most_common())]))
    return chosen[:MAX_MY_COMPONENTS]


def _names_viewer(entry: v1.AclEntry, viewer: Viewer) -> bool:
    principal = entry.principal
    if principal is None:
        return False
    if principal.user:
        return principal.user == viewer.caller.user_id
    return bool(principal.group) and principal.group in viewer.caller.groups


def components_query(component_ids: list[int]) -> str:
    """Recent changes in the subtrees of ``component_ids``, newest first."""
    subtrees = " OR ".join(f"componentid:{c}+" for c in component_ids)
    return f"({subtrees}) modified>today-{RECENT_DAYS} sort:-modified"


@get("/")
async def home(request: Request[Any, Any, Any]) -> Response[Any]:
    """The day-to-day lists when signed in; the sign-in page otherwise."""
    viewer = await optional_viewer(request)
    if viewer is None:
        return redirect("/signin")
    backends = frontend_of(request).backends
    zone = zone_of(request)
    plain = [
        ("assigned", "Assigned to me", DEFAULT_HOME_QUERY + " sort:-modified"),
        ("verify", "To verify", "verifier:me status:fixed sort:-modified"),
        ("reported", "I reported", "reporter:me is:open sort:-modified"),
        ("cc", "CC'd or starred", "(cc:me OR star:me) is:open sort:-modified"),
    ]
    found, mine = await asyncio.gather(
        asyncio.gather(
            *(
                run_search(
                    backends, viewer, query, zone=zone, page_size=SECTION_ROWS, columns=HOME_COLUMNS
                )
                for _, _, query in plain
            )
        ),
        my_components(backends, viewer, zone),
    )
    sections = [
        Section(key, title, query, results)
        for (key, title, query), results in zip(plain, found, strict=True)
    ]
    explanation = (
        f"Changed in the last {RECENT_DAYS} days in components whose access list names you "
        f"or your groups, and in those of issues you reported, are assigned or verify "
        f"that changed in the last {TOUCHED_DAYS} days."
    )
    query = components_query(mine) if mine else ""
    results = (
        await run_search(
            backends, viewer, query, zone=zone, page_size=SECTION_ROWS, columns=HOME_COLUMNS
        )
        if mine
        else SearchResults(query="")
    )
    sections.append(
        Section("components", "Recently changed in my components", query, results, explanation)
    )
    return render(
        request,
        "home.html",
        {"sections": sections, "columns": HOME_COLUMNS, "title": "Home"},
        viewer=viewer,
    )


ROUTES = [home]
