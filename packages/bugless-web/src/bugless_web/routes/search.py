"""The search page (also the home page), bulk edit, and saved searches."""

from __future__ import annotations

import urllib.parse
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from bugless_core.clients import call
from bugless_core.errors import InvalidArgument
from bugless_core.limits import MAX_BATCH_CHANGE
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web.frontend import (
    form_int,
    frontend_of,
    optional_viewer,
    path_id,
    redirect,
    render,
    session_of,
    viewer_of,
)
from bugless_web.searching import (
    COLUMNS,
    DEFAULT_HOME_QUERY,
    SORTABLE,
    parse_columns,
    run_search,
)

#: Page sizes the result table offers.
PAGE_SIZES = (25, 50, 100, 200)


async def _search_page(request: Request[Any, Any, Any], text: str) -> Response[str]:
    viewer = await viewer_of(request)
    frontend = frontend_of(request)
    params = request.query_params
    columns = parse_columns(params.get("columns"))
    try:
        page_size = int(params.get("page_size") or frontend.settings.page_size)
    except ValueError:
        page_size = frontend.settings.page_size
    page_size = page_size if page_size in PAGE_SIZES else frontend.settings.page_size
    results = await run_search(
        frontend.backends,
        viewer,
        text,
        page_token=params.get("page_token", ""),
        page_size=page_size,
    )
    hotlists = await call(
        frontend.backends.model.list_hotlists,
        v1.ListHotlistsRequest(
            caller=viewer.caller, member=viewer.caller.user_id, page=v1.PageRequest(page_size=100)
        ),
    )
    return render(
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
            "page_sizes": PAGE_SIZES,
            "first_page": not params.get("page_token"),
            "my_hotlists": hotlists.hotlists,
        },
        status_code=400 if results.error else 200,
        viewer=viewer,
    )


@get("/")
async def home(request: Request[Any, Any, Any]) -> Response[Any]:
    """My open issues when signed in; the sign-in page otherwise."""
    if await optional_viewer(request) is None:
        return redirect("/signin")
    return await _search_page(request, DEFAULT_HOME_QUERY)


@get("/search")
async def search(request: Request[Any, Any, Any]) -> Response[str]:
    """Any query in the search language (``q=``), paged by token."""
    return await _search_page(request, request.query_params.get("q", ""))


def _return_to_search(form: Any) -> str:
    query = str(form.get("q", ""))
    return "/search?" + urllib.parse.urlencode({"q": query})


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
        fields.status = _enum(v1.Status, status, "status")
        paths.append("status")
    if priority := str(form.get("priority", "")):
        fields.priority = _enum(v1.Priority, priority, "priority")
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
    delta = v1.IssueDelta(
        fields=fields,
        update_mask=FieldMask(paths=paths),
        cc_add=[people[u].user_id for u in cc_add],
        hotlist_add=[hotlist] if hotlist else [],
    )
    comment = str(form.get("comment", ""))
    response = await call(
        backends.model.batch_change_issues,
        v1.BatchChangeIssuesRequest(
            caller=viewer.caller, issues=selected, delta=delta, comment=comment, atomic=False
        ),
    )
    failed = [r for r in response.results if r.code != 0]
    if not failed:
        session_of(request).update(notice=f"Changed {len(response.results)} issues.")
        return redirect(_return_to_search(form))
    return render(
        request,
        "bulk_result.html",
        {"results": response.results, "return_to": _return_to_search(form)},
        status_code=409 if all(r.code == 10 for r in failed) else 400,
        viewer=viewer,
    )


def _enum(enum: Any, name: str, field: str) -> Any:
    try:
        return enum[name]
    except KeyError:
        msg = f"{field}: {name!r} is not a known value"
        raise InvalidArgument(msg) from None


@get("/searches")
async def saved_searches(request: Request[Any, Any, Any]) -> Response[str]:
    """My saved searches and those shared with me."""
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    response = await call(
        backends.model.list_saved_searches,
        v1.ListSavedSearchesRequest(
            caller=viewer.caller, owned_only=False, page=v1.PageRequest(page_size=500)
        ),
    )
    mine = [s for s in response.saved_searches if s.owner == viewer.caller.user_id]
    shared = [s for s in response.saved_searches if s.owner != viewer.caller.user_id]
    users = await backends.users(s.owner for s in shared)
    return render(
        request,
        "saved_searches.html",
        {"mine": mine, "shared": shared, "users": users},
        viewer=viewer,
    )


@post("/searches")
async def save_search(request: Request[Any, Any, Any]) -> Response[Any]:
    """Save a query under a name, optionally shared with groups."""
    viewer = await viewer_of(request)
    form = await request.form()
    name = str(form.get("name", "")).strip()
    query = str(form.get("query", ""))
    if not name:
        raise InvalidArgument("name: give the saved search a name")
    groups = [g for g in str(form.get("share_with_groups", "")).replace(",", " ").split() if g]
    await call(
        frontend_of(request).backends.model.create_saved_search,
        v1.CreateSavedSearchRequest(
            caller=viewer.caller,
            name=name,
            query=query,
            readers=[v1.Principal(group=g) for g in groups],
        ),
    )
    session_of(request).update(notice=f"Saved search {name!r}.")
    return redirect("/searches")


@post("/searches/{saved_search_text:str}/delete")
async def delete_search(
    request: Request[Any, Any, Any], saved_search_text: FromPath[str]
) -> Response[Any]:
    """Delete one of my saved searches."""
    saved_search_id = path_id(saved_search_text, "saved_search_id")
    viewer = await viewer_of(request)
    await call(
        frontend_of(request).backends.model.delete_saved_search,
        v1.DeleteSavedSearchRequest(caller=viewer.caller, saved_search_id=saved_search_id),
    )
    session_of(request).update(notice="Saved search deleted.")
    return redirect("/searches")


ROUTES = [home, search, bulk_edit, saved_searches, save_search, delete_search]
