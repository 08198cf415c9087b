"""An issue's neighbours, for its page: parent chain, children, blockers, duplicates.

Each is shown with its status, title and assignee, never as a bare number, at
a fixed cost per page whatever the number of relations: one
``BatchGetIssues`` for the ids the issue names (parent, duplicate of,
blocking, blocked by), one ``SearchIssues`` for the issues that name it
(``parentid:N OR canonicalid:N``: children and duplicates; skipped when the
Model, declaring ``relation_flags``, says no issue does), and for the
breadcrumb one ``BatchGetIssues`` of one id per ancestor above the parent, at most
:data:`MAX_ANCESTORS` levels (deeper trees show "…" at the top).
Issues the viewer may not see are listed by number only. The batch reads ask
only for what the page shows (:data:`_SHOWN_NAMED`; the search its own mask).
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass, field

from bugless_core.clients import call
from bugless_core.limits import MAX_PAGE_SIZE
from bugless_core.search import parse_query, to_structured
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web.backends import Backends, Viewer

#: Ancestors shown above the issue in the breadcrumb (the parent included).
MAX_ANCESTORS = 6
#: Children and duplicates listed (together); more links to the search.
MAX_LISTED = 100
#: The Model capability saying that ``Issue.has_children`` and
#: ``has_duplicates`` are filled (``bugless_core.model.backend.Capability``;
#: named here, since importing ``bugless_core.model`` loads the servicer,
#: which the web tier does not need: test_package.py).
RELATION_FLAGS = "relation_flags"
#: What the page shows of an issue the issue names (its row, the side panel's
#: reference, the breadcrumb) and the parent id the breadcrumb climbs by: the
#: Model sends only these (and the id), not descriptions nor cc lists. A Model
#: that predates ``BatchGetIssuesRequest.read_mask`` sends whole issues.
_SHOWN_NAMED = FieldMask(paths=["assignee", "parent_id", "status", "title"])


@dataclass(frozen=True)
class RelationGroup:
    """One list of the "related issues" section: its anchor, heading and issue ids."""

    key: str
    heading: str
    ids: list[int]


@dataclass
class Relations:
    """What an issue page shows about the issues around it.

    Attributes:
        issues: The issues the issue names, by id (invisible ones absent).
        children: Issues whose parent is this one (at most :data:`MAX_LISTED`
            together with ``duplicates``).
        duplicates: Issues marked duplicates of this one.
        listed_query: The search that lists children and duplicates.
        more: Whether that search has more than was listed.
        ancestors: The parent chain, root-most first, the parent last.
        ancestors_cut: The chain goes on above ``ancestors[0]``.
    """

    issues: dict[int, v1.Issue] = field(default_factory=dict)
    children: list[v1.Issue] = field(default_factory=list)
    duplicates: list[v1.Issue] = field(default_factory=list)
    listed_query: str = ""
    more: bool = False
    ancestors: list[v1.Issue] = field(default_factory=list)
    ancestors_cut: bool = False

    def groups(self, issue: v1.Issue) -> list[RelationGroup]:
        """The non-empty lists of the page's "related issues" section, in page order."""
        groups = [
            RelationGroup("children", "Child issues", [i.id for i in self.children]),
            RelationGroup("blocking", "Blocking", list(issue.blocking_ids)),
            RelationGroup("blocked-by", "Blocked by", list(issue.blocked_by_ids)),
            RelationGroup(
                "duplicates", "Duplicates of this issue", [i.id for i in self.duplicates]
            ),
            RelationGroup(
                "duplicate-of",
                "Duplicate of",
                [issue.duplicate_of_id] if issue.duplicate_of_id else [],
            ),
        ]
        return [g for g in groups if g.ids]

    def shown(self, issue_id: int) -> v1.Issue | None:
        """A related issue by id, or None when the viewer may not see it."""
        found = self.issues.get(issue_id)
        if found is not None:
            return found
        return next((i for i in (*self.children, *self.duplicates) if i.id == issue_id), None)

    def people(self) -> set[str]:
        """The assignees shown, to look up in one batch."""
        shown = [*self.issues.values(), *self.children, *self.duplicates]
        return {i.assignee for i in shown} - {""}


async def load_relations(backends: Backends, viewer: Viewer, issue: v1.Issue) -> Relations:
    """Everything :class:`Relations` holds for ``issue`` (see the module docstring)."""
    relations = Relations(listed_query=f"parentid:{issue.id} OR canonicalid:{issue.id}")
    if await _may_be_named(backends, issue):
        named, naming = await asyncio.gather(
            _named_by(backends, viewer, issue), _naming(backends, viewer, relations.listed_query)
        )
        relations.children = [i for i in naming.issues if i.parent_id == issue.id]
        relations.duplicates = [i for i in naming.issues if i.duplicate_of_id == issue.id]
        relations.more = bool(naming.next_page_token)
    else:
        named = await _named_by(backends, viewer, issue)  # no task for one awaitable
    relations.issues = named
    relations.ancestors, relations.ancestors_cut = await _ancestors(
        backends, viewer, issue, named.get(issue.parent_id)
    )
    return relations


async def _may_be_named(backends: Backends, issue: v1.Issue) -> bool:
    """Whether some issue may name ``issue`` as its parent or canonical issue.

    Most issues have neither children nor duplicates, and the search for them
    was a third of an issue page's calls to the Model. A Model declaring
    ``relation_flags`` says on the issue itself whether there are any; from
    one that does not, both flags are always false, so the search is made.
    """
    if issue.has_children or issue.has_duplicates:
        return True
    return RELATION_FLAGS not in await backends.capabilities()


async def _named_by(backends: Backends, viewer: Viewer, issue: v1.Issue) -> dict[int, v1.Issue]:
    ids = {*issue.blocking_ids, *issue.blocked_by_ids, issue.parent_id, issue.duplicate_of_id}
    ids.discard(0)
    if not ids:
        return {}
    response = await call(
        backends.model.batch_get_issues,
        v1.BatchGetIssuesRequest(
            caller=viewer.caller, issue_ids=sorted(ids), read_mask=_SHOWN_NAMED
        ),
    )
    return {i.id: i for i in response.issues}


async def _naming(backends: Backends, viewer: Viewer, query: str) -> v1.SearchIssuesResponse:
    """Children and duplicates, oldest first, in one search.

    The query names no people and no dates, so it needs no look-up: it is
    translated here rather than through :func:`bugless_core.clients.resolve_query`.
    """
    structured = to_structured(
        parse_query(f"{query} sort:id"),
        me=viewer.caller.user_id,
        users={},
        today=datetime.datetime.now(datetime.UTC).date(),
    )
    return await call(
        backends.model.search_issues,
        v1.SearchIssuesRequest(
            caller=viewer.caller,
            query=structured,
            page=v1.PageRequest(page_size=min(MAX_LISTED, MAX_PAGE_SIZE)),
            summary=True,
            # What the relation lists show, and what tells children from duplicates.
            read_mask=FieldMask(
                paths=["assignee", "duplicate_of_id", "parent_id", "status", "title"]
            ),
        ),
    )


async def _ancestors(
    backends: Backends, viewer: Viewer, issue: v1.Issue, parent: v1.Issue | None
) -> tuple[list[v1.Issue], bool]:
    """The chain above ``issue``, root-most first, and whether it was cut short."""
    chain: list[v1.Issue] = []
    seen = {issue.id}
    current = parent
    while current is not None and current.id not in seen:
        chain.append(current)
        seen.add(current.id)
        if not current.parent_id or current.parent_id in seen:
            return chain[::-1], False
        if len(chain) >= MAX_ANCESTORS:
            return chain[::-1], True
        above = await call(
            backends.model.batch_get_issues,
            v1.BatchGetIssuesRequest(
                caller=viewer.caller, issue_ids=[current.parent_id], read_mask=_SHOWN_NAMED
            ),
        )
        if not above.issues:  # gone, or not visible to the viewer
            return chain[::-1], True
        current = above.issues[0]
    return chain[::-1], False
