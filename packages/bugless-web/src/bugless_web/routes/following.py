"""Stars, subscriptions, mutes and one's notification settings (issue 16).

Plain form POSTs that answer with a redirect back to where the button was
(works without JavaScript): the issue, component or saved searches page, or
the settings page for its own Unsubscribe, Unmute and Unstar buttons (``back=settings``).
The settings page edits what the notifier reads and lists what one follows
by name.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from bugless_core import limits
from bugless_core.clients import call
from bugless_core.errors import Conflict
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask
from bugless_web.backends import Backends, Viewer
from bugless_web.frontend import (
    form_int,
    frontend_of,
    path_id,
    redirect,
    render,
    session_of,
    viewer_of,
)
from bugless_web.result_columns import saved_search_href
from bugless_web.routes.saved_searches import all_saved_searches
from bugless_web.searching import run_search
from bugless_web.timezones import zone_of

#: The events a person can switch off, with how the settings page names them.
EVENTS: tuple[tuple[v1.NotificationEvent, str], ...] = (
    (v1.NotificationEvent.ASSIGNED, "Issues assigned to me"),
    (v1.NotificationEvent.MENTIONED, "When I am @mentioned"),
    (v1.NotificationEvent.MY_ISSUES, "Issues I reported, verify or am CC'd on"),
    (v1.NotificationEvent.STARRED, "Issues I starred"),
    (v1.NotificationEvent.SUBSCRIPTIONS, "My component and saved-search subscriptions"),
)


#: Where a follow button's POST may send the browser back to instead of the
#: page the thing is on (a fixed list: never a URL taken from the form).
SETTINGS_PAGE = "/settings/notifications"


async def _form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    data = await request.form()
    return {key: data.getall(key) for key in data}


def _back(form: dict[str, list[str]], default: str) -> str:
    """The page to go back to: the settings page when the button was there, else ``default``."""
    return SETTINGS_PAGE if form.get("back", [""])[0] == "settings" else default


@post("/issues/{issue_text:str}/star")
async def star_issue(request: Request[Any, Any, Any], issue_text: FromPath[str]) -> Response[Any]:
    """Star (``starred=1``) or unstar the issue."""
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    form = await _form(request)
    starred = form.get("starred", ["1"])[0] == "1"
    await call(
        frontend_of(request).backends.model.star_issue,
        v1.StarIssueRequest(caller=viewer.caller, issue_id=issue_id, starred=starred),
    )
    return redirect(_back(form, f"/issues/{issue_id}"))


@post("/issues/{issue_text:str}/mute")
async def mute_issue(request: Request[Any, Any, Any], issue_text: FromPath[str]) -> Response[Any]:
    """Mute (``muted=1``) or unmute notifications about the issue."""
    issue_id = path_id(issue_text, "issue_id")
    viewer = await viewer_of(request)
    form = await _form(request)
    muted = form.get("muted", ["1"])[0] == "1"
    await call(
        frontend_of(request).backends.model.set_issue_mute,
        v1.SetIssueMuteRequest(caller=viewer.caller, issue_id=issue_id, muted=muted),
    )
    session_of(request).update(notice="Muted." if muted else "Unmuted.")
    return redirect(_back(form, f"/issues/{issue_id}"))


@post("/components/{component_text:str}/subscribe")
async def subscribe_component(
    request: Request[Any, Any, Any], component_text: FromPath[str]
) -> Response[Any]:
    """Subscribe (``subscribed=1``, ``subtree=1`` for the whole subtree) or stop."""
    component_id = path_id(component_text, "component_id")
    viewer = await viewer_of(request)
    form = await _form(request)
    subscribed = form.get("subscribed", ["1"])[0] == "1"
    await call(
        frontend_of(request).backends.model.set_component_subscription,
        v1.SetComponentSubscriptionRequest(
            caller=viewer.caller,
            component_id=component_id,
            subscribed=subscribed,
            include_subtree=form.get("subtree", ["0"])[0] == "1",
        ),
    )
    session_of(request).update(notice="Subscribed." if subscribed else "Unsubscribed.")
    return redirect(_back(form, f"/components/{component_id}"))


@post("/searches/{saved_search_text:str}/subscribe")
async def subscribe_saved_search(
    request: Request[Any, Any, Any], saved_search_text: FromPath[str]
) -> Response[Any]:
    """Subscribe to a saved search (``subscribed=1``) or stop."""
    saved_search_id = path_id(saved_search_text, "saved_search_id")
    viewer = await viewer_of(request)
    form = await _form(request)
    subscribed = form.get("subscribed", ["1"])[0] == "1"
    await call(
        frontend_of(request).backends.model.set_saved_search_subscription,
        v1.SetSavedSearchSubscriptionRequest(
            caller=viewer.caller, saved_search_id=saved_search_id, subscribed=subscribed
        ),
    )
    session_of(request).update(notice="Subscribed." if subscribed else "Unsubscribed.")
    return redirect(_back(form, "/searches"))


@dataclass(frozen=True)
class Followed:
    """One row of "What I follow": what it is, and its name if the viewer may still see it.

    Attributes:
        id: The component, saved search or issue id.
        name: The component's path, the saved search's name, or the issue's
            title; empty when it is gone or hidden from the viewer now.
        href: For a saved search: the link that runs it.
        include_subtree: For a component: its subcomponents' issues too.
    """

    id: int
    name: str = ""
    href: str = ""
    include_subtree: bool = False


async def _issue_titles(backends: Backends, viewer: Viewer, ids: list[int]) -> dict[int, str]:
    """The titles of the issues ``ids`` the viewer may see (a read mask: titles only)."""
    if not ids:
        return {}
    batches = [
        ids[start : start + limits.MAX_BATCH_GET]
        for start in range(0, len(ids), limits.MAX_BATCH_GET)
    ]
    answers = await asyncio.gather(
        *(
            call(
                backends.model.batch_get_issues,
                v1.BatchGetIssuesRequest(
                    caller=viewer.caller, issue_ids=batch, read_mask=FieldMask(paths=["title"])
                ),
            )
            for batch in batches
        )
    )
    return {issue.id: issue.title for answer in answers for issue in answer.issues}


async def _component_paths(backends: Backends, viewer: Viewer, wanted: bool) -> dict[int, str]:
    """The paths of the components the viewer may see (the cached tree), if ``wanted``."""
    return {c.id: c.path for c in await backends.components(viewer)} if wanted else {}


async def _saved_searches(
    backends: Backends, viewer: Viewer, wanted: bool
) -> dict[int, v1.SavedSearch]:
    """The saved searches the viewer may read, if ``wanted`` (there is no batch get)."""
    if not wanted:
        return {}
    return {s.id: s for s in await all_saved_searches(backends, viewer, owned_only=False)}


#: Starred issues listed under "What I follow"; more are a search away (``is:starred``).
STARRED_SHOWN = 50


@get("/settings/notifications")
async def notification_settings(request: Request[Any, Any, Any]) -> Response[str]:
    """What notifies me, how, and what I follow (by name, each with its Unsubscribe or Unmute)."""
    return await _settings_page(request, await viewer_of(request))


async def _settings_page(
    request: Request[Any, Any, Any], viewer: Viewer, *, conflict: bool = False
) -> Response[str]:
    """The settings page as the settings are now; with ``conflict``, the 409 of a stale save.

    The form carries the settings' version (a hidden field), so a save made
    from this page is refused if they changed after it was rendered.
    """
    backends = frontend_of(request).backends
    model = backends.model
    answer, subscriptions = await asyncio.gather(
        call(
            model.get_notification_settings, v1.GetNotificationSettingsRequest(caller=viewer.caller)
        ),
        call(model.list_subscriptions, v1.ListSubscriptionsRequest(caller=viewer.caller)),
    )
    settings = answer.settings[0]
    # Stars are follows too (they notify, unless that event is off): listed
    # like the rest, so the section never says "Nothing yet" to someone who
    # starred issues, as `bugless notifications show` lists them.
    paths, searches, titles, starred = await asyncio.gather(
        _component_paths(backends, viewer, bool(subscriptions.components)),
        _saved_searches(backends, viewer, bool(subscriptions.saved_search_ids)),
        _issue_titles(backends, viewer, list(settings.muted_issue_ids)),
        run_search(
            backends,
            viewer,
            "is:starred sort:-modified",
            zone=zone_of(request),
            page_size=STARRED_SHOWN,
            columns=("id", "title"),
        ),
    )
    return render(
        request,
        "notification_settings.html",
        {
            "settings": settings,
            "conflict": conflict,
            "events": EVENTS,
            "components": [
                Followed(
                    c.component_id, paths.get(c.component_id, ""), include_subtree=c.include_subtree
                )
                for c in subscriptions.components
            ],
            "saved_searches": [
                Followed(i, searches[i].name, saved_search_href(searches[i]))
                if i in searches
                else Followed(i)
                for i in subscriptions.saved_search_ids
            ],
            "muted": [Followed(i, titles.get(i, "")) for i in settings.muted_issue_ids],
            "starred": [Followed(issue.id, issue.title) for issue in starred.issues],
            "starred_more": bool(starred.next_page_token),
        },
        status_code=409 if conflict else 200,
        viewer=viewer,
    )


@post("/settings/notifications")
async def save_notification_settings(request: Request[Any, Any, Any]) -> Response[Any]:
    """Save the form at the version it was rendered with: unchecked events are switched off.

    A save from a page older than the settings (changed meanwhile in another
    tab, by ``bugless notifications set``, by a script) changes nothing: the
    page comes back (409) with the settings as they are now and says so.
    """
    viewer = await viewer_of(request)
    form = await _form(request)
    # Compared as the page wrote them: a value no event has (a crafted "²",
    # which str.isdigit took and int refused with a 500) enables nothing.
    enabled = {v.strip() for v in form.get("event", [])}
    settings = v1.NotificationSettings(
        disabled_events=[event for event, _ in EVENTS if str(int(event)) not in enabled],
        channel=form.get("channel", ["email"])[0],
        digest=v1.DigestMode.DAILY
        if form.get("digest", [""])[0] == "daily"
        else v1.DigestMode.IMMEDIATE,
        notify_own_changes=form.get("own", ["0"])[0] == "1",
    )
    version = form_int(form.get("version", [""])[0], "version")
    try:
        await call(
            frontend_of(request).backends.model.update_notification_settings,
            v1.UpdateNotificationSettingsRequest(
                caller=viewer.caller, settings=settings, expected_version=version
            ),
        )
    except Conflict as exc:
        if exc.reason != "VERSION_CONFLICT":
            raise
        return await _settings_page(request, viewer, conflict=True)
    session_of(request).update(notice="Notification settings saved.")
    return redirect("/settings/notifications")


ROUTES = [
    star_issue,
    mute_issue,
    subscribe_component,
    subscribe_saved_search,
    notification_settings,
    save_notification_settings,
]
