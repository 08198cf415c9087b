"""Running a search the way every list page does (search, components, users).

A query string is parsed once by the shared parser; the tree goes to
``resolve_query`` (usernames and ``me`` through the Authenticator), then to
the Model, and stays with the results for everything else the page derives
from it (the explanation, the sort links of the column headers). The page gets
the issues plus everything needed to draw them (people, component paths)
fetched in one batch each. Syntax errors come back as data, with the position,
so the page can show the query with the fault marked instead of failing. Which
columns a table shows, and the fields it asks for them: :mod:`bugless_web.result_columns`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bugless_core import limits
from bugless_core.clients import call, resolve_query
from bugless_core.errors import InvalidArgument
from bugless_core.list_columns import custom_column_id
from bugless_core.people_hints import unknown_names, with_people_hint
from bugless_core.search import (
    Query,
    QuerySyntaxError,
    SortField,
    SortSpec,
    explain,
    format_query,
    parse_query,
    refused_part,
    required_user_terms,
)
from bugless_proto import v1
from bugless_web import custom_fields
from bugless_web.backends import Backends, Viewer
from bugless_web.form_errors import message_without_path
from bugless_web.result_columns import COLUMNS, read_mask
from bugless_web.timezones import CallerZone

#: Columns whose header sorts the results (the Model's sort keys).
SORTABLE: dict[str, SortField] = {
    "id": SortField.ID,
    "priority": SortField.PRIORITY,
    "severity": SortField.SEVERITY,
    "title": SortField.TITLE,
    "status": SortField.STATUS,
    "created": SortField.CREATED,
    "modified": SortField.MODIFIED,
}
DEFAULT_HOME_QUERY = "is:open assignee:me"
#: Query texts whose tree, explanation and sort links a process keeps: the
#: same few queries (lists, saved searches, the home page's) fill most pages.
QUERY_MEMO_SIZE = 1024


# A query's tree is a pure function of its text (frozen nodes), and its
# explanation and re-sorted forms of the tree: each is worked out once per
# process and query, not once per page (a list page re-formatted the query for
# every sortable header; parse, explain and sort links were ~4 % of the web
# tier's CPU on a list page, bench/JOURNAL.md "Web tier, #23 sixth pass").
@functools.lru_cache(maxsize=QUERY_MEMO_SIZE)
def _parsed(text: str) -> Query:
    return parse_query(text)


@functools.lru_cache(maxsize=QUERY_MEMO_SIZE)
def _explained(text: str, zone_name: str) -> str:
    return explain(_parsed(text), zone_name=zone_name)


#: Sort links made per query tree, by the tree's identity (one tree per text:
#: :func:`_parsed`); each entry holds its tree, so an id is not reused meanwhile.
_SORT_LINKS: dict[int, tuple[Query, dict[str, str]]] = {}


def _sort_link_query(parsed: Query, column: str) -> str:
    entry = _SORT_LINKS.get(id(parsed))
    if entry is None or entry[0] is not parsed:
        if len(_SORT_LINKS) >= QUERY_MEMO_SIZE:
            _SORT_LINKS.clear()
        entry = _SORT_LINKS[id(parsed)] = (parsed, {})
    links = entry[1]
    link = links.get(column)
    if link is None:
        key = _sort_key(column)
        descending = False
        if parsed.sort and _same_key(parsed.sort[0], key):
            descending = not parsed.sort[0].descending
        resorted = dataclasses.replace(
            parsed, sort=(dataclasses.replace(key, descending=descending),)
        )
        link = links[column] = format_query(resorted)
    return link


@dataclass
class SearchError:
    """A query that could not be parsed or resolved, with where it went wrong.

    ``parsed`` tells the two apart for the heading: ``assignee:nosuch`` is
    good syntax naming nobody, which "does not parse" would misdescribe.
    """

    message: str
    caret: str
    position: int
    length: int
    query: str
    parsed: bool = False

    @property
    def heading(self) -> str:
        """What the error page's heading says went wrong."""
        return "That query cannot be run" if self.parsed else "That query does not parse"

    @property
    def before(self) -> str:
        """Query text before the fault (for highlighting)."""
        return self.query[: self.position]

    @property
    def fault(self) -> str:
        """The faulty part (at least one visible character)."""
        return self.query[self.position : self.position + self.length] or " "

    @property
    def after(self) -> str:
        """Query text after the fault."""
        return self.query[self.position + self.length :]


@dataclass
class SearchResults:
    """One page of a search, ready to render.

    Attributes:
        query: The query as typed.
        parsed: Its tree, parsed once; None when it did not parse (see
            ``error``) or nothing was searched.
        custom_fields: Definitions of the custom fields that apply to the
            page's components, when the page fetched them (the search page
            does, for its bulk menu): the column picker offers these, and
            custom column headers are named from them, since the rows carry
            custom values only when a custom column is shown.
        selected: Check box values (``ID:VERSION``) to show ticked: the
            selection of a refused bulk edit, shown again.
    """

    query: str
    parsed: Query | None = None
    issues: list[v1.Issue] = field(default_factory=list)
    total: int = 0
    total_is_lower_bound: bool = False
    next_page_token: str = ""
    error: SearchError | None = None
    explanation: str = ""
    users: dict[str, v1.User] = field(default_factory=dict)
    components: dict[int, str] = field(default_factory=dict)
    custom_fields: Sequence[v1.CustomField] = ()
    selected: frozenset[str] = frozenset()

    @property
    def sort(self) -> tuple[SortSpec, ...]:
        """The order the query asks for (none: the Model's default)."""
        return self.parsed.sort if self.parsed is not None else ()

    def sort_link_query(self, column: str) -> str:
        """The query text that sorts by ``column`` (toggling the direction).

        Written from the tree parsed once for the page, so a table with a
        sortable header per column does not parse the query again per header.
        A custom field column sorts with ``sort:customfield<ID>``.
        """
        if self.parsed is None:
            return self.query
        return _sort_link_query(self.parsed, column)

    def sort_direction(self, column: str) -> str:
        """``asc``/``desc`` when the results are sorted by this column first, else ``""``."""
        if column not in SORTABLE and not custom_column_id(column):
            return ""
        if not self.sort or not _same_key(self.sort[0], _sort_key(column)):
            return ""
        return "desc" if self.sort[0].descending else "asc"

    def column_label(self, column: str) -> str:
        """A column's header: the built-in label, or the custom field's name on this page."""
        field_id = custom_column_id(column)
        if not field_id:
            return COLUMNS[column]
        for definition in self.custom_fields:
            if definition.id == field_id:
                return definition.name
        for issue in self.issues:
            for value in issue.custom_fields:
                if value.field_id == field_id:
                    return value.name
        return column

    def custom_values(self, issue: v1.Issue, column: str) -> list[str]:
        """An issue's values in a custom field column (people by username)."""
        field_id = custom_column_id(column)
        for value in issue.custom_fields:
            if value.field_id == field_id:
                if value.type is v1.CustomFieldType.USER:
                    return [self.users[u].username if u in self.users else u for u in value.values]
                return list(value.values)
        return []

    def custom_columns(self, chosen: Iterable[str] = ()) -> dict[str, str]:
        """Custom field columns to offer (column: label): those ``chosen`` and the page's.

        The page's are the fields that apply to its components
        (:attr:`custom_fields`), and those with values in its rows (present
        only when a custom column is shown).
        """
        found = {c: self.column_label(c) for c in chosen if custom_column_id(c)}
        for definition in self.custom_fields:
            found.setdefault(f"customfield{definition.id}", definition.name)
        for issue in self.issues:
            for value in issue.custom_fields:
                found.setdefault(f"customfield{value.field_id}", value.name)
        return found


async def _resolved(
    backends: Backends,
    viewer: Viewer,
    parsed: Query,
    *,
    zone: CallerZone,
    today: datetime.date | None = None,
    unknown: set[str] | None = None,
) -> v1.StructuredQuery:
    """``parsed`` resolved; the usernames it names that no one goes by are added to ``unknown``."""
    required = required_user_terms(parsed)

    async def people(names: list[str]) -> dict[str, v1.User]:
        # People named in queries come from the web's user cache: a
        # renamed person's old username resolves to the id it named until
        # the users' change feed says so (or user_cache_seconds).
        found = await backends.query_users(names, required=required)
        if unknown is not None:
            unknown.update(unknown_names(required, found.values()))
        return found

    return await resolve_query(
        parsed,
        backends.auth,
        me=viewer.caller.user_id,
        today=today,
        zone=zone.tz,
        users_by_name=people,
    )


async def structured_query(
    backends: Backends, viewer: Viewer, text: str, *, zone: CallerZone
) -> v1.StructuredQuery:
    """``text`` as the Model takes it, read as the search page reads it (a live list's watch).

    Raises:
        QuerySyntaxError: The text is not a query, or names someone unknown.
    """
    return await _resolved(backends, viewer, _parsed(text), zone=zone)


async def run_search(
    backends: Backends,
    viewer: Viewer,
    text: str,
    *,
    zone: CallerZone,
    today: datetime.date | None = None,
    page_token: str = "",
    page_size: int = 50,
    columns: Sequence[str] | None = None,
) -> SearchResults:
    """Parse, resolve and run ``text``; problems with the query are returned, not raised.

    Days in the query (``today-7``) run midnight to midnight in ``zone``, the
    browser's (:func:`bugless_web.timezones.zone_of`); ``today`` is the date
    there now unless given (pages of one export pass the first page's). With
    ``columns``, the issues carry only what a result table in those columns
    shows (:func:`bugless_web.result_columns.read_mask`); without, every field
    but description and cc.
    """
    results = SearchResults(query=text)
    parsed: Query | None = None
    unknown: set[str] = set()
    try:
        parsed = _parsed(text)
        structured = await _resolved(
            backends, viewer, parsed, zone=zone, today=today, unknown=unknown
        )
    except QuerySyntaxError as problem:
        # A username no one goes by is offered the closest ones ("a:alcie").
        exc = await with_people_hint(backends.auth, problem, unknown) if unknown else problem
        results.error = SearchError(
            message=exc.message,
            caret=exc.render_caret(),
            position=exc.position,
            length=exc.length,
            query=exc.query,
            parsed=parsed is not None,
        )
        return results
    results.parsed = parsed
    results.explanation = _explained(text, zone.name)
    try:
        response = await call(
            backends.model.search_issues,
            v1.SearchIssuesRequest(
                caller=viewer.caller,
                query=structured,
                page=v1.PageRequest(page_size=page_size, page_token=page_token),
                # Lists show no description and no cc: the Model leaves them out.
                summary=True,
                read_mask=read_mask(columns) if columns is not None else None,
            ),
        )
    except InvalidArgument as exc:
        if not exc.metadata.get("field", "").startswith("query"):
            raise
        # What only the Model knows (a custom field no one defined, a value
        # its type refuses) is shown like a syntax error: the query kept in
        # the box, the term marked. It used to be a bare 400 page.
        refused = _refusal_in(parsed, text, exc)
        results.error = SearchError(
            message=refused.message,
            caret=refused.render_caret(),
            position=refused.position,
            length=refused.length,
            query=text,
            parsed=True,
        )
        return results
    results.issues = list(response.issues)
    results.total = response.total_count
    results.total_is_lower_bound = response.total_is_lower_bound
    results.next_page_token = response.next_page_token
    results.users, results.components = await asyncio.gather(
        backends.users(people_of(results.issues)),
        component_paths(backends, viewer, (i.component_id for i in results.issues)),
    )
    return results


async def query_problems(
    backends: Backends, viewer: Viewer, texts: Sequence[str], *, zone: CallerZone
) -> list[str]:
    """Why each of ``texts`` does not run as ``viewer``, as the search page says it; "" if it runs.

    In one ``SearchIssues`` when all of them run: the Model refuses a query
    for one of its terms or sort keys (a component or hotlist the viewer
    may not see, a custom field gone), whatever the tree around it, so the
    filters of every text that parses are sent as one ``OR`` (with their
    sort keys), for a page of one issue. Only when that is refused is each
    run alone (:func:`run_search`), to say which and why; a text the web
    refuses itself (syntax, a username no one goes by) costs no Model call.
    A list of saved searches that all run thus costs one call, not one each.

    Raises:
        BuglessError: The Model could not be asked (an outage), or refused
            the one query for a reason that is not the query's.
    """
    problems = [""] * len(texts)

    async def resolved(text: str) -> v1.StructuredQuery | None:
        try:
            return await _resolved(backends, viewer, _parsed(text), zone=zone)
        except QuerySyntaxError:
            return None

    answers = await asyncio.gather(*(resolved(text) for text in texts))
    parsed = {index: query for index, query in enumerate(answers) if query is not None}
    alone = [index for index in range(len(texts)) if index not in parsed]
    sort_keys: dict[bytes, v1.SortKey] = {}
    for query in parsed.values():
        for key in query.order_by:
            sort_keys.setdefault(bytes(key), key)
    if len(sort_keys) > limits.MAX_SORT_KEYS:  # not all checkable in one query: each alone
        alone, parsed = list(range(len(texts))), {}
    if parsed:
        nodes = [query.filter or v1.SearchNode() for query in parsed.values()]
        combined = v1.StructuredQuery(
            filter=v1.SearchNode(any_of=v1.SearchNodeList(nodes=nodes)),
            order_by=list(sort_keys.values()),
        )
        try:
            await call(
                backends.model.search_issues,
                v1.SearchIssuesRequest(
                    caller=viewer.caller,
                    query=combined,
                    page=v1.PageRequest(page_size=1),
                    summary=True,
                    read_mask=read_mask(("id",)),
                ),
            )
        except InvalidArgument as exc:
            if not exc.metadata.get("field", "").startswith("query"):
                raise
            alone += parsed  # one of them is refused: which, each alone says
    results = await asyncio.gather(
        *(
            run_search(backends, viewer, texts[i], zone=zone, page_size=1, columns=("id",))
            for i in alone
        )
    )
    for index, result in zip(alone, results, strict=True):
        problems[index] = result.error.message if result.error else ""
    return problems


def _refusal_in(parsed: Query, text: str, exc: InvalidArgument) -> QuerySyntaxError:
    """The Model's refusal of a query, at the part it names (:func:`refused_part`), or all of it."""
    span = refused_part(parsed, exc.metadata)
    start, end = (span.start, span.end) if span is not None else (0, len(text))
    return QuerySyntaxError(text, start, end - start, message_without_path(exc.message))


async def name_custom_columns(
    backends: Backends, viewer: Viewer, results: SearchResults, columns: Iterable[str]
) -> None:
    """Add to ``results`` the definitions of chosen custom columns it cannot name.

    A page names a custom column from the fields of its rows' components and
    the values its rows carry; a page with no row of such a component (an
    empty result, or one field among several components) showed the header
    ``customfield12``. Those are looked up among the fields the viewer sees
    (:func:`bugless_web.custom_fields.visible_fields`); one still unknown
    (deleted, or not visible) keeps its key.
    """
    unnamed = {
        custom_column_id(c) for c in columns if custom_column_id(c) and results.column_label(c) == c
    }
    if not unnamed:
        return
    visible = await custom_fields.visible_fields(backends, viewer)
    results.custom_fields = [*results.custom_fields, *(f for f in visible if f.id in unnamed)]


def _sort_key(column: str) -> SortSpec:
    field_id = custom_column_id(column)
    if field_id:
        return SortSpec(SortField.CUSTOM, custom_field_id=field_id)
    return SortSpec(SORTABLE[column])


def _same_key(spec: SortSpec, key: SortSpec) -> bool:
    return spec.field is key.field and spec.custom_field_id == key.custom_field_id


def people_of(issues: Sequence[v1.Issue]) -> set[str]:
    """Every user reference a list of issues shows (USER custom fields included)."""
    found: set[str] = set()
    for issue in issues:
        found.update((issue.reporter, issue.assignee, issue.verifier, *issue.cc))
        for value in issue.custom_fields:
            if value.type is v1.CustomFieldType.USER:
                found.update(value.values)
    return found - {""}


async def component_paths(
    backends: Backends, viewer: Viewer, component_ids: Iterable[int]
) -> dict[int, str]:
    """``Platform>Storage`` for each component id (0 ignored).

    Read from the caller's cached component tree (one paged ``ListComponents``
    every ``component_cache_seconds``, see :meth:`Backends.components`), not
    one ``GetComponent`` per component: a renamed component may show its old
    path for those few seconds.
    """
    return await backends.component_paths(viewer, component_ids)


__all__ = [
    "DEFAULT_HOME_QUERY",
    "SORTABLE",
    "SearchResults",
    "component_paths",
    "name_custom_columns",
    "run_search",
    "structured_query",
]
