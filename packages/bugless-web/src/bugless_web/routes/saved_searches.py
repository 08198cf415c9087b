"""Saved searches: list mine and those shared with me, save, edit, delete.

The Model stores a saved search's text and list columns (none when they are
the default ones: it then follows the defaults) and checks that only its owner
changes or deletes it; the pages only hide the controls from others. An edit
names the version it was made against, so two tabs editing at once get a 409
page rather than one silently undoing the other. The query is parsed before it
is saved, so a saved search that cannot run is caught at the form.

A query can stop running after it was saved (a person it names renamed, a
hotlist it names made private, a component it names hidden or deleted):
the notifier then keeps its matches and sends nothing for it, logging the
refusal (``bugless_notify._saved_searches``), which its subscriber never
reads. So the list runs each search the viewer is subscribed to (one issue,
as the viewer) and says beside it why it no longer runs and that its mail
has stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from bugless_core.clients import call, every_page
from bugless_core.errors import BuglessError, InvalidArgument, NotFound
from bugless_core.list_columns import check_columns, custom_column_id
from bugless_core.search import QuerySyntaxError, parse_query
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web import custom_fields
from bugless_web.backends import Backends, Viewer
from bugless_web.form_errors import FieldErrors
from bugless_web.frontend import (
    audit,
    form_int,
    frontend_of,
    path_id,
    redirect,
    render,
    session_of,
    viewer_of,
)
from bugless_web.result_columns import COLUMNS, columns_to_store, parse_columns, saved_columns
from bugless_web.searching import query_problems
from bugless_web.timezones import CallerZone, zone_of

#: The edit form's fields in page order.
SAVED_SEARCH_FIELDS = ("name", "query", "share_with_groups", "share_with_people", "columns")
#: Saved searches read per ListSavedSearches call.
_PAGE = 500
#: Subscribed searches the list runs to say which no longer run (a person
#: subscribes to a few; past it the rest are not checked).
MAX_CHECKED = 50


async def all_saved_searches(
    backends: Backends, viewer: Viewer, *, owned_only: bool
) -> list[v1.SavedSearch]:
    """Every saved search the viewer owns (``owned_only``) or may read, across pages."""
    found: list[v1.SavedSearch] = []
    async for response in every_page(
        backends.model.list_saved_searches,
        v1.ListSavedSearchesRequest(caller=viewer.caller, owned_only=owned_only),
        page_size=_PAGE,
    ):
        found.extend(response.saved_searches)
    return found


async def _my_saved_search(
    backends: Backends, viewer: Viewer, saved_search_id: int
) -> v1.SavedSearch:
    """One of the viewer's own saved searches (there is no GetSavedSearch call)."""
    for saved in await all_saved_searches(backends, viewer, owned_only=True):
        if saved.id == saved_search_id:
            return saved
    msg = f"saved search {saved_search_id} not found among yours"
    raise NotFound(msg)


def _groups(text: str) -> list[str]:
    return [g for g in text.replace(",", " ").split() if g]


def _readers_text(saved: v1.SavedSearch) -> str:
    return " ".join(p.group for p in saved.readers if p.group)


def _reader_ids(searches: Iterable[v1.SavedSearch]) -> set[str]:
    """The people (user ids) the searches are shared with one by one."""
    return {p.user for saved in searches for p in saved.readers if p.user}


async def _people_readers(backends: Backends, text: str, errors: FieldErrors) -> list[v1.Principal]:
    """The people ``text`` names (usernames), as readers; an unknown name is an error."""
    names = _groups(text)
    found = await backends.users_by_name(names)
    unknown = [name for name in names if name not in found]
    if unknown:
        errors.add("share_with_people", f"no user named {', '.join(map(repr, unknown))}")
    return [v1.Principal(user=found[name].user_id) for name in names if name in found]


async def _column_labels(
    backends: Backends, viewer: Viewer, chosen: Iterable[str]
) -> dict[str, str]:
    """Every column the form offers with its label: built-in, then custom fields by name.

    The custom ones are the fields of the components the viewer sees
    (:func:`bugless_web.custom_fields.visible_fields`, the fields the search
    page's picker and bulk menu offer per page). A chosen one among none of
    them (its field deleted, or on a component no longer visible) is still
    listed, ticked, saying so, so saving does not drop it unseen.
    """
    # Spelled out as the search page's picker does (the table headers are "P" and "S").
    labels = {c: c.capitalize() if c in ("priority", "severity") else v for c, v in COLUMNS.items()}
    for definition in await custom_fields.visible_fields(backends, viewer):
        labels[f"customfield{definition.id}"] = definition.name
    for column in chosen:
        field_id = custom_column_id(column)
        if field_id and column not in labels:
            labels[column] = f"custom field {field_id} (not a field you can see)"
    return labels


async def _edit_page(
    request: Request[Any, Any, Any],
    viewer: Viewer,
    saved: v1.SavedSearch,
    values: dict[str, Any],
    errors: FieldErrors,
) -> Response[str]:
    """The edit form; the column boxes list the chosen ones first, in their order."""
    chosen = list(values["columns"])
    labels = await _column_labels(frontend_of(request).backends, viewer, chosen)
    return render(
        request,
        "saved_search_edit.html",
        {
            "saved": saved,
            "values": values,
            "errors": errors,
            "column_choices": chosen + [c for c in labels if c not in chosen],
            "column_labels": labels,
        },
        status_code=400 if errors else 200,
        viewer=viewer,
    )


@get("/searches")
async def saved_searches(request: Request[Any, Any, Any]) -> Response[str]:
    """My saved searches and those shared with me, each with Subscribe or Unsubscribe."""
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    everything, subscriptions = await asyncio.gather(
        all_saved_searches(backends, viewer, owned_only=False),
        call(backends.model.list_subscriptions, v1.ListSubscriptionsRequest(caller=viewer.caller)),
    )
    mine = [s for s in everything if s.owner == viewer.caller.user_id]
    shared = [s for s in everything if s.owner != viewer.caller.user_id]
    subscribed = set(subscriptions.saved_search_ids)
    users, broken = await asyncio.gather(
        backends.users({s.owner for s in shared} | _reader_ids(mine)),
        _broken_searches(
            backends, viewer, [s for s in everything if s.id in subscribed], zone_of(request)
        ),
    )
    return render(
        request,
        "saved_searches.html",
        {
            "mine": mine,
            "shared": shared,
            "users": users,
            "subscribed": subscribed,
            "broken": broken,
        },
        viewer=viewer,
    )


async def _broken_searches(
    backends: Backends, viewer: Viewer, searches: list[v1.SavedSearch], zone: CallerZone
) -> dict[int, str]:
    """Why each of ``searches`` no longer runs as ``viewer``, by id (absent: it runs).

    Run as the notifier runs a subscription (as the subscriber), for one
    issue, all in one ``SearchIssues`` unless one is refused
    (:func:`~bugless_web.searching.query_problems`): every view of the list
    pays for it. Advisory: an outage leaves the searches unmarked, never the
    page failed.
    """
    checked = searches[:MAX_CHECKED]
    try:
        problems = await query_problems(backends, viewer, [s.query for s in checked], zone=zone)
    except BuglessError:
        return {}
    return {saved.id: message for saved, message in zip(checked, problems, strict=True) if message}


@post("/searches")
async def save_search(request: Request[Any, Any, Any]) -> Response[Any]:
    """Save a query under a name, optionally shared with groups and people."""
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()
    name = str(form.get("name", "")).strip()
    query = str(form.get("query", ""))
    if not name:
        raise InvalidArgument("name: give the saved search a name")
    groups = _groups(str(form.get("share_with_groups", "")))
    problems = FieldErrors(SAVED_SEARCH_FIELDS)
    people = await _people_readers(backends, str(form.get("share_with_people", "")), problems)
    if problems:
        raise InvalidArgument(f"share_with_people: {problems.messages['share_with_people']}")
    # The columns the list was showing when "Save this search" was pressed
    # (none stored when they are the default ones: see columns_to_store).
    columns = columns_to_store(parse_columns(str(form.get("columns", "") or "")))
    await call(
        backends.model.create_saved_search,
        v1.CreateSavedSearchRequest(
            caller=viewer.caller,
            name=name,
            query=query,
            readers=[*(v1.Principal(group=g) for g in groups), *people],
            columns=columns,
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
    audit(viewer, "deleted", f"saved search {saved_search_id}")
    session_of(request).update(notice="Saved search deleted.")
    return redirect("/searches")


@get("/searches/{saved_search_text:str}/edit")
async def edit_search_form(
    request: Request[Any, Any, Any], saved_search_text: FromPath[str]
) -> Response[str]:
    """The edit form of one of my saved searches."""
    saved_search_id = path_id(saved_search_text, "saved_search_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    saved = await _my_saved_search(backends, viewer, saved_search_id)
    people = await backends.users(_reader_ids([saved]))
    values = {
        "name": saved.name,
        "query": saved.query,
        "share_with_groups": _readers_text(saved),
        # Shown so that saving keeps them: the form sends every reader.
        "share_with_people": " ".join(
            people[p.user].username for p in saved.readers if p.user in people
        ),
        "columns": list(saved_columns(saved)),
    }
    return await _edit_page(request, viewer, saved, values, FieldErrors(SAVED_SEARCH_FIELDS))


@post("/searches/{saved_search_text:str}/edit")
async def edit_search(
    request: Request[Any, Any, Any], saved_search_text: FromPath[str]
) -> Response[Any]:
    """Change a saved search's name, query, sharing and columns (owner only; the Model checks)."""
    saved_search_id = path_id(saved_search_text, "saved_search_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    form = await request.form()
    values: dict[str, Any] = {
        name: str(form.get(name, "") or "") for name in SAVED_SEARCH_FIELDS if name != "columns"
    }
    columns = [str(c) for c in form.getall("columns", [])]
    values["columns"] = columns
    version = form_int(str(form.get("version", "")), "version")
    errors = FieldErrors(SAVED_SEARCH_FIELDS)
    if not values["name"].strip():
        errors.add("name", "give the saved search a name")
    try:
        parse_query(values["query"])
    except QuerySyntaxError as exc:
        errors.add("query", exc.message)
    try:
        check_columns(columns, "columns")
    except InvalidArgument as exc:
        errors.take(exc)
    people = await _people_readers(backends, values["share_with_people"], errors)
    if errors:
        saved = await _my_saved_search(backends, viewer, saved_search_id)
        return await _edit_page(request, viewer, saved, values, errors)
    updated = await call(
        backends.model.update_saved_search,
        v1.UpdateSavedSearchRequest(
            caller=viewer.caller,
            saved_search=v1.SavedSearch(
                id=saved_search_id,
                name=values["name"].strip(),
                query=values["query"],
                readers=[
                    *(v1.Principal(group=g) for g in _groups(values["share_with_groups"])),
                    *people,
                ],
                columns=columns_to_store(columns),
            ),
            update_mask=FieldMask(paths=["name", "query", "readers", "columns"]),
            expected_version=version,
        ),
    )
    audit(viewer, "updated", f"saved search {saved_search_id}", version=updated.version)
    session_of(request).update(notice=f"Saved search {updated.name!r} updated.")
    return redirect("/searches")


ROUTES = [saved_searches, save_search, edit_search_form, edit_search, delete_search]
