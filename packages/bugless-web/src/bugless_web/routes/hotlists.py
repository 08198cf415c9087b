"""Hotlists: list, create, rename, delete, view in rank order, add/remove, re-rank, notes.

A hotlist's page is live as a search page is: it follows the query
``hotlistid:N`` (:mod:`bugless_web.routes.live_list`), so an issue on it
that changes, joins it or leaves it is marked and counted, with a Refresh.
Its rows are drawn again in place from ``/hotlists/N/rows``
(:func:`hotlist_rows`): at once when an event says an issue changed, and
every few seconds while the page is shown, since re-ranks and notes change
the hotlist, not its issues, and the feed does not carry them; the answer
is a 304 while the rows are as the page drew them (``ETag``). While the
page hears its issues change (the Model follows changes: ``watch``), that
304 costs one GetHotlist: the ``ETag`` is then the hotlist's version (item
changes move it) as this viewer and session see it, and the redraw an
event asks for is asked without ``If-None-Match``.

Every change is a plain form POST (works without JavaScript); the drag-and-drop
re-rank in ``pages.js`` posts the same form with ``fetch`` and the CSRF token in
a header, and gets 204 instead of a redirect.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.enums import MediaType
from litestar.params import FromPath

from bugless_core.clients import call, every_page
from bugless_core.errors import InvalidArgument, VersionConflict
from bugless_core.limits import MAX_PAGE_SIZE
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web.backends import Backends, Viewer
from bugless_web.display import iso_instant
from bugless_web.frontend import (
    audit,
    form_ids,
    form_int,
    frontend_of,
    path_id,
    redirect,
    render,
    require_permission,
    session_of,
    viewer_of,
)
from bugless_web.routes.live_list import list_position

#: The last 1-based position a rank form may name: the Model's position is an
#: int32 counted from 0 (one past the end of any real hotlist: the end).
MAX_POSITION = 2**31

#: The rows answer's header holding the hotlist as its forms and small print
#: know it, as JSON: ``version``, ``name``, ``description``, ``item_count`` and
#: ``modified_at`` (a ``<time datetime>``'s form, or null).
HOTLIST_HEADER = "x-bugless-hotlist"


def _answer(request: Request[Any, Any, Any], hotlist_id: int, notice: str) -> Response[Any]:
    """204 for the script, a redirect with a notice for a plain form."""
    if request.headers.get("x-requested-with") == "fetch":
        return Response(b"", status_code=204)
    session_of(request).update(notice=notice)
    return redirect(f"/hotlists/{hotlist_id}")


@get("/hotlists")
async def hotlist_index(request: Request[Any, Any, Any]) -> Response[str]:
    """Hotlists I own or edit, and all others I can see."""
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    everything = await call(
        backends.model.list_hotlists,
        v1.ListHotlistsRequest(caller=viewer.caller, page=v1.PageRequest(page_size=MAX_PAGE_SIZE)),
    )
    me = viewer.caller.user_id
    mine = [h for h in everything.hotlists if h.owner == me or me in h.editors]
    others = [h for h in everything.hotlists if h not in mine]
    users = await backends.users(h.owner for h in everything.hotlists)
    return render(
        request,
        "hotlists.html",
        {
            "mine": mine,
            "others": others,
            "users": users,
            # Only hides the form; the POST asks the Authenticator itself.
            "can_create": "create_hotlist" in viewer.identity.permissions,
        },
        viewer=viewer,
    )


@post("/hotlists")
async def create_hotlist(request: Request[Any, Any, Any]) -> Response[Any]:
    """Create a hotlist owned by me (needs the global ``create_hotlist`` permission)."""
    viewer = await viewer_of(request)
    form = await request.form()
    name = str(form.get("name", "")).strip()
    if not name:
        raise InvalidArgument("name: give the hotlist a name")
    await require_permission(request, viewer, "create_hotlist", "Creating a hotlist")
    backends = frontend_of(request).backends
    hotlist = await call(
        backends.model.create_hotlist,
        v1.CreateHotlistRequest(
            caller=viewer.caller,
            name=name,
            description=str(form.get("description", "")),
            private=form.get("private") == "on",
        ),
    )
    backends.forget_hotlists(viewer)  # the next page's menus offer it
    session_of(request).update(notice=f"Created hotlist {hotlist.name!r}.")
    return redirect(f"/hotlists/{hotlist.id}")


@dataclass(frozen=True)
class _Ranked:
    """A hotlist as its page draws it: the items the viewer may see, in rank order."""

    hotlist: v1.Hotlist
    items: list[tuple[v1.HotlistItem, v1.Issue]]
    users: dict[str, v1.User]
    can_edit: bool


async def _hotlist(backends: Backends, viewer: Viewer, hotlist_id: int) -> v1.Hotlist:
    """The hotlist as ``viewer`` may see it (NotFound: not theirs to see)."""
    return await call(
        backends.model.get_hotlist,
        v1.GetHotlistRequest(caller=viewer.caller, hotlist_id=hotlist_id),
    )


async def _ranked(
    backends: Backends, viewer: Viewer, hotlist_id: int, hotlist: v1.Hotlist | None = None
) -> _Ranked:
    """The hotlist and its items as ``viewer`` may see them, and the people they name.

    ``hotlist``: the hotlist as just read (its items are read after it).
    """
    if hotlist is None:
        hotlist = await _hotlist(backends, viewer, hotlist_id)
    items: list[tuple[v1.HotlistItem, v1.Issue]] = []
    async for response in every_page(
        backends.model.list_hotlist_items,
        v1.ListHotlistItemsRequest(caller=viewer.caller, hotlist_id=hotlist_id),
        page_size=MAX_PAGE_SIZE,
    ):
        by_id = {i.id: i for i in response.issues}
        items.extend(
            (item, by_id[item.issue_id]) for item in response.items if item.issue_id in by_id
        )
    people = {hotlist.owner, *hotlist.editors}
    for _, issue in items:
        people.add(issue.assignee)
    users = await backends.users(people)
    me = viewer.caller.user_id
    can_edit = viewer.is_admin or me == hotlist.owner or me in hotlist.editors
    return _Ranked(hotlist, items, users, can_edit)


@get("/hotlists/{hotlist_text:str}")
async def hotlist_page(
    request: Request[Any, Any, Any], hotlist_text: FromPath[str]
) -> Response[str]:
    """The items in rank order, with notes and the re-rank controls."""
    hotlist_id = path_id(hotlist_text, "hotlist_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    # Before the items are read: a change made meanwhile is heard (as a search page's).
    live_after = await list_position(backends, viewer)
    ranked = await _ranked(backends, viewer, hotlist_id)
    hotlist = ranked.hotlist
    me = viewer.caller.user_id
    return render(
        request,
        "hotlist.html",
        {
            "hotlist": hotlist,
            "items": ranked.items,
            "users": ranked.users,
            "can_edit": ranked.can_edit,
            "can_delete": viewer.is_admin or me == hotlist.owner,
            # The page hears its issues change, join and leave through the
            # search page's stream of ``hotlistid:N`` (routes.live_list).
            "live": "watch" in await backends.capabilities(),
            "live_after": live_after,
        },
        viewer=viewer,
    )


@get("/hotlists/{hotlist_text:str}/rows", cache_control=None)
async def hotlist_rows(
    request: Request[Any, Any, Any], hotlist_text: FromPath[str]
) -> Response[Any]:
    """The hotlist page's rows as they are now: what ``pages.js`` redraws the table with.

    The same template as the page, as the viewer (only the issues they may
    see; the note and rank forms only for those who may edit). A page that
    sends the ``ETag`` it drew (``If-None-Match``) gets a 304 while nothing
    it shows or holds changed, so polling for re-ranks and notes, which no
    event announces, costs the browser nothing. Rendered without the page's
    layout, so the session's one-shot notice and warning are left for the
    next page.

    While the Model follows changes (``watch``), the page hears each of its
    issues change and asks for its rows then without ``If-None-Match``; the
    polls are for what changes the hotlist, and every such change moves its
    version (ec84b392). So the ``ETag`` is :func:`_version_tag`, and a poll
    while nothing changed is answered after one GetHotlist, without reading
    its items, their issues and people, or rendering them: a page polls
    every 10 s while it is shown, each tab on its own. Without ``watch`` no
    event comes, and the ``ETag`` is a digest of the rows as rendered.

    Item changes move the hotlist's version, which the page's rename and
    delete forms carry; :data:`HOTLIST_HEADER` gives the page the version
    and what those forms were drawn against (name, description, item
    count), so it can bring their version up to date after a colleague's
    re-rank but not after their rename, which the forms must still be
    refused against. The page's count of issues and its "Version N · last
    changed" line are drawn again from it too, whatever changed.
    """
    hotlist_id = path_id(hotlist_text, "hotlist_id")
    viewer = await viewer_of(request)
    frontend = frontend_of(request)
    backends = frontend.backends
    csrf = session_of(request).csrf
    hotlist = await _hotlist(backends, viewer, hotlist_id)
    state = json.dumps(
        {
            "version": hotlist.version,
            "name": hotlist.name,
            "description": hotlist.description,
            "item_count": hotlist.item_count,
            "modified_at": iso_instant(hotlist.modified_at) if hotlist.modified_at else None,
        },
        separators=(",", ":"),
    )  # ASCII (json.dumps escapes the rest): a valid header value
    asked = request.headers.get("if-none-match")
    versioned = "watch" in await backends.capabilities()
    if versioned:
        tag = _version_tag(hotlist.id, state, viewer, csrf)
        if asked == tag:
            return Response(b"", status_code=304, headers=_rows_headers(tag, state))
    ranked = await _ranked(backends, viewer, hotlist_id, hotlist)
    html = frontend.templates.get_template("_hotlist_rows.html").render(
        {
            "hotlist": hotlist,
            "items": ranked.items,
            "users": ranked.users,
            "can_edit": ranked.can_edit,
            "csrf_token": csrf,
        }
    )
    if not versioned:
        tag = '"' + hashlib.sha256(f"{state}\n{html}".encode()).hexdigest()[:32] + '"'
        if asked == tag:
            return Response(b"", status_code=304, headers=_rows_headers(tag, state))
    return Response(html, media_type=MediaType.HTML, headers=_rows_headers(tag, state))


def _version_tag(hotlist_id: int, state: str, viewer: Viewer, csrf: str) -> str:
    """The rows' ``ETag`` from the hotlist as read, not from its rows (see :func:`hotlist_rows`).

    The hotlist's version and :data:`HOTLIST_HEADER`'s ``state`` move with
    its items, notes, order, name, editors; the viewer (who they are, their
    groups: which issues and forms they are shown) and the session (its CSRF
    token is in the forms) are in it too, so rows drawn for another sign-in
    are never taken as current. Read before the items, so a change made
    while they are read makes the next poll's tag differ.
    """
    caller = viewer.caller
    seen = json.dumps(
        [hotlist_id, state, caller.user_id, sorted(caller.groups), viewer.is_admin, csrf]
    )
    return '"v' + hashlib.sha256(seen.encode()).hexdigest()[:32] + '"'


def _rows_headers(tag: str, state: str) -> dict[str, str]:
    """The rows answer's headers, a 304's too (the page reads the hotlist's from either)."""
    return {"cache-control": "private, no-store", "etag": tag, HOTLIST_HEADER: state}


@post("/hotlists/{hotlist_text:str}/items")
async def add_items(request: Request[Any, Any, Any], hotlist_text: FromPath[str]) -> Response[Any]:
    """Add issues (ids separated by commas or spaces) at the end, with a note."""
    hotlist_id = path_id(hotlist_text, "hotlist_id")
    viewer = await viewer_of(request)
    form = await request.form()
    ids = form_ids(str(form.get("issue_ids", "")), "issues")
    if not ids:
        raise InvalidArgument("issues: give at least one issue id")
    await call(
        frontend_of(request).backends.model.add_hotlist_items,
        v1.AddHotlistItemsRequest(
            caller=viewer.caller,
            hotlist_id=hotlist_id,
            issue_ids=ids,
            position=-1,
            note=str(form.get("note", "")),
        ),
    )
    return _answer(request, hotlist_id, f"Added {len(ids)} issue(s).")


@post("/hotlists/{hotlist_text:str}/items/{issue_text:str}/remove")
async def remove_item(
    request: Request[Any, Any, Any], hotlist_text: FromPath[str], issue_text: FromPath[str]
) -> Response[Any]:
    """Take one issue off the hotlist."""
    hotlist_id = path_id(hotlist_text, "hotlist_id")
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    await call(
        frontend_of(request).backends.model.remove_hotlist_items,
        v1.RemoveHotlistItemsRequest(
            caller=viewer.caller, hotlist_id=hotlist_id, issue_ids=[issue_id]
        ),
    )
    return _answer(request, hotlist_id, f"Removed issue {issue_id}.")


@post("/hotlists/{hotlist_text:str}/items/{issue_text:str}/rank")
async def rank_item(
    request: Request[Any, Any, Any], hotlist_text: FromPath[str], issue_text: FromPath[str]
) -> Response[Any]:
    """Move one item to a 1-based position (the form shows ranks from 1)."""
    hotlist_id = path_id(hotlist_text, "hotlist_id")
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    form = await request.form()
    position = form_int(str(form.get("position", "")), "position")
    if not 1 <= position <= MAX_POSITION:
        # Past int32 the wire kept the low bits: 4294967297 moved it to the top.
        raise InvalidArgument(f"position: give a position from 1 to {MAX_POSITION}")
    await call(
        frontend_of(request).backends.model.rank_hotlist_item,
        v1.RankHotlistItemRequest(
            caller=viewer.caller, hotlist_id=hotlist_id, issue_id=issue_id, position=position - 1
        ),
    )
    return _answer(request, hotlist_id, f"Moved issue {issue_id} to position {position}.")


@post("/hotlists/{hotlist_text:str}/items/{issue_text:str}/note")
async def set_note(
    request: Request[Any, Any, Any], hotlist_text: FromPath[str], issue_text: FromPath[str]
) -> Response[Any]:
    """Set the note of one item."""
    hotlist_id = path_id(hotlist_text, "hotlist_id")
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    form = await request.form()
    await call(
        frontend_of(request).backends.model.set_hotlist_item_note,
        v1.SetHotlistItemNoteRequest(
            caller=viewer.caller,
            hotlist_id=hotlist_id,
            issue_id=issue_id,
            note=str(form.get("note", "")),
        ),
    )
    return _answer(request, hotlist_id, f"Saved the note on issue {issue_id}.")


@post("/hotlists/{hotlist_text:str}/edit")
async def edit_hotlist(
    request: Request[Any, Any, Any], hotlist_text: FromPath[str]
) -> Response[Any]:
    """Rename a hotlist or change its description (its owner and editors; the Model checks).

    The form is checked against the version it was drawn at, and a hotlist's
    version also moves when its items change (a colleague's re-rank or note,
    which the page draws again in place while the form stays as it was). A
    stale form whose name and description (``shown_name``,
    ``shown_description``: what the page showed) are still the hotlist's is
    saved against the version now: nothing it would overwrite changed, and
    on a hotlist under triage a rename was otherwise refused at every try.
    One that someone renamed or described since is refused (409, reload).
    """
    hotlist_id = path_id(hotlist_text, "hotlist_id")
    viewer = await viewer_of(request)
    form = await request.form()
    name = str(form.get("name", "")).strip()
    if not name:
        raise InvalidArgument("name: a hotlist needs a name; nothing was changed")
    backends = frontend_of(request).backends
    changed = v1.Hotlist(
        id=hotlist_id, name=name, description=str(form.get("description", "")).strip()
    )

    async def update(version: int) -> v1.Hotlist:
        return await call(
            backends.model.update_hotlist,
            v1.UpdateHotlistRequest(
                caller=viewer.caller,
                hotlist=changed,
                update_mask=FieldMask(paths=["name", "description"]),
                expected_version=version,
            ),
        )

    try:
        hotlist = await update(form_int(str(form.get("version", "")), "version"))
    except VersionConflict:
        now = await call(
            backends.model.get_hotlist,
            v1.GetHotlistRequest(caller=viewer.caller, hotlist_id=hotlist_id),
        )
        shown = (form.get("shown_name"), form.get("shown_description"))
        if shown != (now.name, now.description):
            raise
        hotlist = await update(now.version)
    backends.forget_hotlists(viewer)
    audit(viewer, "updated", f"hotlist {hotlist_id}", name=hotlist.name, version=hotlist.version)
    session_of(request).update(notice=f"Saved hotlist {hotlist.name!r}.")
    return redirect(f"/hotlists/{hotlist_id}")


@post("/hotlists/{hotlist_text:str}/delete")
async def delete_hotlist(
    request: Request[Any, Any, Any], hotlist_text: FromPath[str]
) -> Response[Any]:
    """Delete a hotlist (its owner or an admin; the Model checks).

    Each issue on it records leaving it in its own history, so the list's
    membership is not lost without trace.
    """
    hotlist_id = path_id(hotlist_text, "hotlist_id")
    viewer = await viewer_of(request)
    form = await request.form()
    if form.get("confirm") != "yes":
        raise InvalidArgument(
            "confirm: tick the box to confirm deleting the hotlist; nothing was deleted"
        )
    backends = frontend_of(request).backends
    hotlist = await call(
        backends.model.get_hotlist,
        v1.GetHotlistRequest(caller=viewer.caller, hotlist_id=hotlist_id),
    )
    await call(
        backends.model.delete_hotlist,
        v1.DeleteHotlistRequest(
            caller=viewer.caller,
            hotlist_id=hotlist_id,
            expected_version=form_int(str(form.get("version", "")), "version"),
        ),
    )
    backends.forget_hotlists(viewer)
    audit(viewer, "deleted", f"hotlist {hotlist_id}", name=hotlist.name, items=hotlist.item_count)
    session_of(request).update(
        notice=f"Deleted hotlist {hotlist.name!r}; each of its {hotlist.item_count} issues "
        "records leaving it in its history."
    )
    return redirect("/hotlists")


ROUTES = [
    hotlist_index,
    create_hotlist,
    hotlist_page,
    hotlist_rows,
    edit_hotlist,
    delete_hotlist,
    add_items,
    remove_item,
    rank_item,
    set_note,
]
