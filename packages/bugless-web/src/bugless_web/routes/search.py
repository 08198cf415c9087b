"""The search page and bulk edit (saved searches: :mod:`bugless_web.routes.saved_searches`)."""

from __future__ import annotations

import asyncio
import functools
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litestar import Request, Response, get, post

from bugless_core.clients import call
from bugless_core.enums import enum_by_name
from bugless_core.errors import BuglessError, InvalidArgument, NotFound
from bugless_core.limits import MAX_BATCH_CHANGE
from bugless_core.viewer_warnings import people_in_fields
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web import custom_fields
from bugless_web.backends import Backends, Viewer
from bugless_web.form_errors import message_without_path
from bugless_web.frontend import (
    form_int,
    frontend_of,
    redirect,
    render,
    session_of,
    viewer_of,
)
from bugless_web.paging import PageLink, PageTrail, page_count
from bugless_web.result_columns import COLUMNS, columns_of, remember_columns
from bugless_web.routes.live_list import list_position
from bugless_web.searching import SORTABLE, name_custom_columns, run_search
from bugless_web.settings import MAX_PAGE_SIZE, PAGE_SIZES
from bugless_web.timezones import zone_of
from bugless_web.viewer_warnings import viewer_warning


@functools.lru_cache(maxsize=32)
def page_sizes(default: int, current: int) -> tuple[int, ...]:
    """The sizes the table's menu offers: :data:`PAGE_SIZES`, the deployment's default, this page's.

    A size given in the URL that the menu lacks is offered too, so that the
    menu shows the page as it is (a browser would show the first size chosen).
    """
    return tuple(sorted({*PAGE_SIZES, default, current}))


#: A page size as typed into a URL: an optional minus sign and digits
#: (``int()`` would also take ``"1_0"``, ``"+10"`` and other scripts' digits).
_PAGE_SIZE_TEXT = re.compile(r"-?[0-9]+")


def _page_size(request: Request[Any, Any, Any], params: Mapping[str, str]) -> int:
    """The page's size: ``page_size`` (any of 1 to :data:`MAX_PAGE_SIZE`), else the default.

    ``params`` are the page's address's (a bulk edit's form carries them).

    Like the API's ``page_size``, a size that cannot be served is refused
    with the reason rather than quietly replaced by another.

    Raises:
        InvalidArgument: The size is not a whole number from 1 to :data:`MAX_PAGE_SIZE`.
    """
    text = (params.get("page_size") or "").strip()
    if not text:
        return frontend_of(request).settings.page_size
    shown = text if len(text) <= 20 else text[:20] + "…"
    if not _PAGE_SIZE_TEXT.fullmatch(text):
        msg = f"page_size: {shown!r} is not a number; give 1 to {MAX_PAGE_SIZE} issues per page"
        raise InvalidArgument(msg)
    size = int(text) if len(text) <= 6 else 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        msg = f"page_size: {shown} is outside 1 to {MAX_PAGE_SIZE} issues per page"
        raise InvalidArgument(msg)
    return size


#: Links kept by :func:`search_href` and :func:`_export_href`: the same few
#: queries' pager and export links fill most list pages.
LINK_MEMO_SIZE = 1024


@functools.lru_cache(maxsize=LINK_MEMO_SIZE)
def search_href(query: str, columns: tuple[str, ...], page_size: int, link: PageLink | None) -> str:
    """The URL of a search page (``page_token`` last, so it reads as the page's position).

    Kept per query, columns and link (a pure function of them): URL-encoding
    the page's four or five links was a few per cent of a list page's CPU.
    """
    params = {"q": query, "columns": ",".join(columns), "page_size": str(page_size)}
    if link is not None and link.trail:
        params["trail"] = link.trail
    if link is not None and link.page_token:
        params["page_token"] = link.page_token
    return "/search?" + urllib.parse.urlencode(params)


@functools.lru_cache(maxsize=LINK_MEMO_SIZE)
def _export_href(query: str, columns: tuple[str, ...]) -> str:
    """The CSV export's URL of a search (kept as :func:`search_href`)."""
    return "/search.csv?" + urllib.parse.urlencode({"q": query, "columns": ",".join(columns)})


#: Where the bulk form was sent from: its search page's size and position
#: (hidden fields), so a refusal shows that page again and a change returns
#: to it, with the rows that were ticked on it.
PAGE_FIELDS = ("page_size", "page_token", "trail")
#: The bulk form's fields that come back as typed when the edit is refused.
BULK_FIELDS = (
    "status",
    "priority",
    "assignee",
    "cc_add",
    "hotlist_add",
    "hotlist_remove",
    "custom_field",
    "custom_value",
    "comment",
)


@dataclass
class RefusedBulkEdit:
    """A bulk edit refused before any issue changed, shown again on its search page.

    Attributes:
        problem: Why, as the service or the form check said it.
        values: What was typed or chosen in each of :data:`BULK_FIELDS`.
        selected: The rows' check box values (``ID:VERSION``) that were
            ticked; a row shown at another version now stays unticked, so
            sending again cannot overwrite a change made meanwhile.
        page: The search page the form was on (:data:`PAGE_FIELDS`).
    """

    problem: str
    values: dict[str, str] = field(default_factory=dict)
    selected: frozenset[str] = frozenset()
    page: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_form(cls, form: Any, problem: str) -> RefusedBulkEdit:
        """The refused form's values, as posted."""
        return cls(
            problem=problem,
            values={name: str(form.get(name, "") or "") for name in BULK_FIELDS},
            selected=frozenset(str(value) for value in form.getall("issue", [])),
            page=page_of(form),
        )


def page_of(form: Any) -> dict[str, str]:
    """The search page a bulk form was sent from (:data:`PAGE_FIELDS`, those given)."""
    return {name: str(form.get(name)) for name in PAGE_FIELDS if form.get(name)}


async def _search_page(
    request: Request[Any, Any, Any], text: str, refused: RefusedBulkEdit | None = None
) -> Response[str]:
    viewer = await viewer_of(request)
    frontend = frontend_of(request)
    params: Mapping[str, str] = request.query_params if refused is None else refused.page
    columns = columns_of(request)
    page_size = _page_size(request, params)
    trail = PageTrail.from_params(params.get("page_token", ""), params.get("trail", ""))
    # Before the search, so the list's stream hears what changes after it ran.
    live_after = await list_position(frontend.backends, viewer)
    results, hotlists, capabilities = await asyncio.gather(
        run_search(
            frontend.backends,
            viewer,
            text,
            zone=zone_of(request),
            page_token=trail.page_token,
            page_size=page_size,
            columns=columns,
        ),
        frontend.backends.my_hotlists(viewer),
        frontend.backends.capabilities(),
    )
    bulk_fields = await custom_fields.fields_of_components(
        frontend.backends, viewer, (i.component_id for i in results.issues)
    )
    results.custom_fields = bulk_fields
    await name_custom_columns(frontend.backends, viewer, results, columns)
    if refused is not None:
        results.selected = refused.selected
    previous = trail.previous_link()
    response = render(
        request,
        "search.html",
        {
            "results": results,
            "search_query": text,
            "columns": columns,
            "all_columns": COLUMNS,
            "sortable": SORTABLE,
            "columns_param": ",".join(columns),
            "page_size": page_size,
            "page_sizes": page_sizes(frontend.settings.page_size, page_size),
            "page_number": trail.number,
            "this_page": trail.link(trail.number),
            "page_total": page_count(results.total, page_size),
            "page_links": [
                (link, search_href(text, columns, page_size, link))
                for link in trail.numbered(results.next_page_token)
            ],
            "previous_href": search_href(text, columns, page_size, previous) if previous else "",
            "next_href": search_href(
                text, columns, page_size, trail.next_link(results.next_page_token)
            )
            if results.next_page_token
            else "",
            "export_href": _export_href(text, columns),
            "export_cap": frontend.settings.export_row_cap,
            "my_hotlists": hotlists,
            "bulk_fields": bulk_fields,
            "refused_bulk": refused,
            # The list hears what changes in it (bugless_web.routes.live_list).
            "live": "watch" in capabilities,
            "live_after": live_after,
        },
        status_code=400 if results.error or refused else 200,
        viewer=viewer,
    )
    remember_columns(request, response, columns)
    return response


#: What the search box takes as "open this issue": ``301``, ``#301``, ``b/301``.
_ISSUE_NUMBER = re.compile(r"\s*(?:#|b/)?([0-9]{1,19})\s*", re.IGNORECASE)
_MAX_ISSUE_ID = 2**63 - 1


async def _issue_named_by(request: Request[Any, Any, Any], text: str) -> int:
    """The issue ``text`` names by number, if it exists and the viewer may see it; else 0."""
    match = _ISSUE_NUMBER.fullmatch(text)
    if match is None or int(match.group(1)) > _MAX_ISSUE_ID or not int(match.group(1)):
        return 0
    viewer = await viewer_of(request)
    try:
        issue = await call(
            frontend_of(request).backends.model.get_issue,
            v1.GetIssueRequest(caller=viewer.caller, issue_id=int(match.group(1))),
        )
    except NotFound:
        return 0
    return issue.id


@get("/search")
async def search(request: Request[Any, Any, Any]) -> Response[Any]:
    """Any query in the search language (``q=``), paged by token.

    A query that is only an issue number (``301``, ``#301``, ``b/301``) opens
    that issue when it exists and the viewer may see it; otherwise it is
    searched for like any other text (so a number in titles is still found).
    """
    text = request.query_params.get("q", "")
    issue_id = 0 if request.query_params.get("page_token") else await _issue_named_by(request, text)
    if issue_id:
        return redirect(f"/issues/{issue_id}")
    return await _search_page(request, text)


def _return_to_search(form: Any) -> str:
    """The search page the bulk form was sent from: its query, size and position."""
    params = {"q": str(form.get("q", "")), **page_of(form)}
    return "/search?" + urllib.parse.urlencode(params)


async def _return_after_bulk_edit(
    request: Request[Any, Any, Any], viewer: Viewer, form: Any
) -> str:
    """The search page to show after a bulk edit: the one it was sent from, if it has rows.

    An edit can empty the page it was made on (closing every row of the last
    page under ``is:open``): the person would land on an empty page N with
    the pager pointing back. The nearest earlier page that has rows is
    shown instead, found by walking back the page trail (page 1 at worst,
    which is shown even when empty). Anything that keeps the page from being
    read (a trail or size this site did not write, the Model unavailable)
    leaves the address as the form gave it: the edit is done, and that page
    says what is wrong.
    """
    text = str(form.get("q", ""))
    page = page_of(form)
    try:
        trail = PageTrail.from_params(page.get("page_token", ""), page.get("trail", ""))
        size = _page_size(request, page)
        while trail.number > 1:
            results = await run_search(
                frontend_of(request).backends,
                viewer,
                text,
                zone=zone_of(request),
                page_token=trail.page_token,
                page_size=size,
                columns=(),
            )
            if results.issues or results.error:
                break
            previous = trail.previous_link()
            assert previous is not None  # only page 1 has none
            trail = PageTrail.from_params(previous.page_token, previous.trail)
    except BuglessError:
        return _return_to_search(form)
    here = trail.link(trail.number)
    params = {"q": text}
    if "page_size" in page:
        params["page_size"] = page["page_size"]
    if here.trail:
        params["trail"] = here.trail
    if here.page_token:
        params["page_token"] = here.page_token
    return "/search?" + urllib.parse.urlencode(params)


@post("/issues/bulk")
async def bulk_edit(request: Request[Any, Any, Any]) -> Response[Any]:
    """Apply one delta to the selected rows with one BatchChangeIssues.

    Each row carries the version it was shown at, so an issue someone else
    changed meanwhile fails with a conflict instead of being overwritten; the
    others are changed (non-atomic), and the page says which was which.
    """
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()
    try:
        selected, delta = await _bulk_change(backends, form)
        response = await call(
            backends.model.batch_change_issues,
            v1.BatchChangeIssuesRequest(
                caller=viewer.caller,
                issues=selected,
                delta=delta,
                comment=str(form.get("comment", "")),
                atomic=False,
            ),
        )
    except InvalidArgument as exc:
        # Nothing changed: the search again, the selection and what was typed kept.
        refused = RefusedBulkEdit.from_form(form, exc.message)
        return await _search_page(request, str(form.get("q", "")), refused)
    await _warn_after_bulk_edit(request, viewer, delta, response.results)
    failed = [r for r in response.results if r.code != 0]
    if not failed:
        count = len(response.results)
        session_of(request).update(notice=f"Changed {count} issue{'' if count == 1 else 's'}.")
        return redirect(await _return_after_bulk_edit(request, viewer, form))
    # Each reason without the request path the Model starts it with
    # (``delta.custom_fields_set[0].field_id: ``): no field of this page.
    reasons = {r.issue_id: message_without_path(r.message) for r in failed}
    return render(
        request,
        "bulk_result.html",
        {"results": response.results, "reasons": reasons, "return_to": _return_to_search(form)},
        status_code=409 if all(r.code == 10 for r in failed) else 400,
        viewer=viewer,
    )


async def _warn_after_bulk_edit(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    delta: v1.IssueDelta,
    results: Sequence[v1.BatchChangeResult],
) -> None:
    """Warn of the people the edit named who cannot view the issues it changed.

    One ``CheckViewers`` per component of the changed issues (at most
    :data:`~bugless_web.viewer_warnings.MAX_BULK_COMPONENTS`, at once), for
    the assignee it set, the people it added to CC and the person it put in
    a custom field of type USER.
    """
    fields = delta.fields or v1.IssueFields()
    paths = delta.update_mask.paths if delta.update_mask else []
    people = [fields.assignee] if "assignee" in paths and fields.assignee else []
    people += delta.cc_add
    # The delta's value carries no type; the changed issues' values say which are people.
    set_ids = {value.field_id for value in delta.custom_fields_set}
    people += [
        person
        for result in results
        if result.code == 0 and result.issue is not None
        for value in result.issue.custom_fields
        if value.field_id in set_ids
        for person in people_in_fields(v1.Issue(custom_fields=[value]))
    ]
    if not people:
        return
    issues: dict[int, list[int]] = {}
    for result in results:
        if result.code == 0 and result.issue is not None:
            issues.setdefault(result.issue.component_id, []).append(result.issue_id)
    warning = await viewer_warning(
        frontend_of(request).backends,
        viewer,
        {component_id: people for component_id in issues},
        issue_ids=issues,
    )
    if warning:
        session_of(request).update(warning=warning)


async def _bulk_change(
    backends: Backends, form: Any
) -> tuple[list[v1.IssueVersion], v1.IssueDelta]:
    """The rows a bulk edit names and the one delta it applies to them.

    Raises:
        InvalidArgument: No row, too many, or a value the form cannot take
            (an unknown user, a malformed number); nothing is sent then.
    """
    selected: list[v1.IssueVersion] = []
    for value in form.getall("issue", []):
        issue_id, _, version = str(value).partition(":")
        selected.append(
            v1.IssueVersion(
                issue_id=form_int(issue_id, "issue"), expected_version=form_int(version, "issue")
            )
        )
    if not selected:
        raise InvalidArgument("select at least one issue for a bulk edit")
    if len(selected) > MAX_BATCH_CHANGE:
        msg = f"select at most {MAX_BATCH_CHANGE} issues for one bulk edit"
        raise InvalidArgument(msg)
    fields = v1.IssueFields()
    paths: list[str] = []
    if status := str(form.get("status", "")):
        fields.status = enum_by_name(v1.Status, status, "status")
        paths.append("status")
    if priority := str(form.get("priority", "")):
        fields.priority = enum_by_name(v1.Priority, priority, "priority")
        paths.append("priority")
    assignee = str(form.get("assignee", "")).strip()
    cc_add = [u for u in str(form.get("cc_add", "")).replace(",", " ").split() if u]
    people = await backends.users_by_name([assignee, *cc_add] if assignee != "none" else cc_add)
    if assignee:
        if assignee == "none":
            fields.assignee = ""
        elif assignee in people:
            fields.assignee = people[assignee].user_id
        else:
            msg = f"assignee: no user named {assignee!r}"
            raise InvalidArgument(msg)
        paths.append("assignee")
    unknown = [u for u in cc_add if u not in people]
    if unknown:
        msg = f"cc: no user named {', '.join(map(repr, unknown))}"
        raise InvalidArgument(msg)
    hotlist = form_int(str(form.get("hotlist_add", "")), "hotlist")
    # A hotlist's page links here (hotlistid:N): taking several issues off it
    # at once is the other half of adding them.
    leaving = form_int(str(form.get("hotlist_remove", "")), "hotlist")
    if hotlist and hotlist == leaving:
        # The Model would refuse it too, but by the delta's wire path and an id.
        raise InvalidArgument(
            "Add to hotlist and Remove from hotlist name the same hotlist: choose one of them"
        )
    delta = v1.IssueDelta(
        fields=fields,
        update_mask=FieldMask(paths=paths),
        cc_add=[people[u].user_id for u in cc_add],
        hotlist_add=[hotlist] if hotlist else [],
        hotlist_remove=[leaving] if leaving else [],
        custom_fields_set=await _bulk_custom_value(backends, form),
    )
    return selected, delta


async def _bulk_custom_value(backends: Backends, form: Any) -> list[v1.CustomFieldValue]:
    """The custom field value a bulk edit sets (``custom_field`` ``ID:type``; empty clears).

    The type in the picker's value only says how to read what was typed
    (a username, a comma list); the Model checks the value against the
    field itself, and an issue the field does not apply to fails alone.
    """
    chosen = str(form.get("custom_field", "") or "")
    if not chosen:
        return []
    field_text, _, type_name = chosen.partition(":")
    field_id = form_int(field_text, "custom_field")
    typed = str(form.get("custom_value", "") or "").strip()
    values = [typed] if typed else []
    if type_name == "ENUM_MULTI":
        values = [part.strip() for part in typed.split(",") if part.strip()]
    elif type_name == "USER" and typed:
        found = await backends.users_by_name([typed])
        if typed not in found:
            raise InvalidArgument(f"custom_value: no user named {typed!r}")
        values = [found[typed].user_id]
    return [v1.CustomFieldValue(field_id=field_id, values=values)]


ROUTES = [search, bulk_edit]
