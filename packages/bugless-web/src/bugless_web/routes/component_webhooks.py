"""``/components/ID/webhooks``: a component's webhook endpoints, for its admins.

The endpoints live in the notifier (``--notify``), which checks the person:
the web forwards their identity assertion, and the notifier asks the Model
for their role on the component, so a non-admin gets the 403 page with the
notifier's reason however they reach these routes. A secret is sent once,
when an endpoint is added, and never shown again (only its last 4
characters); nor is a URL's path or query (Slack's carry a secret there).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from bugless_core.clients import call
from bugless_core.errors import InvalidArgument, PermissionDenied
from bugless_proto import v1
from bugless_web.frontend import (
    audit,
    frontend_of,
    path_id,
    redirect,
    render,
    session_of,
    viewer_of,
)


def _notifier(request: Request[Any, Any, Any]) -> v1.NotifierStub:
    notifier = frontend_of(request).backends.notifier
    if notifier is None:
        raise InvalidArgument("no notifier is configured (--notify): webhooks live in it")
    return notifier


@get("/components/{component_text:str}/webhooks")
async def webhooks_page(
    request: Request[Any, Any, Any], component_text: FromPath[str]
) -> Response[str]:
    """The endpoints, their history, and the add form."""
    component_id = path_id(component_text, "component_id")
    viewer = await viewer_of(request)
    backends = frontend_of(request).backends
    component = await call(
        backends.model.get_component,
        v1.GetComponentRequest(caller=viewer.caller, component_id=component_id),
    )
    if component.caller_role != v1.Role.ADMIN:
        raise PermissionDenied(f"only admins of component {component.path!r} manage its webhooks")
    if backends.notifier is None:  # say how to configure it, as /admin/notifications does
        return render(
            request,
            "component_webhooks.html",
            {"component": component, "listing": None, "people": {}},
            viewer=viewer,
        )
    listing = await call(
        backends.notifier.list_component_webhooks,
        v1.ListComponentWebhooksRequest(component_id=component_id),
    )
    users = await backends.users(
        [*(w.created_by for w in listing.webhooks), *(e.actor for e in listing.history)]
    )
    return render(
        request,
        "component_webhooks.html",
        {"component": component, "listing": listing, "people": users},
        viewer=viewer,
    )


@post("/components/{component_text:str}/webhooks")
async def add_webhook(
    request: Request[Any, Any, Any], component_text: FromPath[str]
) -> Response[Any]:
    """Add an endpoint (URL, secret, payload format, subtree)."""
    component_id = path_id(component_text, "component_id")
    viewer = await viewer_of(request)
    form = await request.form()
    added = await call(
        _notifier(request).add_component_webhook,
        v1.AddComponentWebhookRequest(
            component_id=component_id,
            url=str(form.get("url", "") or "").strip(),
            secret=str(form.get("secret", "") or ""),
            payload_format=str(form.get("payload_format", "") or "json"),
            include_subtree=form.get("subtree") == "1",
        ),
    )
    audit(viewer, "webhook.add", f"component {component_id}", name=added.name)
    session_of(request).update(notice=f"Added webhook {added.name} ({added.url_origin}).")
    return redirect(f"/components/{component_id}/webhooks")


@post("/components/{component_text:str}/webhooks/{name:str}")
async def change_webhook(
    request: Request[Any, Any, Any], component_text: FromPath[str], name: FromPath[str]
) -> Response[Any]:
    """``action=enable``, ``disable`` or ``delete`` one endpoint."""
    component_id = path_id(component_text, "component_id")
    viewer = await viewer_of(request)
    form = await request.form()
    action = str(form.get("action", ""))
    notifier = _notifier(request)
    if action in ("enable", "disable"):
        await call(
            notifier.set_component_webhook_enabled,
            v1.SetComponentWebhookEnabledRequest(
                component_id=component_id, name=name, enabled=action == "enable"
            ),
        )
    elif action == "delete":
        await call(
            notifier.delete_component_webhook,
            v1.DeleteComponentWebhookRequest(component_id=component_id, name=name),
        )
    else:
        raise InvalidArgument(f"action: {action!r} is not enable, disable or delete")
    audit(viewer, f"webhook.{action}", f"component {component_id}", name=name)
    done = {"enable": "Enabled", "disable": "Disabled", "delete": "Deleted"}[action]
    session_of(request).update(notice=f"{done} webhook {name}.")
    return redirect(f"/components/{component_id}/webhooks")


ROUTES = [webhooks_page, add_webhook, change_webhook]
