"""Stars, subscriptions, mutes and one's notification settings (issue 16).

Plain form POSTs that answer with a redirect back to where the button was
(works without JavaScript). The settings page edits what the notifier reads.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from bugless_core.clients import call
from bugless_proto import v1
from bugless_web.frontend import frontend_of, path_id, redirect, render, session_of, viewer_of

#: The events a person can switch off, with how the settings page names them.
EVENTS: tuple[tuple[v1.NotificationEvent, str], ...] = (
    (v1.NotificationEvent.ASSIGNED, "Issues assigned to me"),
    (v1.NotificationEvent.MENTIONED, "When I am @mentioned"),
    (v1.NotificationEvent.MY_ISSUES, "Issues I reported, verify or am CC'd on"),
    (v1.NotificationEvent.STARRED, "Issues I starred"),
    (v1.NotificationEvent.SUBSCRIPTIONS, "My component and saved-search subscriptions"),
)


async def _form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    data = await request.form()
    return {key: data.getall(key) for key in data}


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
    return redirect(f"/issues/{issue_id}")


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
    return redirect(f"/issues/{issue_id}")


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
    return redirect(f"/components/{component_id}")


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
    return redirect("/searches")


@get("/settings/notifications")
async def notification_settings(request: Request[Any, Any, Any]) -> Response[str]:
    """What notifies me, how, and what I follow."""
    viewer = await viewer_of(request)
    model = frontend_of(request).backends.model
    settings = await call(
        model.get_notification_settings, v1.GetNotificationSettingsRequest(caller=viewer.caller)
    )
    subscriptions = await call(
        model.list_subscriptions, v1.ListSubscriptionsRequest(caller=viewer.caller)
    )
    return render(
        request,
        "notification_settings.html",
        {
            "settings": settings.settings[0],
            "subscriptions": subscriptions,
            "events": EVENTS,
        },
        viewer=viewer,
    )


@post("/settings/notifications")
async def save_notification_settings(request: Request[Any, Any, Any]) -> Response[Any]:
    """Save the form: unchecked events are switched off."""
    viewer = await viewer_of(request)
    form = await _form(request)
    enabled = {int(v) for v in form.get("event", []) if v.isdigit()}
    settings = v1.NotificationSettings(
        disabled_events=[event for event, _ in EVENTS if int(event) not in enabled],
        channel=form.get("channel", ["email"])[0],
        digest=v1.DigestMode.DAILY
        if form.get("digest", [""])[0] == "daily"
        else v1.DigestMode.IMMEDIATE,
        notify_own_changes=form.get("own", ["0"])[0] == "1",
    )
    await call(
        frontend_of(request).backends.model.update_notification_settings,
        v1.UpdateNotificationSettingsRequest(caller=viewer.caller, settings=settings),
    )
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
